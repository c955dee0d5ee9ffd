r"""
Learn on a real Thymio running the ROS 2 driver jeguzzi/ros-thymio.

Starts the labeler, the learner (unless learner:=false, when it runs on another machine) and,
if asked, the explorer, in the robot's namespace. The driver and a camera driver run beside
it; they publish proximity/<name> (or proximity/laser), odom and camera/image_raw.

    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 \\
        camera_topic:=camera/color/image_raw camera_transport:=compressed explorer:=true
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 learner:=false

`ssl-obstacle up thymio` starts the same nodes with the same files and options.
"""

import os

from ament_index_python.packages import get_package_share_directory
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('namespace', '', "the robot's namespace (the driver's name), e.g. thymio10"),
    ('params', os.path.join(SHARE, 'config', 'thymio.yaml'),
     'parameter file refining config/labeler.yaml'),
    ('learner', 'true', 'run the learner here (false: it runs on another machine)'),
    ('explorer', 'false', 'drive the robot with the explorer'),
    ('camera_topic', '', 'camera image topic if not camera/image_raw'),
    ('camera_transport', '', "raw or compressed; '' = as in the parameter file"),
    ('proximity_source', '', "range (proximity/<name>) or laser; '' = as in the parameter file"),
    ('checkpoint', '', "the learner's checkpoint file; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('thymio', ARGUMENTS)
