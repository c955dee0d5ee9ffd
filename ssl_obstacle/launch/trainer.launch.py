r"""
Train alone: the trainer node for one robot or a fleet whose other nodes run elsewhere.

For a workstation (a GPU with device:=cuda) in the robots' ROS domain: each robot runs its
labeler and predictor (thymio.launch.py trainer:=false); this trainer learns from every
robot's /<ns>/ssl/labeled_frames and publishes /<ns>/ssl/model and /<ns>/ssl/learner_status
for each of them. With no robots it learns in its own namespace, for one robot.

    ros2 launch ssl_obstacle trainer.launch.py robots:=[thymio1,thymio2]
    ros2 launch ssl_obstacle trainer.launch.py robots:=thymio10 device:=cuda
    ros2 launch ssl_obstacle trainer.launch.py namespace:=thymio10 checkpoint:=/data/t10.pt
    ros2 launch ssl_obstacle trainer.launch.py robots:=[robot1,robot2,robot3] \
        params:=$(ros2 pkg prefix ssl_obstacle)/share/ssl_obstacle/config/sim.yaml \
        use_sim_time:=true                              # a sim fleet on another machine

robots takes launch's list syntax ([a,b]) or a comma-separated string (a,b). The parameter
file is the robots' (config/thymio.yaml, its /**/trainer section) and the trainer runs on
wall time unless use_sim_time:=true (a simulated fleet's /clock).
`ssl-obstacle up trainer --robots thymio1,thymio2` starts the same node with the same files
and options.
"""

import os

from ament_index_python.packages import get_package_share_directory
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('robots', '', 'namespaces of the robots to learn from, e.g. [thymio1,thymio2] or '
                   "thymio1,thymio2; '' = the robot of namespace"),
    ('namespace', '', "the trainer's own namespace (its services; with no robots, the one "
                      'robot it learns for)'),
    ('params', os.path.join(SHARE, 'config', 'thymio.yaml'),
     'parameter file refining config/labeler.yaml (its /**/trainer section)'),
    ('checkpoint', '', "the trainer's checkpoint file; '' = as in the parameter file"),
    ('device', '', "cpu or cuda; '' = as in the parameter file"),
    ('use_sim_time', 'false', 'follow /clock (a simulated fleet)'),
]


def generate_launch_description():
    return launch_description('trainer', ARGUMENTS)
