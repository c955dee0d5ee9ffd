"""
ROS 2 nodes: thin wrappers that declare parameters, wire topics and call into the core.

Each node's numpy uses one BLAS thread unless the environment says otherwise. OpenBLAS
reads ``OPENBLAS_NUM_THREADS`` once, when numpy loads it, so it is set here, before any
node module imports numpy. A node's matrix products are small (the predictor's largest is
640 x 256): with a thread per core, one convolution's product took 460 µs instead of 45 on a
loaded two-core computer, as the threads waited for cores the trainer held, and the
prediction's p99 rose to 9-17 ms (``benchmarks/bench_numpy_forward.py``).
"""

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
