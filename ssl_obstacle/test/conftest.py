"""Test setup: DDS stays on loopback, in a domain of this run's own."""

import importlib.metadata
import os
import random

#: Distributions whose rcl knows only ROS_LOCALHOST_ONLY (no ROS_AUTOMATIC_DISCOVERY_RANGE).
LEGACY_DISCOVERY_DISTROS = ('ardent', 'bouncy', 'crystal', 'dashing', 'eloquent', 'foxy',
                            'galactic', 'humble')


def discovery_variable() -> str | None:
    """
    Name the variable that keeps this rclpy's discovery on loopback, None if unknown.

    Iron and newer (rclpy 4 and up: Jazzy 7, Kilted 9) read ROS_AUTOMATIC_DISCOVERY_RANGE;
    Jazzy warns that ROS_LOCALHOST_ONLY is deprecated, Kilted ignores it. Humble (rclpy 3)
    reads only ROS_LOCALHOST_ONLY. The rclpy that will be imported decides (its metadata is
    read without importing it); the distribution's name is the fallback.
    """
    try:
        major = int(importlib.metadata.version('rclpy').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        major = None
    if major is not None:
        return 'ROS_AUTOMATIC_DISCOVERY_RANGE' if major >= 4 else 'ROS_LOCALHOST_ONLY'
    distro = os.environ.get('SSL_ROS_DISTRO') or os.environ.get('ROS_DISTRO')
    if not distro:
        return None
    if distro in LEGACY_DISCOVERY_DISTROS:
        return 'ROS_LOCALHOST_ONLY'
    return 'ROS_AUTOMATIC_DISCOVERY_RANGE'


# Before rclpy is imported anywhere: never discover or announce beyond this machine, and
# never see another test run's nodes (make test sets these too, through scripts/env.sh;
# direct pytest runs rely on this). Only the variable this distribution reads is set, so
# rcl prints no deprecation warning; unknown: both, loopback either way. Static peers, a
# discovery server or the network opt-in (SSL_OBSTACLE_NETWORK, for scripts/env.sh in child
# processes) from the developer's shell never reach a test.
_VARIABLE = discovery_variable()
for _name in ('SSL_OBSTACLE_NETWORK', 'ROS_STATIC_PEERS', 'ROS_DISCOVERY_SERVER',
              'ROS_SUPER_CLIENT', 'ROS_LOCALHOST_ONLY', 'ROS_AUTOMATIC_DISCOVERY_RANGE'):
    os.environ.pop(_name, None)
if _VARIABLE in ('ROS_AUTOMATIC_DISCOVERY_RANGE', None):
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
if _VARIABLE in ('ROS_LOCALHOST_ONLY', None):
    os.environ['ROS_LOCALHOST_ONLY'] = '1'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(20, 220)))
