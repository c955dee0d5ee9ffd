"""Simulated worlds (pure Python + numpy, no ROS)."""
