"""
Launch the labeler with its parameter file.

    ros2 launch ssl_obstacle labeler.launch.py namespace:=thymio10
    ros2 launch ssl_obstacle labeler.launch.py params:=/path/to/my_labeler.yaml use_sim_time:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory('ssl_obstacle'), 'config', 'labeler.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='robot namespace, e.g. thymio10'),
        DeclareLaunchArgument('params', default_value=default_params,
                              description='labeler parameter file'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='follow /clock (bag replay, simulation)'),
        Node(
            package='ssl_obstacle',
            executable='labeler',
            name='labeler',
            namespace=LaunchConfiguration('namespace'),
            parameters=[LaunchConfiguration('params'),
                        {'use_sim_time': LaunchConfiguration('use_sim_time')}],
            output='screen',
        ),
    ])
