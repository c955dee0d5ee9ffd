"""The package as colcon builds and ROS tools see it: manifest, entry points, launch, config."""

from __future__ import annotations

import ast
import os
import pathlib

from catkin_pkg.package import parse_package
from ssl_obstacle.io.params_file import read_ros_parameters, unknown_parameters
from ssl_obstacle.nodes.registry import NODES

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
REPO_DIR = PACKAGE_DIR.parent
#: The install space of the distribution under test (env.sh exports it; Jazzy's by default).
INSTALL_DIR = pathlib.Path(os.environ.get('SSL_INSTALL', REPO_DIR / 'install')) / 'ssl_obstacle'


#: Packages of others that launch files may start nodes of (Gazebo's bridge).
EXTERNAL_PACKAGES = ('ros_gz_bridge', 'ros_gz_sim', 'ros_gz_image')


def console_scripts() -> dict[str, str]:
    """Read the console entry points out of setup.py without running it."""
    tree = ast.parse((PACKAGE_DIR / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [ast.literal_eval(item) for item in value.elts]
                    return {e.split('=')[0].strip(): e.split('=')[1].strip() for e in entries}
    raise AssertionError('setup.py declares no console_scripts')


def test_manifests_are_format_3_with_the_dependencies_the_code_imports():
    package = parse_package(str(PACKAGE_DIR / 'package.xml'))
    assert package.package_format == 3
    depends = {d.name for d in package.exec_depends}
    assert {'rclpy', 'sensor_msgs', 'nav_msgs', 'diagnostic_msgs', 'ssl_obstacle_msgs',
            'python3-numpy', 'python3-opencv', 'python3-h5py'} <= depends
    msgs = parse_package(str(REPO_DIR / 'ssl_obstacle_msgs' / 'package.xml'))
    assert msgs.package_format == 3
    assert 'rosidl_interface_packages' in [g.name for g in msgs.member_of_groups]


def test_every_node_has_an_importable_console_entry_point():
    scripts = console_scripts()
    for name in NODES:
        assert name in scripts, f'node {name} has no console entry point'
    for target in scripts.values():
        module, function = target.split(':')
        imported = __import__(module, fromlist=[function])
        assert callable(getattr(imported, function))


def test_colcon_installed_the_executable_launch_and_config_files():
    assert (INSTALL_DIR / 'lib' / 'ssl_obstacle' / 'labeler').is_file()
    assert os.access(INSTALL_DIR / 'lib' / 'ssl_obstacle' / 'labeler', os.X_OK)
    share = INSTALL_DIR / 'share' / 'ssl_obstacle'
    assert (share / 'package.xml').is_file()
    assert (share / 'config' / 'labeler.yaml').is_file()
    assert (share / 'launch' / 'labeler.launch.py').is_file()
    index = INSTALL_DIR / 'share' / 'ament_index' / 'resource_index' / 'packages'
    assert (index / 'ssl_obstacle').is_file()


def test_unknown_parameters_are_named_not_silently_ignored():
    assert unknown_parameters({'tolx': 0.02, 'tol_x': 0.02, 'use_sim_time': True,
                               'camera_transport': 'raw', 'image_width': 80}) == ['tolx']
    shipped = read_ros_parameters(PACKAGE_DIR / 'config' / 'labeler.yaml', 'labeler')
    assert unknown_parameters(shipped) == []


def _env_after_sourcing(**variables: str) -> tuple[int, dict[str, str]]:
    """Source scripts/env.sh in a clean shell; return its exit code and the DDS variables."""
    import subprocess
    names = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_DOMAIN_ID')
    script = f'source {REPO_DIR / "scripts" / "env.sh"} && ' + ' && '.join(
        f'echo {name}=${{{name}:-}}' for name in names)
    result = subprocess.run(['bash', '-c', script], capture_output=True, text=True,
                            env={'PATH': os.environ['PATH'], 'HOME': os.environ['HOME'],
                                 **variables})
    return result.returncode, dict(line.split('=', 1) for line in result.stdout.split())


def test_the_environment_keeps_dds_on_loopback_unless_the_user_opts_in():
    code, values = _env_after_sourcing()
    assert code == 0
    assert values['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    # Jazzy and newer read only the range; the deprecated variable stays unset (no warning).
    assert values['ROS_LOCALHOST_ONLY'] == '' and 20 <= int(values['ROS_DOMAIN_ID']) < 220
    code, values = _env_after_sourcing(SSL_OBSTACLE_NETWORK='1', ROS_DOMAIN_ID='42')
    assert code == 0
    assert values == {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'ROS_LOCALHOST_ONLY': '',
                      'ROS_DOMAIN_ID': '42'}
    code, _ = _env_after_sourcing(SSL_OBSTACLE_NETWORK='1')  # no domain chosen: refuse
    assert code != 0
