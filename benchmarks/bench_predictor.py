#!/usr/bin/env python3
"""
Camera-to-prediction latency of the predictor while a trainer trains, each in its process.

As a robot runs them: the predictor node and the trainer node each in a process of their
own (``python -m ssl_obstacle.nodes.<node>``, as ``ros2 launch`` starts them); this process
is the camera driver and the labeler (320x240 rgb8 frames at 30 Hz stamped with the wall
clock, a labeled frame with every third) and the consumer of predictions, which measures the
time from each frame's stamp to its prediction's arrival. The trainer trains uncapped at
batch 64 and publishes the model every 0.5 s. Each of ``--repeat`` runs prints the load
average, p50/p99/max latency, frames predicted of those sent (the rest were replaced by
newer ones), the trainer's updates per second (from its status), and the resident memory
of both processes (now and peak).

Run: scripts/with_env.sh python benchmarks/bench_predictor.py [--seconds 30] [--repeat 3]
(``SSL_OBSTACLE_DEV=1`` benchmarks the source tree instead of the install space.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.messages import labeled_frame_msg, rgb_to_image_msg, time_from_ns
from ssl_obstacle.nodes.qos import LABELED_FRAMES_QOS
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ObstaclePrediction
from std_msgs.msg import Header


def memory_mb(pid: int) -> tuple[float, float]:
    """Return a process's resident and peak resident memory in MB (NaN if it is gone)."""
    values = {}
    try:
        with open(f'/proc/{pid}/status', encoding='ascii') as status:
            for line in status:
                if line.startswith(('VmRSS:', 'VmHWM:')):
                    values[line[:5]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values.get('VmRSS', float('nan')), values.get('VmHWM', float('nan'))


class Driver(Node):
    """The camera, the labeler's output and a consumer of predictions, as another process."""

    def __init__(self, context: Context) -> None:
        super().__init__('bench_driver', context=context)
        self.camera = self.create_publisher(Image, 'camera/image_raw', 10)
        self.labeled = self.create_publisher(LabeledFrame, 'ssl/labeled_frames',
                                             LABELED_FRAMES_QOS)
        self.latencies: list[float] = []
        self.model_updates = 0
        self.updates: list[tuple[float, int]] = []
        self.measuring = False
        self.create_subscription(ObstaclePrediction, 'ssl/predictions', self._on_prediction,
                                 100)
        self.create_subscription(LearnerStatus, 'ssl/learner_status',
                                 lambda msg: self.updates.append((time.monotonic(),
                                                                  int(msg.updates))), 10)
        rng = np.random.default_rng(0)
        self.frames = rng.integers(0, 255, size=(8, 240, 320, 3), dtype=np.uint8)
        self.small = rng.integers(0, 255, size=(64, 64, 80, 3), dtype=np.uint8)
        self.params = LabelParams()
        self.rng = rng
        self.sent = 0

    def _on_prediction(self, msg: ObstaclePrediction) -> None:
        received = time.time_ns()
        self.model_updates = int(msg.model_updates)
        if self.measuring:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.latencies.append((received - stamp) / 1e6)

    def labeled_frame(self, index: int) -> LabeledFrame:
        """Return a labeled frame with 30 % positive cells, stamped now."""
        labels = np.where(self.rng.random((5, 31)) < 0.3, 1.0, 0.0).astype(np.float32)
        result = LabeledResult(stamp=time.time_ns(), pose=np.zeros(3),
                               payload=self.small[index % len(self.small)], labels=labels,
                               counts=np.ones((5, 31), np.uint8), reason='complete')
        return labeled_frame_msg(result, self.params.sensor_names, self.params.distances,
                                 'camera')

    def publish_frame(self) -> None:
        """Publish one camera frame stamped now, and every third as a labeled frame."""
        header = Header(stamp=time_from_ns(time.time_ns()), frame_id='camera_link')
        self.camera.publish(rgb_to_image_msg(self.frames[self.sent % 8], header))
        if self.sent % 3 == 0:
            self.labeled.publish(self.labeled_frame(self.sent))
        self.sent += 1

    def stream(self, seconds: float, camera_hz: float = 30.0) -> float:
        """Publish camera frames at ``camera_hz`` for ``seconds``; return the time taken."""
        start = time.monotonic()
        next_frame = start
        while time.monotonic() - start < seconds:
            self.publish_frame()
            next_frame += 1.0 / camera_hz
            time.sleep(max(0.0, next_frame - time.monotonic()))
        return time.monotonic() - start


def start_node(name: str, parameters: dict[str, Any]) -> subprocess.Popen:
    """Start one of the package's nodes in a process of its own."""
    ros_args = ['--ros-args']
    for key, value in parameters.items():
        ros_args += ['-p', f'{key}:={value}']
    return subprocess.Popen([sys.executable, '-m', f'ssl_obstacle.nodes.{name}_node',
                             *ros_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def updates_per_second(samples: list[tuple[float, int]], since: float) -> float:
    """Return the trainer's update rate over the status messages received after ``since``."""
    window = [(t, u) for t, u in samples if t >= since]
    if len(window) < 2:
        return float('nan')
    return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])


def main() -> None:
    """Start both nodes, train, then measure ``--repeat`` runs of ``--seconds``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    trainer = start_node('trainer', {'max_updates_per_second': 0.0, 'publish_period': 0.5,
                                     'status_period': 1.0, 'min_buffer': 64})
    predictor = start_node('predictor', {'publish_overlay': False, 'publish_markers': False})
    context = Context()
    rclpy.init(context=context)
    driver = Driver(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(driver)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        deadline = time.monotonic() + 120.0
        while driver.model_updates == 0 and time.monotonic() < deadline:
            driver.publish_frame()  # until a trained model reaches the predictor
            time.sleep(1 / 30)
        if driver.model_updates == 0:
            raise SystemExit('no trained model reached the predictor in 120 s')
        print(f'{os.cpu_count()} cores; camera 320x240 rgb8 at 30 Hz, labeled frames at 10 Hz; '
              'trainer uncapped, predictor and trainer each in its own process', flush=True)
        for run in range(args.repeat):
            driver.latencies.clear()
            sent_before = driver.sent
            driver.measuring = True
            started = time.monotonic()
            driver.stream(args.seconds)
            driver.measuring = False
            time.sleep(0.5)
            values = np.asarray(driver.latencies)
            rss_p, peak_p = memory_mb(predictor.pid)
            rss_t, peak_t = memory_mb(trainer.pid)
            print(f'run {run + 1}: load {os.getloadavg()[0]:.2f}; latency p50 '
                  f'{np.percentile(values, 50):.1f} p99 {np.percentile(values, 99):.1f} max '
                  f'{values.max():.1f} ms; {len(values)} of {driver.sent - sent_before} frames '
                  f'predicted; {updates_per_second(driver.updates, started):.1f} updates/s; '
                  f'predictor {rss_p:.0f} MB (peak {peak_p:.0f}), trainer {rss_t:.0f} MB '
                  f'(peak {peak_t:.0f})', flush=True)
    finally:
        for process in (predictor, trainer):
            process.terminate()
        for process in (predictor, trainer):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        executor.shutdown()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    main()
