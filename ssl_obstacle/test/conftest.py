"""Test setup: DDS stays on loopback, in a domain of this run's own."""

import os
import random

# Before rclpy is imported anywhere: never discover or announce beyond this machine, and
# never see another test run's nodes (make test sets these too; direct pytest runs rely
# on this).
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_LOCALHOST_ONLY'] = '1'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(20, 220)))
