"""
Self-supervised long-range obstacle perception (Nava et al., RA-L 2019) for ROS 2.

numpy uses one BLAS thread in every process of the package unless the environment says
otherwise. OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when numpy loads it, so it is set
here, before any module of the package imports numpy. The package's matrix products are
small (the predictor's largest is 640 x 256): with a thread per core they wait for cores
the trainer holds, and a prediction's tail grows with them (docs/architecture.md,
"Learning"). Training runs in torch, whose threads this leaves alone.
"""

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

__version__ = '0.1.0'
