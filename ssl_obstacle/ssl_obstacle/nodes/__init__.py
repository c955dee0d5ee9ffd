"""ROS 2 nodes: thin wrappers that declare parameters, wire topics and call into the core."""
