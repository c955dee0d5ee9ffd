"""
Run the package on a robot simulated in Gazebo (gz-sim): world, bridge, adapter, our nodes.

    ros2 launch ssl_obstacle gazebo.launch.py
    ros2 launch ssl_obstacle gazebo.launch.py gui:=false trainer:=false namespace:=thymio10
    ros2 launch ssl_obstacle gazebo.launch.py world:=/path/to/my_world.sdf params:=/path/to.yaml

Starts Gazebo with ``worlds/ssl_arena.sdf`` (through ros_gz_sim's ``gz_sim.launch.py``),
``ros_gz_bridge``'s ``parameter_bridge`` with ``config/gazebo_bridge.yaml`` (camera, odometry,
``/clock``, ``/tf``, ground truth, ``cmd_vel`` and one ``proximity/<name>/scan`` per sensor),
the ``scan_to_range`` adapter (scans -> the Thymio driver's ``sensor_msgs/Range`` on
``proximity/<name>``), the explorer (or the avoider), the labeler, the predictor and the
trainer, all following ``/clock`` and configured by ``config/labeler.yaml`` refined by
``config/gazebo.yaml``.
``ssl-obstacle up gazebo`` starts the same nodes of ours (not Gazebo and the bridge).

controller:=explorer|avoider|none picks what drives the robot (the IR-only explorer, the
avoider that drives by the learned predictions, or nothing; default explorer);
switch_after_updates:=N (N > 0) starts the avoider, which explores until the trainer has
made N updates with a good enough AUC and then drives by sight (it needs the trainer, and
contradicts controller:=explorer). The older explorer:=true|false still works: true is
controller:=explorer, false is controller:=none. learner:= is the old name of trainer:=.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from ssl_obstacle.bringup import launch_description

SHARE = get_package_share_directory('ssl_obstacle')

ARGUMENTS = [
    ('world', os.path.join(SHARE, 'worlds', 'ssl_arena.sdf'),
     'SDF world with the robot (see worlds/ssl_arena.sdf)'),
    ('namespace', '', 'robot namespace of the ROS topics, e.g. thymio10'),
    ('params', os.path.join(SHARE, 'config', 'gazebo.yaml'),
     'parameter file refining config/labeler.yaml (/**/<node> sections)'),
    ('bridge_config', os.path.join(SHARE, 'config', 'gazebo_bridge.yaml'),
     'ros_gz_bridge topic mapping'),
    ('gui', 'true', 'open the Gazebo GUI (false: server only)'),
    ('controller', '', "explorer, avoider or none; '' = explorer"),
    ('switch_after_updates', '', 'N > 0: the avoider explores until the trainer has made N '
                                 "updates, then drives by sight; '' = as in the parameter file"),
    ('explorer', '', 'old spelling: true = controller:=explorer, false = controller:=none'),
    ('trainer', '', "run the trainer (true or false: it runs on another machine); '' = true"),
    ('learner', '', 'old name of trainer'),
    ('checkpoint', '', "the trainer's checkpoint file; '' = as in the parameter file"),
    ('model_file', '', 'a checkpoint the predictor predicts with from the start, until the '
                       "trainer's first model; '' = as in the parameter file"),
]


def _gazebo(gz_args, condition):
    # -r: start running at once; -s: server only (no GUI window).
    gz_sim_launch = os.path.join(
        get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')
    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(gz_sim_launch),
        launch_arguments={'gz_args': gz_args, 'on_exit_shutdown': 'true'}.items(),
        condition=condition)


def generate_launch_description():
    world = LaunchConfiguration('world')
    gui = LaunchConfiguration('gui')
    bridge = Node(package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
                  namespace=LaunchConfiguration('namespace'),
                  parameters=[{'config_file': LaunchConfiguration('bridge_config'),
                               'use_sim_time': True}],
                  output='screen')
    # Our nodes (scan_to_range, labeler, predictor, explorer or avoider, trainer, all on
    # Gazebo's /clock) come from the plan `ssl-obstacle up gazebo` uses too.
    return launch_description('gazebo', ARGUMENTS, [
        _gazebo(['-r ', world], IfCondition(gui)),
        _gazebo(['-r -s ', world], UnlessCondition(gui)),
        bridge])
