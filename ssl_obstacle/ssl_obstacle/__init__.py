"""Self-supervised long-range obstacle perception (Nava et al., RA-L 2019) for ROS 2."""

__version__ = '0.1.0'
