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
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from ssl_obstacle.bringup import plan_from_launch_arguments

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


def _nodes(context):
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = plan_from_launch_arguments('sim', values)
    return [Node(package='ssl_obstacle', executable=name, name=name, namespace=plan.namespace,
                 parameters=[*map(str, plan.param_files), plan.overrides[name]],
                 remappings=plan.remaps, output='screen')
            for name in plan.nodes]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in ARGUMENTS] + [OpaqueFunction(function=_nodes)])
