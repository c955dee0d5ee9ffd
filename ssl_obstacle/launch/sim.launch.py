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

SHARE = get_package_share_directory('ssl_obstacle')
BASE_PARAMS = os.path.join(SHARE, 'config', 'labeler.yaml')

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


def _is_true(value: str) -> bool:
    return value.strip().lower() in ('true', '1', 'yes', 'on')


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    simulator_overrides, explorer_overrides, learner_overrides = {}, {}, {}
    if arg['world']:
        simulator_overrides['world'] = arg['world']
    if arg['seed']:
        simulator_overrides['seed'] = int(arg['seed'])
        explorer_overrides['seed'] = int(arg['seed'])
    if arg['real_time_factor']:
        simulator_overrides['real_time_factor'] = float(arg['real_time_factor'])
    if arg['checkpoint']:
        learner_overrides['checkpoint_path'] = os.path.expanduser(arg['checkpoint'])
    files = [BASE_PARAMS, arg['params']]
    sim_time = {'use_sim_time': True}
    nodes = [Node(package='ssl_obstacle', executable='labeler', name='labeler',
                  namespace=arg['namespace'], parameters=[*files, sim_time], output='screen')]
    if _is_true(arg['learner']):
        nodes.append(Node(package='ssl_obstacle', executable='learner', name='learner',
                          namespace=arg['namespace'],
                          parameters=[*files, learner_overrides, sim_time], output='screen'))
    if _is_true(arg['explorer']):
        nodes.append(Node(package='ssl_obstacle', executable='explorer', name='explorer',
                          namespace=arg['namespace'],
                          parameters=[*files, explorer_overrides, sim_time], output='screen'))
    nodes.append(Node(package='ssl_obstacle', executable='simulator', name='simulator',
                      namespace=arg['namespace'], parameters=[*files, simulator_overrides],
                      output='screen'))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in ARGUMENTS] + [OpaqueFunction(function=_nodes)])
