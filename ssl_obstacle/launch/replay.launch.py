"""
Learn from a recorded bag: the labeler and the learner following the bag's /clock.

Pair it with a bag player that publishes /clock:

    ros2 launch ssl_obstacle replay.launch.py namespace:=thymio10
    ros2 bag play my_run --clock            # or: ssl-obstacle replay my_run --clock

`ssl-obstacle up replay` starts the same nodes with the same files and options.
"""

import os

from ament_index_python.packages import get_package_share_directory
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('namespace', '', 'namespace the bag was recorded in, e.g. thymio10'),
    ('params', os.path.join(SHARE, 'config', 'replay.yaml'),
     'parameter file refining config/labeler.yaml'),
    ('learner', 'true', 'run the learner here (false: it runs on another machine)'),
    ('camera_topic', '', 'camera image topic if not camera/image_raw'),
    ('camera_transport', '', "raw or compressed; '' = as in the parameter file"),
    ('proximity_source', '', "range (proximity/<name>) or laser; '' = as in the parameter file"),
    ('checkpoint', '', "the learner's checkpoint file; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('replay', ARGUMENTS)
