"""The labeler as users start it: a process of its own, a parameter file, a namespace."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import cv2
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import CompressedImage, LaserScan
from ssl_obstacle.io.messages import laser_msg, odometry_msg, time_from_ns
from ssl_obstacle.io.params_file import load_labeler_config
from ssl_obstacle.io.pipeline import LabelingPipeline
from ssl_obstacle.sim.scripted_run import generate_run
from ssl_obstacle_msgs.msg import LabeledFrame
from std_msgs.msg import Header
from test_labeler_node import assert_same_frames
import yaml

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'config', 'labeler.yaml')
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
LASER_ORDER = ('right', 'center_right', 'center', 'center_left', 'left')


def thymio_messages(seconds: float) -> list[tuple[str, object]]:
    """Return a scripted run as the Thymio driver and a JPEG camera would publish it."""
    messages: list[tuple[str, object]] = []
    pending: dict[int, dict[str, float]] = {}
    for event in generate_run(seconds, seed=5, image_shape=(60, 80)):
        if event.kind == 'odom':
            messages.append(('odom', odometry_msg(event.stamp, *event.pose)))
        elif event.kind == 'frame':
            ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(event.image, cv2.COLOR_RGB2BGR))
            assert ok
            header = Header(stamp=time_from_ns(event.stamp), frame_id='camera_link')
            messages.append(('camera/image_raw/compressed', CompressedImage(
                header=header, format='jpeg', data=jpeg.tobytes())))
        else:
            readings = pending.setdefault(event.stamp, {})
            readings[event.sensor] = event.value
            if len(readings) == len(LASER_ORDER):
                values = [readings[name] for name in LASER_ORDER]
                messages.append(('proximity/laser', laser_msg(event.stamp, values)))
                del pending[event.stamp]
    return messages


class ThymioPlayer(Node):
    """Publishes like a namespaced Thymio driver and listens to the labeler's output."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('thymio_player', namespace=namespace, context=context)
        self.pubs = {
            'odom': self.create_publisher(Odometry, 'odom', RELIABLE),
            'camera/image_raw/compressed': self.create_publisher(
                CompressedImage, 'camera/image_raw/compressed', RELIABLE),
            'proximity/laser': self.create_publisher(LaserScan, 'proximity/laser', RELIABLE),
        }
        self.frames: list[LabeledFrame] = []
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self.frames.append, RELIABLE)

    def play(self, messages) -> None:
        from test_labeler_node import StreamPlayer
        StreamPlayer.play(self, messages)


def test_run_command_labels_a_namespaced_thymio_with_laser_and_jpeg(tmp_path):
    params = yaml.safe_load(pathlib.Path(CONFIG).read_text())
    overrides = params['/**']['ros__parameters']
    overrides.update(proximity_source='laser', camera_transport='compressed',
                     sensor_qos_depth=500, camera_qos_depth=500, queue_size=20000,
                     camera_queue_size=20000, reorder_window=1.0, time_jump_threshold=5.0)
    params_file = tmp_path / 'labeler.yaml'
    params_file.write_text(yaml.safe_dump(params))

    label_params, settings, _ = load_labeler_config(params_file)
    messages = thymio_messages(15.0)
    pipeline = LabelingPipeline(label_params, settings)
    expected = []
    handlers = {'odom': pipeline.on_odometry, 'proximity/laser': pipeline.on_laser,
                'camera/image_raw/compressed': pipeline.on_compressed_image}
    for topic, msg in messages:
        handlers[topic](msg)
        expected.extend(pipeline.poll())
    assert len(expected) > 100

    process = subprocess.Popen(
        [sys.executable, '-m', 'ssl_obstacle', 'run', 'labeler', '--params', str(params_file),
         '--namespace', 'thymio10'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with ros_context() as context:
            player = ThymioPlayer(context, 'thymio10')
            with spinning(context, player):
                wait_for_subscribers(list(player.pubs.values()), timeout=20.0)
                player.play(messages)
                wait_for(lambda: len(player.frames) >= len(expected), timeout=15.0)
            player.destroy_node()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    print(output)
    assert_same_frames(player.frames, expected)
    assert all(np.isfinite(player.frames[0].distances))
    assert process.returncode == 0, output
    assert 'from laser proximity, compressed camera' in output
    assert '/thymio10/ssl/labeled_frames' in output
    assert 'stopping:' in output
