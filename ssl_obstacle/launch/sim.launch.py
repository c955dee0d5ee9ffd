"""
Learn in the built-in simulated world: simulator, explorer, labeler and learner.

The simulator makes the time (/clock); every other node follows it (use_sim_time).

    ros2 launch ssl_obstacle sim.launch.py
    ros2 launch ssl_obstacle sim.launch.py world:=pillars seed:=3 real_time_factor:=0
    ros2 launch ssl_obstacle sim.launch.py namespace:=thymio10

`ssl-obstacle up sim` starts the same nodes with the same files and options.
"""

import os

from ament_index_python.packages import get_package_share_directory
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('namespace', '', 'namespace of the simulated robot, e.g. thymio10'),
    ('params', os.path.join(SHARE, 'config', 'sim.yaml'),
     'parameter file refining config/labeler.yaml'),
    ('learner', 'true', 'run the learner'),
    ('explorer', 'true', 'drive the robot with the explorer'),
    ('world', '', "boxes, pillars, walls or random; '' = as in the parameter file"),
    ('seed', '', "seed of the world and the explorer; '' = as in the parameter file"),
    ('real_time_factor', '', 'simulated seconds per second, 0 = as fast as possible; '
                             "'' = as in the parameter file"),
    ('checkpoint', '', "the learner's checkpoint file; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('sim', ARGUMENTS)
