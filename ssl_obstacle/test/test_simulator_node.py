"""The simulated robot over real DDS: what it publishes, and the labeler fed by it."""

from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Range
from ssl_obstacle.io.messages import labeled_frame_arrays
from ssl_obstacle.nodes.explorer_node import ExplorerNode
from ssl_obstacle.nodes.labeler_node import LabelerNode
from ssl_obstacle.nodes.simulator_node import SimulatorNode
from ssl_obstacle_msgs.msg import LabeledFrame
from tf2_msgs.msg import TFMessage

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)


class Recorder(Node):
    """Keeps every message of the topics it is asked to watch."""

    def __init__(self, context, topics: dict[str, type], namespace: str = '') -> None:
        super().__init__('recorder', namespace=namespace, context=context)
        self.received: dict[str, list] = {topic: [] for topic in topics}
        for topic, msg_type in topics.items():
            qos = BEST_EFFORT if msg_type in (Image, Range) else RELIABLE
            self.create_subscription(msg_type, topic, self.received[topic].append, qos)


def simulator(context, namespace: str = '', **parameters) -> SimulatorNode:
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    return SimulatorNode(context=context, namespace=namespace, parameter_overrides=overrides)


def test_publishes_what_the_thymio_driver_and_a_camera_publish():
    topics = {'/clock': Clock, 'camera/image_raw': Image, 'camera/camera_info': CameraInfo,
              'proximity/center': Range, 'proximity/left': Range, 'odom': Odometry,
              'ground_truth/odom': Odometry, 'ground_truth/labels': LabeledFrame,
              '/tf': TFMessage}
    with ros_context() as context:
        recorder = Recorder(context, topics, namespace='thymio10')
        with spinning(context, recorder):
            time.sleep(1.0)
            sim = simulator(context, 'thymio10', world='walls', seed=2, real_time_factor=4.0,
                            duration=4.0, odom_noise=0.0)
            with spinning(context, sim):
                assert sim.finished.wait(15.0)
                time.sleep(0.5)
            sim.close()
            sim.destroy_node()
        recorder.destroy_node()
    got = recorder.received
    stamps = [c.clock.sec + 1e-9 * c.clock.nanosec for c in got['/clock']]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] > 3.0
    image = got['camera/image_raw'][-1]
    assert (image.width, image.height, image.encoding) == (320, 240, 'rgb8')
    assert len(image.data) == 240 * image.step
    info = got['camera/camera_info'][-1]
    fx = info.k[0]
    assert math.isclose(2 * math.degrees(math.atan(info.width / 2 / fx)), 45.0, abs_tol=0.5)
    # Roughly the rates: camera 15 Hz, proximity 10 Hz, odometry 20 Hz over ~4 s.
    assert 45 <= len(got['camera/image_raw']) <= 62
    assert 30 <= len(got['proximity/center']) <= 42
    assert 60 <= len(got['odom']) <= 82
    center = got['proximity/center'][-1]
    assert center.header.frame_id == 'thymio10/proximity_center_link'
    assert (center.min_range, center.max_range) == pytest.approx((0.0215, 0.14))
    assert all(r.range == -1.0 or 0.0215 <= r.range <= 0.14 for r in got['proximity/center'])
    odom = got['odom'][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ('thymio10/odom', 'thymio10/base_link')
    transform = got['/tf'][-1].transforms[0]
    assert transform.child_frame_id == 'thymio10/base_link'
    labels = got['ground_truth/labels'][-1]
    assert len(labels.labels) == 5 * 31 and set(bytes(labels.counts)) == {1}
    assert set(np.asarray(labels.labels)) <= {0.0, 1.0}


def test_cmd_vel_drives_the_robot_and_a_timeout_stops_it():
    with ros_context() as context:
        recorder = Recorder(context, {'ground_truth/odom': Odometry})
        driver = Node('driver', context=context)
        cmd = driver.create_publisher(Twist, 'cmd_vel', 10)
        sim = simulator(context, world='boxes', seed=1, real_time_factor=2.0,
                        odom_noise=0.0, cmd_timeout=0.5, ground_truth=False)
        with spinning(context, recorder, driver, sim):
            assert wait_for(lambda: cmd.get_subscription_count() > 0, 10.0)
            assert wait_for(lambda: len(recorder.received['ground_truth/odom']) > 5, 10.0)
            start = recorder.received['ground_truth/odom'][-1].pose.pose.position
            twist = Twist()
            twist.angular.z = 1.0
            for _ in range(10):  # 1 s of wall time = ~2 s simulated
                cmd.publish(twist)
                time.sleep(0.1)
            time.sleep(1.0)  # no command: the timeout stops the robot
            bad = Twist()
            bad.linear.x = math.nan
            cmd.publish(bad)  # ignored safely: the robot stays stopped
            assert wait_for(lambda: sim.bad_commands == 1, 5.0)
            before = recorder.received['ground_truth/odom'][-1].pose.pose
            time.sleep(0.5)
            after = recorder.received['ground_truth/odom'][-1].pose.pose
        sim.close()
        for node in (recorder, driver, sim):
            node.destroy_node()
    yaw = 2 * math.atan2(before.orientation.z, before.orientation.w)
    assert abs(yaw) > 0.5  # it turned (on the spot: the position barely changed)
    assert math.hypot(before.position.x - start.x, before.position.y - start.y) < 0.02
    assert after.orientation.z == pytest.approx(before.orientation.z, abs=1e-9)


def test_labeler_fed_by_the_simulator_agrees_with_ground_truth():
    """The self-supervised labels, where known, match the simulator's exact labels."""
    with ros_context() as context:
        recorder = Recorder(context, {'ssl/labeled_frames': LabeledFrame,
                                      'ground_truth/labels': LabeledFrame,
                                      '/diagnostics': DiagnosticArray})
        labeler = LabelerNode(context=context, parameter_overrides=[
            Parameter('use_sim_time', value=True), Parameter('sensor_qos_depth', value=100),
            Parameter('camera_qos_depth', value=100)])
        explorer = ExplorerNode(context=context, parameter_overrides=[
            Parameter('use_sim_time', value=True)])
        with spinning(context, recorder, labeler, explorer):
            time.sleep(1.0)
            sim = simulator(context, world='boxes', seed=4, real_time_factor=3.0,
                            duration=75.0, odom_noise=0.0)
            with spinning(context, sim):
                assert sim.finished.wait(60.0)
                time.sleep(1.0)
            sim.close()
            collisions = sim.sim.collisions
            sim.destroy_node()
        labeler.close()
        for node in (recorder, labeler, explorer):
            node.destroy_node()
    truth = {labeled_frame_arrays(m)['stamp']: labeled_frame_arrays(m)['labels']
             for m in recorder.received['ground_truth/labels']}
    frames = [labeled_frame_arrays(m) for m in recorder.received['ssl/labeled_frames']]
    assert len(frames) > 300, f'only {len(frames)} labeled frames'
    agree = total = positives = 0
    for frame in frames:
        expected = truth[frame['stamp']]  # every labeled frame has its ground truth
        known = frame['counts'] > 0
        agree += int(((frame['labels'][known] >= 0.5) == (expected[known] >= 0.5)).sum())
        total += int(known.sum())
        positives += int((frame['labels'][known] >= 0.5).sum())
    assert total > 2000
    assert positives > 100, 'the run should approach obstacles'
    print(f'ground-truth agreement {agree / total:.4f} on {total} known cells '
          f'of {len(frames)} frames')
    assert agree / total >= 0.95, f'agreement {agree / total:.3f} on {total} cells'
    assert collisions == 0


def test_sim_command_runs_simulator_and_explorer_under_a_namespace():
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, '-m', 'ssl_obstacle', 'sim', '--world', 'pillars', '--seed', '3',
         '--real-time-factor', '4', '--namespace', 'thymio3'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with ros_context() as context:
            recorder = Recorder(context, {'cmd_vel': Twist, 'ground_truth/odom': Odometry,
                                          '/clock': Clock}, namespace='thymio3')
            with spinning(context, recorder):
                moving = wait_for(lambda: any(t.linear.x > 0.05 for t in
                                              recorder.received['cmd_vel']), 30.0)
                time.sleep(2.0)
            recorder.destroy_node()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert moving, output
    poses = recorder.received['ground_truth/odom']
    first, last = poses[0].pose.pose.position, poses[-1].pose.pose.position
    assert math.hypot(last.x - first.x, last.y - first.y) > 0.05  # the explorer drove it
    assert process.returncode == 0, output
    assert "world 'pillars'" in output and 'exploring at' in output
    assert 'collision' in output  # the simulator's closing line
