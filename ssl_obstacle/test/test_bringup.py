"""
The bringups run for real: ``ssl-obstacle up`` in processes of their own, over DDS.

A fake Thymio driver in the test process publishes exactly as ``jeguzzi/ros-thymio`` does
(namespaced topics, reliable depth-1 QoS, ``range = -1.0`` when nothing is seen, the
``proximity/laser`` scan too) plus a camera driver's images; the package's processes see
nothing but DDS traffic, as on the robot.
"""

from __future__ import annotations

import math
import pathlib
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, LaserScan, Range
from ssl_obstacle.core.thymio import LASER_ORDER, SENSOR_NAMES
from ssl_obstacle.io.messages import (laser_msg, odometry_msg, range_msg, rgb_to_image_msg,
                                      time_from_ns)
from ssl_obstacle.record import record
from ssl_obstacle.sim.scripted_run import generate_run
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ObstaclePrediction
from std_msgs.msg import Header

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
#: What the driver uses: reliable, keep last 1.
DRIVER_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
LISTEN_QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)


def start(*arguments: str, **options) -> subprocess.Popen:
    """Start ``ssl-obstacle ARGUMENTS`` as users do, in a process (and DDS participant)."""
    return subprocess.Popen([sys.executable, '-m', 'ssl_obstacle', *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=PACKAGE_DIR, **options)


def stop(process: subprocess.Popen) -> str:
    """Ctrl-C the process as a user would; return everything it printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    print(output)
    return output


class Listener(Node):
    """Collects what the package publishes in a namespace."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('bringup_listener', namespace=namespace, context=context)
        self.frames: list[LabeledFrame] = []
        self.predictions: list[ObstaclePrediction] = []
        self.status: list[LearnerStatus] = []
        self.commands: list[Twist] = []
        self.clock: list[Clock] = []
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self.frames.append,
                                 LISTEN_QOS)
        self.create_subscription(ObstaclePrediction, 'ssl/predictions',
                                 self.predictions.append, LISTEN_QOS)
        self.create_subscription(LearnerStatus, 'ssl/learner_status', self.status.append, 10)
        self.create_subscription(Twist, 'cmd_vel', self.commands.append, 10)
        self.create_subscription(Clock, '/clock', self.clock.append, 10)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}


class FakeThymioDriver(Node):
    """Publishes a scripted run as jeguzzi/ros-thymio and a camera driver would."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('thymio_driver', namespace=namespace, context=context)
        self.prefix = namespace.strip('/') + '/'
        self.odom = self.create_publisher(Odometry, 'odom', DRIVER_QOS)
        self.laser = self.create_publisher(LaserScan, 'proximity/laser', DRIVER_QOS)
        self.ranges = {name: self.create_publisher(Range, f'proximity/{name}', DRIVER_QOS)
                       for name in SENSOR_NAMES}
        self.camera = self.create_publisher(Image, 'camera/image_raw', DRIVER_QOS)
        self.camera_stamps: list[int] = []

    def publishers(self) -> list:
        """Return every publisher, to wait for the package's subscriptions."""
        return [self.odom, self.camera, *self.ranges.values()]

    def play(self, seconds: float, speed: float = 2.0) -> None:
        """Publish ``seconds`` of a run at ``speed`` times real time, paced by the stamps."""
        start_wall, start_stamp = time.monotonic(), None
        readings: dict[int, dict[str, float]] = {}
        for event in generate_run(seconds, seed=5, image_shape=(60, 80)):
            start_stamp = event.stamp if start_stamp is None else start_stamp
            delay = start_wall + (event.stamp - start_stamp) * 1e-9 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if event.kind == 'odom':
                self.odom.publish(odometry_msg(event.stamp, *event.pose,
                                               frame_id=self.prefix + 'odom',
                                               child_frame_id=self.prefix + 'base_link'))
            elif event.kind == 'frame':
                header = Header(stamp=time_from_ns(event.stamp), frame_id=self.prefix + 'camera')
                self.camera.publish(rgb_to_image_msg(event.image, header))
                self.camera_stamps.append(event.stamp)
            else:
                self.ranges[event.sensor].publish(
                    range_msg(event.sensor, event.stamp, event.value, frame_prefix=self.prefix))
                row = readings.setdefault(event.stamp, {})
                row[event.sensor] = event.value
                if len(row) == len(LASER_ORDER):
                    self.laser.publish(laser_msg(event.stamp, [row[n] for n in LASER_ORDER],
                                                 frame_prefix=self.prefix))
                    del readings[event.stamp]


def stamp_ns(header: Header) -> int:
    """Return a header's stamp in nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def assert_predictions_are_for_camera_frames(predictions, camera_stamps) -> None:
    """Check shape, names and that each prediction carries a stamp of a frame sent."""
    assert predictions
    sent = set(camera_stamps)
    for prediction in predictions:
        assert list(prediction.sensor_names) == list(SENSOR_NAMES)
        assert len(prediction.probabilities) == len(SENSOR_NAMES) * len(prediction.distances)
        assert math.isclose(prediction.distances[-1], 0.30, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in prediction.probabilities)
        assert stamp_ns(prediction.header) in sent


def test_up_sim_runs_the_world_and_publishes_predictions(tmp_path):
    process = start('up', 'sim', '--real-time-factor', '2', '--seed', '4',
                    '--checkpoint', str(tmp_path / 'sim.pt'))
    try:
        with ros_context() as context:
            listener = Listener(context, '')
            with spinning(context, listener):
                assert wait_for(lambda: len(listener.frames) >= 20
                                and len(listener.predictions) >= 20
                                and listener.status, timeout=90.0), \
                    (len(listener.frames), len(listener.predictions))
            listener.destroy_node()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert 'labeler, explorer, learner, simulator in namespace /' in output
    predictions = listener.predictions
    assert [list(p.sensor_names) for p in predictions[:1]] == [list(SENSOR_NAMES)]
    assert all(len(p.probabilities) == 5 * 31 for p in predictions)
    stamps = [stamp_ns(p.header) for p in predictions]
    assert stamps == sorted(stamps)  # newest frame first, never an older one after it
    assert listener.clock and listener.commands  # the simulator's clock; the explorer drives
    assert any(np.isfinite(np.asarray(f.labels)).any() for f in listener.frames)
    assert (tmp_path / 'sim.pt').is_file()  # the learner checkpointed on Ctrl-C


def test_up_thymio_labels_and_predicts_from_a_namespaced_thymio_driver(tmp_path):
    process = start('up', 'thymio', '--namespace', 'thymio10', '--explorer',
                    '--checkpoint', str(tmp_path / 'thymio10.pt'))
    try:
        with ros_context() as context:
            driver = FakeThymioDriver(context, 'thymio10')
            listener = Listener(context, 'thymio10')
            outside = Listener(context, '')  # nothing may leak out of the namespace
            with spinning(context, driver, listener, outside):
                wait_for_subscribers(driver.publishers(), timeout=60.0)
                driver.play(16.0)
                wait_for(lambda: len(listener.frames) >= 60, timeout=15.0)
            for node in (driver, listener, outside):
                node.destroy_node()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert 'labeler, learner, explorer in namespace /thymio10' in output
    assert len(listener.frames) >= 60, len(listener.frames)
    sent = set(driver.camera_stamps)
    assert all(stamp_ns(f.header) in sent for f in listener.frames)
    labels = np.concatenate([np.asarray(f.labels) for f in listener.frames])
    assert np.isfinite(labels).any() and (labels[np.isfinite(labels)] > 0).any()
    assert_predictions_are_for_camera_frames(listener.predictions, driver.camera_stamps)
    assert listener.commands  # the explorer drove on /thymio10/cmd_vel
    assert not outside.frames and not outside.predictions and not outside.commands


def test_learner_in_a_second_process_learns_from_the_labeler_in_the_first(tmp_path):
    robot = start('up', 'thymio', '--namespace', 'thymio10', '--no-learner',
                  '--proximity-source', 'laser')
    workstation = start('run', 'learner', '--namespace', 'thymio10',
                        '--params', str(PACKAGE_DIR / 'config' / 'thymio.yaml'),
                        '--ros-args', '-p', f'checkpoint_path:={tmp_path / "ws.pt"}',
                        '-p', 'max_updates_per_second:=20.0')
    try:
        with ros_context() as context:
            driver = FakeThymioDriver(context, 'thymio10')
            listener = Listener(context, 'thymio10')
            with spinning(context, driver, listener):
                wait_for_subscribers([driver.laser, driver.odom, driver.camera], timeout=60.0)
                assert wait_for(lambda: listener.status, timeout=60.0), 'no learner status'
                driver.play(30.0)
                wait_for(lambda: listener.status[-1].updates >= 20
                         and listener.status[-1].labeled_frames >= len(listener.frames),
                         timeout=30.0)
            driver.destroy_node()
            listener.destroy_node()
    finally:
        robot_output = stop(robot)
        learner_output = stop(workstation)
    assert robot.returncode == 0, robot_output
    assert workstation.returncode == 0, learner_output
    assert 'labeler in namespace /thymio10' in robot_output
    assert 'from laser proximity' in robot_output
    status = listener.status[-1]
    assert len(listener.frames) >= 100
    # every labeled frame the robot published reached the learner in the other process
    assert status.labeled_frames == len(listener.frames), (status.labeled_frames,
                                                           len(listener.frames))
    assert status.updates >= 20 and math.isfinite(status.recent_loss)
    losses = [s.recent_loss for s in listener.status if math.isfinite(s.recent_loss)]
    assert losses[-1] < losses[0]  # it learns: the training loss comes down
    assert_predictions_are_for_camera_frames(listener.predictions, driver.camera_stamps)
    assert (tmp_path / 'ws.pt').is_file()


def test_up_replay_learns_from_a_bag_that_replay_plays_with_its_clock(tmp_path):
    bag = tmp_path / 'run'
    record(bag, 20 / 60, 'boxes', 2, 'mcap', namespace='thymio10', camera_size=(160, 120),
           progress=False)
    with AnyReader([bag]) as reader:
        camera = [c for c in reader.connections if c.topic == '/thymio10/camera/image_raw']
        camera_stamps = {stamp_ns(reader.deserialize(data, c.msgtype).header)
                         for c, _, data in reader.messages(camera)}
    nodes = start('up', 'replay', '--namespace', 'thymio10',
                  '--checkpoint', str(tmp_path / 'replay.pt'))
    player = None
    try:
        with ros_context() as context:
            listener = Listener(context, 'thymio10')
            with spinning(context, listener):
                player = start('replay', str(bag), '--clock', '--no-progress',
                               '--wait-for', '/thymio10/odom', '/thymio10/camera/image_raw')
                player.communicate(timeout=120)
                wait_for(lambda: listener.status
                         and listener.status[-1].labeled_frames >= len(listener.frames) > 0,
                         timeout=15.0)
            listener.destroy_node()
    finally:
        output = stop(nodes)
        if player is not None and player.poll() is None:
            stop(player)
    assert player.returncode == 0
    assert nodes.returncode == 0, output
    assert 'labeler, learner in namespace /thymio10' in output
    assert len(listener.frames) >= 50
    assert all(stamp_ns(f.header) in camera_stamps for f in listener.frames)
    assert_predictions_are_for_camera_frames(listener.predictions, camera_stamps)
    # the nodes ran on the bag's time: their status is stamped inside the recording
    assert min(camera_stamps) <= stamp_ns(listener.status[-1].header) <= max(camera_stamps) \
        + 2_000_000_000
    assert listener.status[-1].labeled_frames == len(listener.frames), listener.diagnostics


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script leaves it


def test_nodes_stop_cleanly_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
    # ros2 launch stops its processes with SIGINT; a process inheriting SIGINT ignored
    # (started in the background by a script or CI) must still close and checkpoint.
    process = start('up', 'replay', '--checkpoint', str(tmp_path / 'a.pt'),
                    preexec_fn=_ignore_sigint)
    with ros_context() as context:
        listener = Listener(context, '')
        with spinning(context, listener):
            assert wait_for(lambda: listener.status, timeout=60.0), 'the learner never started'
        listener.destroy_node()
    output = stop(process)
    assert process.returncode == 0, output
    assert 'stopping after' in output and (tmp_path / 'a.pt').is_file()


def test_sigterm_closes_the_nodes_like_ctrl_c(tmp_path):
    process = start('up', 'replay', '--checkpoint', str(tmp_path / 'b.pt'))
    with ros_context() as context:
        listener = Listener(context, '')
        with spinning(context, listener):
            assert wait_for(lambda: listener.status, timeout=60.0), 'the learner never started'
        listener.destroy_node()
    process.terminate()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert 'stopping:' in output and 'stopping after' in output  # labeler and learner closed
    assert (tmp_path / 'b.pt').is_file()
