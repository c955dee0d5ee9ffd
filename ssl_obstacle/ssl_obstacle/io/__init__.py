# noqa: A005 - the name is DESIGN.md's; imported only as ssl_obstacle.io
"""Conversions between ROS messages and numpy, and rosbag2 reading."""
