"""
Learn from a recorded bag: the labeler, the predictor and the trainer on the bag's /clock.

Pair it with a bag player that publishes /clock:

    ros2 launch ssl_obstacle replay.launch.py namespace:=thymio10
    ros2 bag play my_run --clock            # or: ssl-obstacle replay my_run --clock

trainer:=false leaves the trainer to another machine (learner:= is its old name).
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
    ('trainer', '', "run the trainer (true or false: it runs on another machine); '' = true"),
    ('learner', '', 'old name of trainer'),
    ('camera_topic', '', 'camera image topic if not camera/image_raw'),
    ('camera_transport', '', "the labeler's and the predictor's: raw or compressed; '' = as in "
                             'the parameter file'),
    ('proximity_source', '', "range (proximity/<name>) or laser; '' = as in the parameter file"),
    ('checkpoint', '', "the trainer's checkpoint file; '' = as in the parameter file"),
    ('model_file', '', 'a checkpoint the predictor predicts with from the start, until the '
                       "trainer's first model; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('replay', ARGUMENTS)
