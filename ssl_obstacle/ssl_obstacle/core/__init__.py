"""The method itself: geometry, the frame buffer and the label rule. No ROS imports here."""
