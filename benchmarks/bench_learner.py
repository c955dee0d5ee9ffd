#!/usr/bin/env python3
"""
Camera-to-prediction latency of the learner node while it trains, over DDS.

A camera node publishes 320x240 rgb8 frames at 30 Hz stamped with the wall clock; a
subscriber measures, for each ObstaclePrediction, the time from the frame's stamp to the
prediction's arrival. Meanwhile labeled frames arrive at 10 Hz and the learner trains
uncapped (batch 64) in its background thread. Prints p50/p99 latency, frames predicted vs
sent (the rest were replaced by newer frames: newest-only prediction), training updates per
second, and resident memory at the start and end (flat = no leak).

Run: scripts/with_env.sh python benchmarks/bench_learner.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.messages import labeled_frame_msg, rgb_to_image_msg
from ssl_obstacle.nodes.labeler_node import LABELED_FRAMES_QOS
from ssl_obstacle.nodes.learner_node import LearnerNode
from ssl_obstacle_msgs.msg import LabeledFrame, ObstaclePrediction
from std_msgs.msg import Header


def rss_mb() -> float:
    with open('/proc/self/status', encoding='ascii') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0)
    args = parser.parse_args()
    context = Context()
    rclpy.init(context=context)
    learner = LearnerNode(context=context, parameter_overrides=[
        Parameter('max_updates_per_second', value=0.0), Parameter('publish_overlay', value=False),
        Parameter('publish_markers', value=False)])
    driver = Node('bench_driver', context=context)
    camera = driver.create_publisher(Image, 'camera/image_raw', 10)
    labeled = driver.create_publisher(LabeledFrame, 'ssl/labeled_frames', LABELED_FRAMES_QOS)
    latencies: list[float] = []

    def on_prediction(msg: ObstaclePrediction) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        latencies.append(time.time() - stamp)

    driver.create_subscription(ObstaclePrediction, 'ssl/predictions', on_prediction, 100)
    executors = []
    for node in (learner, driver):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        executors.append(executor)
    time.sleep(2.0)
    rng = np.random.default_rng(0)
    params = LabelParams()
    frames = rng.integers(0, 255, size=(8, 240, 320, 3), dtype=np.uint8)
    small = rng.integers(0, 255, size=(8, 64, 80, 3), dtype=np.uint8)

    def labeled_frame(i: int) -> LabeledFrame:
        labels = np.where(rng.random((5, 31)) < 0.3, 1.0, 0.0).astype(np.float32)
        result = LabeledResult(stamp=int(time.time() * 1e9), pose=np.zeros(3),
                               payload=small[i % 8], labels=labels,
                               counts=np.ones((5, 31), np.uint8), reason='complete')
        return labeled_frame_msg(result, params.sensor_names, params.distances, 'camera')

    for i in range(200):  # fill the replay buffer so training runs from the start
        labeled.publish(labeled_frame(i))
        time.sleep(0.002)
    time.sleep(2.0)
    updates0, rss0, sent = learner.learner.updates, rss_mb(), 0
    start = time.monotonic()
    next_frame = start
    while time.monotonic() - start < args.seconds:
        now = time.time()
        header = Header(stamp=rclpy.time.Time(nanoseconds=int(now * 1e9)).to_msg(),
                        frame_id='camera_link')
        camera.publish(rgb_to_image_msg(frames[sent % 8], header))
        if sent % 3 == 0:
            labeled.publish(labeled_frame(sent))
        sent += 1
        next_frame += 1 / 30
        time.sleep(max(0.0, next_frame - time.monotonic()))
    time.sleep(0.5)
    elapsed = time.monotonic() - start
    updates = learner.learner.updates - updates0
    values = np.array(latencies[10:]) * 1000
    print(f'{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.seconds:g} s at 30 Hz '
          '(320x240 rgb8), labeled frames at 10 Hz, training uncapped, batch 64')
    print(f'latency frame stamp -> prediction received: p50 {np.percentile(values, 50):.1f} ms, '
          f'p99 {np.percentile(values, 99):.1f} ms, max {values.max():.1f} ms '
          f'({len(latencies)} predictions for {sent} frames sent; '
          f'{learner.counters["stale_dropped"]} replaced by newer frames)')
    print(f'training: {updates / elapsed:.1f} updates/s alongside')
    print(f'resident memory: {rss0:.0f} MB after warm-up, {rss_mb():.0f} MB at the end')
    for executor in executors:
        executor.shutdown()
    learner.close()
    learner.destroy_node()
    driver.destroy_node()
    rclpy.shutdown(context=context)


if __name__ == '__main__':
    main()
