"""
DDS stays on loopback with the variable the distribution reads, and nothing warns.

Jazzy's rcl prints "ROS_LOCALHOST_ONLY is deprecated…" (and then ignores
ROS_AUTOMATIC_DISCOVERY_RANGE) when ROS_LOCALHOST_ONLY=1 is set; Kilted ignores
ROS_LOCALHOST_ONLY altogether, so there only ROS_AUTOMATIC_DISCOVERY_RANGE keeps discovery on
this machine. rcl logs the range it settled on at debug level during rclpy.init: each test
starts a real node in a child process and reads that line.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys


REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
WITH_ENV = REPO_DIR / 'scripts' / 'with_env.sh'

PROBE = """
import os
import rclpy
import rclpy.logging
rclpy.logging.set_logger_level('rcl', rclpy.logging.LoggingSeverity.DEBUG)
rclpy.init(args=['dds_probe'])
node = rclpy.create_node('dds_probe')
for name in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS',
             'ROS_DISCOVERY_SERVER'):
    print(f'probe-env {name}={os.environ.get(name, "")}', flush=True)
node.destroy_node()
rclpy.shutdown()
"""

RANGE_LINE = re.compile(r'Automatic discovery range is (\S+)')


def running_distro() -> str:
    """Name the distribution of this test run's wheels (the Makefile exports it)."""
    if os.environ.get('SSL_ROS_DISTRO'):
        return os.environ['SSL_ROS_DISTRO']
    for distro in ('kilted', 'jazzy'):
        try:
            importlib.metadata.version(f'ros-{distro}-rclpy')
        except importlib.metadata.PackageNotFoundError:
            continue
        return distro
    return 'jazzy'


def venv_of(distro: str) -> pathlib.Path:
    return REPO_DIR / ('.venv' if distro == 'jazzy' else f'.venv-{distro}')


def probe(command: list[str], env: dict[str, str]) -> tuple[str, dict[str, str], str]:
    """Start a node; return the range rcl chose, the child's DDS variables, and its output."""
    result = subprocess.run([*command, '-c', PROBE], env=env, capture_output=True, text=True,
                            timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    ranges = RANGE_LINE.findall(output)
    assert ranges, f'rcl logged no discovery range:\n{output}'
    variables = dict(line[len('probe-env '):].split('=', 1)
                     for line in result.stdout.splitlines() if line.startswith('probe-env '))
    return ranges[-1], variables, output


def with_env_environment(**variables: str) -> dict[str, str]:
    """Take this process's environment, plus what a user's shell might have exported."""
    distro = running_distro()
    # The suite runs from the distribution's own venv (make test), so it must be there.
    assert (venv_of(distro) / 'bin' / 'python').exists(), \
        f'no {venv_of(distro).name} here: run the suite with make test (make setup creates it)'
    env = dict(os.environ)
    env.update(SSL_ROS_DISTRO=distro, **variables)
    return env


def assert_loopback_without_warning(chosen: str, variables: dict[str, str], output: str):
    # (rcl's own debug lines may say "deprecated form" of an argument: not a warning)
    warnings = [line for line in output.splitlines()
                if '[DEBUG]' not in line and not line.startswith('probe-env ')
                and ('deprecated' in line.lower()
                     or 'localhost_only' in line.lower())]
    assert not warnings, output
    assert chosen.endswith('LOCALHOST'), output
    assert variables['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert variables['ROS_LOCALHOST_ONLY'] == ''
    assert variables['ROS_STATIC_PEERS'] == '' and variables['ROS_DISCOVERY_SERVER'] == ''


def test_a_node_started_through_with_env_stays_on_loopback_and_prints_no_warning():
    env = with_env_environment()
    for name in ('ROS_LOCALHOST_ONLY', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS',
                 'ROS_DISCOVERY_SERVER'):
        env.pop(name, None)
    assert_loopback_without_warning(*probe([str(WITH_ENV), 'python'], env))


def test_with_env_overrides_what_the_users_shell_exported():
    # A shell with an old ROS setup sourced, or a user's own discovery settings: the
    # project's nodes still stay on loopback, and rcl still prints no deprecation warning.
    # (Loopback addresses only, so nothing leaves the machine even if this failed.)
    env = with_env_environment(ROS_LOCALHOST_ONLY='1', ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
                               ROS_STATIC_PEERS='127.0.0.1',
                               ROS_DISCOVERY_SERVER='127.0.0.1:11811', ROS_DISTRO='humble')
    assert_loopback_without_warning(*probe([str(WITH_ENV), 'python'], env))


def test_the_test_process_environment_stays_on_loopback_and_prints_no_warning():
    # What conftest.py set up for this run (no scripts/env.sh in between).
    if int(importlib.metadata.version('rclpy').split('.')[0]) < 4:
        # Humble's rcl knows only ROS_LOCALHOST_ONLY and logs no discovery range to probe.
        assert os.environ.get('ROS_LOCALHOST_ONLY') == '1'
        assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in os.environ
        return
    assert_loopback_without_warning(*probe([sys.executable], dict(os.environ)))
