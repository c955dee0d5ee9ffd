r"""
Learn on a real Thymio running the ROS 2 driver jeguzzi/ros-thymio.

Starts the labeler, the learner (unless learner:=false, when it runs on another machine) and,
if asked, the explorer, in the robot's namespace. The driver and a camera driver run beside
it; they publish proximity/<name> (or proximity/laser), odom and camera/image_raw.

    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 \\
        camera_topic:=camera/color/image_raw camera_transport:=compressed explorer:=true
    ros2 launch ssl_obstacle thymio.launch.py namespace:=thymio10 learner:=false

`ssl-obstacle up thymio` starts the same nodes with the same files and options.
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
    ('namespace', '', "the robot's namespace (the driver's name), e.g. thymio10"),
    ('params', os.path.join(SHARE, 'config', 'thymio.yaml'),
     'parameter file refining config/labeler.yaml'),
    ('learner', 'true', 'run the learner here (false: it runs on another machine)'),
    ('explorer', 'false', 'drive the robot with the explorer'),
    ('camera_topic', '', 'camera image topic if not camera/image_raw'),
    ('camera_transport', '', "raw or compressed; '' = as in the parameter file"),
    ('proximity_source', '', "range (proximity/<name>) or laser; '' = as in the parameter file"),
    ('checkpoint', '', "the learner's checkpoint file; '' = as in the parameter file"),
]


def _is_true(value: str) -> bool:
    return value.strip().lower() in ('true', '1', 'yes', 'on')


def _camera_remaps(topic: str) -> list:
    topic = topic.rstrip('/')
    if not topic or topic == 'camera/image_raw':
        return []
    return [('camera/image_raw', topic), ('camera/image_raw/compressed', topic + '/compressed')]


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    labeler_overrides, learner_overrides = {}, {}
    if arg['camera_transport']:
        labeler_overrides['camera_transport'] = arg['camera_transport']
        learner_overrides['camera_transport'] = arg['camera_transport']
    if arg['proximity_source']:
        labeler_overrides['proximity_source'] = arg['proximity_source']
    if arg['checkpoint']:
        learner_overrides['checkpoint_path'] = os.path.expanduser(arg['checkpoint'])
    files = [BASE_PARAMS, arg['params']]
    remaps = _camera_remaps(arg['camera_topic'])
    nodes = [Node(package='ssl_obstacle', executable='labeler', name='labeler',
                  namespace=arg['namespace'], parameters=[*files, labeler_overrides],
                  remappings=remaps, output='screen')]
    if _is_true(arg['learner']):
        nodes.append(Node(package='ssl_obstacle', executable='learner', name='learner',
                          namespace=arg['namespace'], parameters=[*files, learner_overrides],
                          remappings=remaps, output='screen'))
    if _is_true(arg['explorer']):
        nodes.append(Node(package='ssl_obstacle', executable='explorer', name='explorer',
                          namespace=arg['namespace'], parameters=files, output='screen'))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in ARGUMENTS] + [OpaqueFunction(function=_nodes)])
