"""
The Gazebo assets read as Gazebo, ros_gz_bridge and ros2 launch would read them.

No Gazebo here: the world is checked against the numbers the rest of the package uses
(core/thymio.py, sim/camera.py, sim/robot.py), every bridged Gazebo topic against what the
world publishes or subscribes, every bridged ROS topic against DESIGN.md section 4 and the
built-in simulator, and the parameter file by loading it into the real nodes.
"""

from __future__ import annotations

import importlib
import math
import os
import pathlib
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from ssl_obstacle.core.thymio import PROXIMITY_MAX_RANGE, PROXIMITY_POSES, SENSOR_NAMES
from ssl_obstacle.io.sim_messages import TOPIC_TYPES
from ssl_obstacle.nodes.registry import node_factory
from ssl_obstacle.sim.camera import CameraModel
from ssl_obstacle.sim.robot import WHEEL_BASE
import yaml

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
REPO_DIR = PACKAGE_DIR.parent
WORLD = PACKAGE_DIR / 'worlds' / 'ssl_arena.sdf'
BRIDGE = PACKAGE_DIR / 'config' / 'gazebo_bridge.yaml'
PARAMS = PACKAGE_DIR / 'config' / 'gazebo.yaml'
LAUNCH = PACKAGE_DIR / 'launch' / 'gazebo.launch.py'
#: shared/ lies beside the repository, in the work tree and in CI alike.
DESIGN = REPO_DIR / 'docs' / 'architecture.md'  # the living copy of DESIGN.md section 4

#: ros_gz_bridge's pairs for the types we bridge (its README's table).
BRIDGE_PAIRS = {
    ('rosgraph_msgs/msg/Clock', 'gz.msgs.Clock'),
    ('geometry_msgs/msg/Twist', 'gz.msgs.Twist'),
    ('nav_msgs/msg/Odometry', 'gz.msgs.Odometry'),
    ('tf2_msgs/msg/TFMessage', 'gz.msgs.Pose_V'),
    ('sensor_msgs/msg/Image', 'gz.msgs.Image'),
    ('sensor_msgs/msg/CameraInfo', 'gz.msgs.CameraInfo'),
    ('sensor_msgs/msg/LaserScan', 'gz.msgs.LaserScan'),
}
#: What each sensor type publishes, and what each plugin element carries.
SENSOR_TYPES = {'camera': 'gz.msgs.Image', 'gpu_lidar': 'gz.msgs.LaserScan'}
PLUGIN_TOPICS = {
    'gz::sim::systems::DiffDrive': {'topic': ('ROS_TO_GZ', 'gz.msgs.Twist'),
                                    'odom_topic': ('GZ_TO_ROS', 'gz.msgs.Odometry'),
                                    'tf_topic': ('GZ_TO_ROS', 'gz.msgs.Pose_V')},
    'gz::sim::systems::OdometryPublisher': {'odom_topic': ('GZ_TO_ROS', 'gz.msgs.Odometry'),
                                            'tf_topic': ('GZ_TO_ROS', 'gz.msgs.Pose_V')},
}
#: Published by the gz-sim server itself, whatever the world holds.
SERVER_TOPICS = {'/clock': ('GZ_TO_ROS', 'gz.msgs.Clock')}


# ---------------------------------------------------------------------------- helpers
def world() -> ET.Element:
    return ET.parse(WORLD).getroot()


def robot() -> ET.Element:
    models = [m for m in world().iter('model') if m.find('link/sensor') is not None]
    assert len(models) == 1, 'exactly one model carries sensors'
    return models[0]


def pose(element: ET.Element) -> np.ndarray:
    """Return an element's ``<pose>`` as 6 floats (zeros when absent)."""
    node = element.find('pose')
    return np.zeros(6) if node is None else np.array([float(v) for v in node.text.split()])


def number(element: ET.Element, path: str) -> float:
    node = element.find(path)
    assert node is not None, f'missing <{path}> in <{element.tag} {element.attrib}>'
    return float(node.text)


def sdf_topics() -> dict[str, tuple[str, str]]:
    """Return every Gazebo topic the world uses: name -> (bridge direction, gz type)."""
    topics = dict(SERVER_TOPICS)
    for sensor in world().iter('sensor'):
        topic = sensor.findtext('topic')
        assert topic, f'sensor {sensor.get("name")} has no explicit <topic>'
        topics[topic.strip()] = ('GZ_TO_ROS', SENSOR_TYPES[sensor.get('type')])
        info = sensor.findtext('camera/camera_info_topic')
        if info:
            topics[info.strip()] = ('GZ_TO_ROS', 'gz.msgs.CameraInfo')
    for plugin in world().iter('plugin'):
        for element, kind in PLUGIN_TOPICS.get(plugin.get('name'), {}).items():
            if plugin.findtext(element):
                topics[plugin.findtext(element).strip()] = kind
    return topics


def bridge() -> list[dict]:
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list) and entries
    return entries


def design_topics() -> dict[str, set[str]]:
    """Parse the topic table (DESIGN.md section 4): relative topic -> message type names."""
    text = DESIGN.read_text()
    start = text.index('## Topics')
    section = text[start:text.index('\n## ', start + 1)]
    topics: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) != 3 or not cells[0].startswith('`'):
            continue
        names = re.findall(r'`([^`]+)`', cells[0])
        # 'Image / CompressedImage' (alternatives), 'Odometry, LabeledFrame' (one per topic)
        types = [t.split('/')[-1] for t in re.split(r'\s*(?:,|\s/\s)\s*', cells[1])]
        if len(names) == len(types):
            pairs = [(n, {t}) for n, t in zip(names, types)]
        else:
            pairs = [(n, set(types)) for n in names]
        for name, kinds in pairs:
            topics.setdefault(name, set()).update(kinds)
    assert topics, 'no topic table found in docs/architecture.md'
    return topics


def ros_type(name: str) -> type:
    package, _, message = name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), message)


# ---------------------------------------------------------------------------- the world
def test_world_is_sdf_with_the_systems_sensors_need():
    root = world()
    assert root.tag == 'sdf' and root.get('version') in ('1.8', '1.9')
    worlds = root.findall('world')
    assert len(worlds) == 1
    plugins = {p.get('filename'): p for p in worlds[0].findall('plugin')}
    for system in ('physics', 'user-commands', 'scene-broadcaster', 'sensors'):
        assert f'gz-sim-{system}-system' in plugins
    assert plugins['gz-sim-sensors-system'].findtext('render_engine') == 'ogre2'
    assert worlds[0].find('light') is not None
    assert any(m.find('link/collision/geometry/plane') is not None
               for m in worlds[0].findall('model')), 'no ground plane'


def test_world_has_an_arena_and_coloured_boxes_and_cylinders():
    models = {m.get('name'): m for m in world().find('world').findall('model')}
    arena = models['arena']
    walls = arena.findall('link/collision')
    assert len(walls) == 4
    extent = max(abs(pose(w)[i]) for w in walls for i in (0, 1))
    assert 0.9 < extent < 1.2  # a 2 x 2 m arena, as sim/world.py's
    obstacles = [m for name, m in models.items()
                 if name not in ('arena', 'ground_plane') and m.findtext('static') == 'true']
    shapes = {g.tag for m in obstacles for g in m.find('link/collision/geometry')}
    assert {'box', 'cylinder'} <= shapes
    colours = {m.findtext('link/visual/material/diffuse') for m in obstacles}
    assert len(colours) >= 4
    for model in obstacles:  # inside the arena, standing on the floor
        x, y, z = pose(model)[:3]
        assert abs(x) < 1.0 and abs(y) < 1.0 and z > 0


def test_camera_matches_the_built_in_simulator():
    camera = [s for s in robot().iter('sensor') if s.get('type') == 'camera']
    assert len(camera) == 1
    sensor, model = camera[0], CameraModel()
    size = (number(sensor, 'camera/image/width'), number(sensor, 'camera/image/height'))
    assert size in ((320, 240), (640, 480))
    assert number(sensor, 'camera/horizontal_fov') == pytest.approx(model.hfov)
    assert number(sensor, 'update_rate') == 30
    x, y, z, roll, pitch, yaw = pose(sensor)
    assert (x, y, z) == pytest.approx((model.mount_x, 0.0, model.mount_z))
    assert (roll, yaw) == (0.0, 0.0) and pitch == pytest.approx(model.pitch)
    # SDF's positive pitch turns the optical axis (+x) down, as the simulator's pitch does.
    assert math.cos(pitch) > 0 and -math.sin(pitch) < 0
    assert sensor.findtext('camera/image/format') == 'R8G8B8'


def test_five_single_ray_lidars_sit_where_the_thymio_sensors_are():
    lidars = [s for s in robot().iter('sensor') if s.get('type') == 'gpu_lidar']
    assert [s.get('name') for s in lidars] == list(SENSOR_NAMES)
    for sensor in lidars:
        name = sensor.get('name')
        scan = sensor.find('lidar/scan')
        assert number(scan, 'horizontal/samples') == 1
        assert number(scan, 'horizontal/min_angle') == number(scan, 'horizontal/max_angle')
        assert number(sensor, 'lidar/range/min') <= 0.01
        assert number(sensor, 'lidar/range/max') == pytest.approx(PROXIMITY_MAX_RANGE)
        assert number(sensor, 'update_rate') == 10
        x, y, _, roll, pitch, yaw = pose(sensor)
        assert (x, y, yaw) == pytest.approx(PROXIMITY_POSES[name], abs=1e-6)
        assert roll == pitch == 0.0
        assert sensor.findtext('topic').endswith(f'proximity/{name}/scan')


def test_lidars_do_not_see_the_robot_itself():
    # Their rays start at the body's edge: every visual of the robot must be masked out.
    visuals = list(robot().iter('visual'))
    assert visuals
    for sensor in (s for s in robot().iter('sensor') if s.get('type') == 'gpu_lidar'):
        mask = int(sensor.findtext('lidar/visibility_mask'))
        for visual in visuals:
            flags = int(visual.findtext('visibility_flags', default=str(0xFFFFFFFF)))
            assert mask & flags == 0, (sensor.get('name'), visual.get('name'))


def test_diff_drive_has_the_thymio_geometry_and_the_driver_frames():
    model = robot()
    plugins = [p for p in model.findall('plugin')
               if p.get('name') == 'gz::sim::systems::DiffDrive']
    assert len(plugins) == 1
    drive = plugins[0]
    assert drive.get('filename') == 'gz-sim-diff-drive-system'
    assert number(drive, 'wheel_separation') == pytest.approx(WHEEL_BASE)
    assert drive.findtext('frame_id') == 'odom'
    assert drive.findtext('child_frame_id') == 'base_link'
    assert number(drive, 'odom_publish_frequency') == 20
    joints = {j.get('name'): j for j in model.findall('joint')}
    links = {link.get('name'): link for link in model.findall('link')}
    wheels = []
    for side in ('left_joint', 'right_joint'):
        joint = joints[drive.findtext(side)]
        assert joint.get('type') == 'revolute' and joint.findtext('parent') == 'base_link'
        wheels.append(links[joint.findtext('child')])
    left, right = (pose(w) for w in wheels)
    assert left[1] - right[1] == pytest.approx(number(drive, 'wheel_separation'))
    for wheel in wheels:
        radius = number(wheel, 'collision/geometry/cylinder/radius')
        assert radius == pytest.approx(number(drive, 'wheel_radius'))
        assert pose(wheel)[2] == pytest.approx(radius)  # resting on the floor
    assert 'base_link' in links and model.find('link').get('name') == 'base_link'


# ---------------------------------------------------------------------------- the bridge
def test_every_bridged_gazebo_topic_exists_in_the_world_with_its_direction_and_type():
    topics = sdf_topics()
    for entry in bridge():
        assert set(entry) == {'ros_topic_name', 'gz_topic_name', 'ros_type_name',
                              'gz_type_name', 'direction'}
        gz = entry['gz_topic_name']
        assert gz in topics, f'{gz} is neither published nor subscribed in the world'
        assert (entry['direction'], entry['gz_type_name']) == topics[gz], gz
        assert (entry['ros_type_name'], entry['gz_type_name']) in BRIDGE_PAIRS


def test_bridged_ros_topics_and_types_follow_the_design_and_the_built_in_simulator():
    design = design_topics()
    entries = {e['ros_topic_name']: e['ros_type_name'] for e in bridge()}
    required = {'/clock', 'cmd_vel', 'odom', 'camera/image_raw', 'camera/camera_info',
                *(f'proximity/{name}/scan' for name in SENSOR_NAMES)}
    assert required <= set(entries)
    for topic, type_name in entries.items():
        message = ros_type(type_name)  # imports in rclpy
        assert topic == '/clock' or topic == '/tf' or not topic.startswith('/'), topic
        match = re.fullmatch(r'proximity/(\w+)/scan', topic)
        if match:  # the scan_to_range adapter's input; its output is DESIGN's Range
            assert match.group(1) in SENSOR_NAMES and message.__name__ == 'LaserScan'
            assert 'Range' in design['proximity/<name>']
        elif topic in design:
            assert message.__name__ in design[topic], topic
        else:  # what the built-in simulator publishes beyond the table (/clock, /tf, info)
            assert TOPIC_TYPES.get(topic) is message, topic


# ---------------------------------------------------------------------------- launch
def test_launch_file_starts_gazebo_the_bridge_and_our_nodes_on_sim_time(monkeypatch):
    from test_launch_files import launch_plan, load_launch_file, resolve

    declared, nodes = launch_plan(LAUNCH, monkeypatch, namespace='thymio10')
    assert {'world', 'namespace', 'trainer', 'learner', 'explorer', 'gui', 'params',
            'bridge_config'} <= set(declared)
    by_executable = {n['executable']: n for n in nodes}
    bridge = by_executable.pop('parameter_bridge')
    assert bridge['package'] == 'ros_gz_bridge' and bridge['namespace'] == 'thymio10'
    assert set(bridge['overrides']) == {'config_file', 'use_sim_time'}
    assert bridge['overrides']['use_sim_time'] is True
    assert bridge['overrides']['config_file'].endswith(
        'share/ssl_obstacle/config/gazebo_bridge.yaml')
    assert set(by_executable) == {'scan_to_range', 'labeler', 'predictor', 'explorer',
                                  'trainer'}
    assert set(by_executable) <= node_names()
    for node in by_executable.values():
        assert node['package'] == 'ssl_obstacle' and node['namespace'] == 'thymio10'
        assert node['files'] == ['labeler.yaml', 'gazebo.yaml']
        assert node['overrides'].get('use_sim_time') is True
    # gz-sim itself: ros_gz_sim's launch file with the world, GUI or server only
    description = load_launch_file(LAUNCH, monkeypatch).generate_launch_description()
    includes = [e for e in description.args[0] if type(e).__name__ == 'IncludeLaunchDescription']
    assert len(includes) == 2
    context = dict(declared)
    gz_args = {resolve(dict(e.kwargs['launch_arguments'])['gz_args'], context)
               for e in includes}
    assert gz_args == {'-r ' + declared['world'], '-r -s ' + declared['world']}
    assert all(e.args[0].args[0].endswith('gz_sim.launch.py') for e in includes)
    assert declared['world'].endswith('worlds/ssl_arena.sdf')
    assert (PACKAGE_DIR / 'worlds' / 'ssl_arena.sdf').is_file() and BRIDGE.is_file()


def node_names() -> set[str]:
    from ssl_obstacle.nodes.registry import NODES
    return set(NODES)


def test_setup_installs_the_world():
    source = (PACKAGE_DIR / 'setup.py').read_text()
    assert "glob('worlds/*.sdf')" in source and "'worlds')" in source
    install = pathlib.Path(os.environ.get('SSL_INSTALL', REPO_DIR / 'install'))
    installed = install / 'ssl_obstacle' / 'share' / 'ssl_obstacle'
    if installed.is_dir():
        assert (installed / 'worlds' / 'ssl_arena.sdf').is_file(), 'run make setup'


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize('node_name', ['scan_to_range', 'explorer', 'labeler', 'predictor',
                                       'trainer'])
def test_parameter_file_reaches_each_node_in_a_namespace(node_name, tmp_path):
    document = yaml.safe_load(PARAMS.read_text())
    values = document[f'/**/{node_name}']['ros__parameters']
    context = Context()
    rclpy.init(context=context)
    try:
        node = node_factory(node_name)(
            context=context, namespace='thymio10',
            cli_args=['--ros-args', '--params-file', str(PARAMS)])
        try:
            declared = set(node._parameters)
            assert set(values) <= declared, f'undeclared: {set(values) - declared}'
            for key, value in values.items():
                got = node.get_parameter(key).value
                if isinstance(value, float):
                    assert got == pytest.approx(value), key
                elif isinstance(value, list):
                    assert list(got) == value, key
                else:
                    assert got == value, key
        finally:
            if hasattr(node, 'close'):
                node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_labeler_predictor_and_trainer_share_one_grid_and_image_size():
    document = yaml.safe_load(PARAMS.read_text())
    base = yaml.safe_load((PACKAGE_DIR / 'config' / 'labeler.yaml').read_text())['/**'][
        'ros__parameters']

    def value(node: str, key: str):
        return document[f'/**/{node}']['ros__parameters'].get(key, base.get(key))

    for key in ('sensor_names', 'distances'):
        assert value('labeler', key) == value('predictor', key) == value('trainer', key), key
    for key in ('image_width', 'image_height'):
        assert value('labeler', key) == value('trainer', key), key
    assert value('labeler', 'camera_transport') == value('predictor', 'camera_transport')
