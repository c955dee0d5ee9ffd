"""
Run the package on a robot simulated in Gazebo (gz-sim): world, bridge, adapter, our nodes.

    ros2 launch ssl_obstacle gazebo.launch.py
    ros2 launch ssl_obstacle gazebo.launch.py gui:=false learner:=false namespace:=thymio10
    ros2 launch ssl_obstacle gazebo.launch.py world:=/path/to/my_world.sdf params:=/path/to.yaml

Starts Gazebo with ``worlds/ssl_arena.sdf`` (through ros_gz_sim's ``gz_sim.launch.py``),
``ros_gz_bridge``'s ``parameter_bridge`` with ``config/gazebo_bridge.yaml`` (camera, odometry,
``/clock``, ``/tf``, ground truth, ``cmd_vel`` and one ``proximity/<name>/scan`` per sensor),
the ``scan_to_range`` adapter (scans -> the Thymio driver's ``sensor_msgs/Range`` on
``proximity/<name>``), the explorer, the labeler and the learner, all following ``/clock``
and configured by ``config/labeler.yaml`` refined by ``config/gazebo.yaml``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('ssl_obstacle')
    gz_sim_launch = os.path.join(
        get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')
    world = LaunchConfiguration('world')
    namespace = LaunchConfiguration('namespace')
    params = LaunchConfiguration('params')
    # config/labeler.yaml (the label rule) first, as every setup's; the Gazebo file refines
    # it. Every ROS node follows Gazebo's clock (bridged on /clock).
    node_parameters = [os.path.join(share, 'config', 'labeler.yaml'), params,
                       {'use_sim_time': True}]

    def gazebo(gz_args, condition):
        # -r: start running at once; -s: server only (no GUI window).
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(gz_sim_launch),
            launch_arguments={'gz_args': gz_args, 'on_exit_shutdown': 'true'}.items(),
            condition=condition)

    return LaunchDescription([
        DeclareLaunchArgument('world', default_value=os.path.join(share, 'worlds',
                                                                  'ssl_arena.sdf'),
                              description='SDF world with the robot (see worlds/ssl_arena.sdf)'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='robot namespace of the ROS topics, e.g. thymio10'),
        DeclareLaunchArgument('params', default_value=os.path.join(share, 'config',
                                                                   'gazebo.yaml'),
                              description='parameter file of our nodes (/**/<node> sections), '
                                          'applied after config/labeler.yaml'),
        DeclareLaunchArgument('bridge_config',
                              default_value=os.path.join(share, 'config', 'gazebo_bridge.yaml'),
                              description='ros_gz_bridge topic mapping'),
        DeclareLaunchArgument('gui', default_value='true',
                              description='open the Gazebo GUI (false: server only)'),
        DeclareLaunchArgument('explorer', default_value='true',
                              description='drive the robot with the explorer'),
        DeclareLaunchArgument('learner', default_value='true',
                              description='run the online learner'),

        gazebo(['-r ', world], IfCondition(LaunchConfiguration('gui'))),
        gazebo(['-r -s ', world], UnlessCondition(LaunchConfiguration('gui'))),

        Node(
            package='ros_gz_bridge',
            executable='parameter_bridge',
            name='gz_bridge',
            namespace=namespace,
            parameters=[{'config_file': LaunchConfiguration('bridge_config'),
                         'use_sim_time': True}],
            output='screen',
        ),
        Node(
            package='ssl_obstacle',
            executable='scan_to_range',
            name='scan_to_range',
            namespace=namespace,
            parameters=node_parameters,
            output='screen',
        ),
        Node(
            package='ssl_obstacle',
            executable='labeler',
            name='labeler',
            namespace=namespace,
            parameters=node_parameters,
            output='screen',
        ),
        Node(
            package='ssl_obstacle',
            executable='explorer',
            name='explorer',
            namespace=namespace,
            parameters=node_parameters,
            output='screen',
            condition=IfCondition(LaunchConfiguration('explorer')),
        ),
        Node(
            package='ssl_obstacle',
            executable='learner',
            name='learner',
            namespace=namespace,
            parameters=node_parameters,
            output='screen',
            condition=IfCondition(LaunchConfiguration('learner')),
        ),
    ])
