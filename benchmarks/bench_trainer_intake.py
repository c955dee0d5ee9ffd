#!/usr/bin/env python3
"""
How many labeled frames a second the trainer node takes in while it trains.

A burst (a replay buffer filled at start-up, a bag replayed fast, several robots' labelers
finalising backlogs) arrives faster than real time; the node's queue absorbs what its worker
cannot take at once. This puts ``--frames`` labeled frames (default model size) into a
running trainer node's intake queue at once, as its subscription callbacks would, while the
worker trains uncapped at batch 64, and times until the worker has checked, scored and
stored them all: frames per second, and the training steps taken meanwhile.

Run: SSL_OBSTACLE_DEV=1 scripts/with_env.sh python benchmarks/bench_trainer_intake.py
     [--frames 1500] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.messages import labeled_frame_msg
from ssl_obstacle.nodes.runtime import start_executors, stop_executors
from ssl_obstacle.nodes.trainer_node import TrainerNode


def frames(count: int) -> list:
    """Return ``count`` labeled frame messages with 30 % positive cells."""
    params = LabelParams()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 64, 80, 3), np.uint8)
    labels = (rng.random((5, 31)) < 0.3).astype(np.float32)
    return [labeled_frame_msg(LabeledResult(stamp=1_000_000 * (i + 1), pose=np.zeros(3),
                                            payload=images[i % 64], labels=labels,
                                            counts=np.ones((5, 31), np.uint8),
                                            reason='complete'),
                              params.sensor_names, params.distances, 'camera')
            for i in range(count)]


def wait_taken_in(node: TrainerNode, count: int, timeout: float = 600.0) -> None:
    """Wait until the worker has taken ``count`` frames in."""
    deadline = time.monotonic() + timeout
    while node.counters['labeled_in'] < count and time.monotonic() < deadline:
        time.sleep(0.001)


def main() -> None:
    """Prefill, let training start, then time a burst."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=1500)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    messages = frames(200 + args.frames)
    context = Context()
    rclpy.init(context=context)
    node = TrainerNode(context=context, parameter_overrides=[
        Parameter('max_updates_per_second', value=0.0), Parameter('device', value=args.device),
        Parameter('labeled_queue_size', value=len(messages) + 10),
        Parameter('publish_period', value=0.5)])
    executors = start_executors([node], context)
    try:
        for msg in messages[:200]:
            node._intake.put_nowait(('', msg))
        wait_taken_in(node, 200)
        time.sleep(2.0)  # training under way
        updates = node.trainer.updates
        start = time.perf_counter()
        for msg in messages[200:]:
            node._intake.put_nowait(('', msg))
        wait_taken_in(node, len(messages))
        elapsed = time.perf_counter() - start
        steps = node.trainer.updates - updates
        print(f'{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {node.trainer.device}: '
              f'{args.frames} frames checked, scored and stored in {elapsed:.2f} s '
              f'({args.frames / elapsed:.0f} frames/s) while training took {steps} steps '
              f'({steps / elapsed:.1f}/s)')
    finally:
        stop_executors(executors)
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    main()
