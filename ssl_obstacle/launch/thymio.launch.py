r"""
Learn on a real Thymio running the ROS 2 driver jeguzzi/ros-thymio.

Starts the labeler, the predictor (numpy only: it predicts from every camera frame with the
newest model of ssl/model), the trainer (PyTorch; unless trainer:=false, when it runs on
another machine: trainer.launch.py robots:=[<namespace>]) and, if asked, a controller (the
explorer or the avoider), in the robot's namespace. The driver and a camera driver run
beside it; they publish proximity/<name> (or proximity/laser), odom and camera/image_raw.

    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 \\
        camera_topic:=camera/color/image_raw camera_transport:=compressed explorer:=true
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 trainer:=false
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 switch_after_updates:=500

controller:=explorer|avoider|none picks what drives the robot (the IR-only explorer, the
avoider that drives by the learned predictions, or nothing; default none: drive it yourself);
switch_after_updates:=N (N > 0) starts the avoider, which explores until the trainer has
made N updates with a good enough AUC and then drives by sight (it needs the trainer, and
contradicts controller:=explorer). The older explorer:=true|false still works: true is
controller:=explorer, false is controller:=none. learner:= is the old name of trainer:=.

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
    ('trainer', '', "run the trainer (true or false: it runs on another machine); '' = true"),
    ('learner', '', 'old name of trainer'),
    ('controller', '', "explorer, avoider or none; '' = none"),
    ('switch_after_updates', '', 'N > 0: the avoider explores until the trainer has made N '
                                 "updates, then drives by sight; '' = as in the parameter file"),
    ('explorer', '', 'old spelling: true = controller:=explorer, false = controller:=none'),
    ('camera_topic', '', 'camera image topic if not camera/image_raw'),
    ('camera_transport', '', "the labeler's and the predictor's: raw or compressed; '' = as in "
                             'the parameter file'),
    ('proximity_source', '', "range (proximity/<name>) or laser; '' = as in the parameter file"),
    ('checkpoint', '', "the trainer's checkpoint file; '' = as in the parameter file"),
    ('model_file', '', 'a checkpoint the predictor predicts with from the start, until the '
                       "trainer's first model; '' = as in the parameter file"),
]


def generate_launch_description():
    return launch_description('thymio', ARGUMENTS)
