"""Conversions between ROS messages and numpy, and rosbag2 reading."""
