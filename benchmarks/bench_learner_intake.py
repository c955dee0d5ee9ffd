#!/usr/bin/env python3
"""
How many labeled frames a second the process learner scores and stores while it trains.

A burst (a replay buffer filled at start-up, a bag replayed fast, the labeler finalising a
backlog) arrives faster than real time; the learner node's queue absorbs what the learner
cannot take at once. This times ``add_labeled`` (score, then send to the training process)
for ``--frames`` frames at the default model size while the trainer trains uncapped at
batch 64, and reports frames per second and the training steps taken meanwhile.

Run: SSL_OBSTACLE_DEV=1 scripts/with_env.sh python benchmarks/bench_learner_intake.py
     [--frames 1500]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from ssl_obstacle.core.model import ModelConfig
from ssl_obstacle.core.online import LearnerSettings
from ssl_obstacle.core.online_process import ProcessOnlineLearner


def main() -> None:
    """Fill, start training, then time a burst of labeled frames."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=1500)
    args = parser.parse_args()
    config = ModelConfig()
    learner = ProcessOnlineLearner(config, LearnerSettings(max_updates_per_second=0.0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, config.image_height, config.image_width, 3), np.uint8)
    labels = (rng.random((config.num_sensors, config.num_distances)) < 0.3).astype(np.float32)
    try:
        for index in range(200):
            learner.add_labeled(images[index % 64], labels, index)
        learner.start()
        time.sleep(2.0)  # training under way
        updates = learner.updates
        start = time.perf_counter()
        for index in range(args.frames):
            learner.add_labeled(images[index % 64], labels, 1000 + index)
        elapsed = time.perf_counter() - start
        print(f'{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}: {args.frames} frames '
              f'scored and stored in {elapsed:.2f} s ({args.frames / elapsed:.0f} frames/s) '
              f'while training took {learner.updates - updates} steps '
              f'({(learner.updates - updates) / elapsed:.1f}/s)')
    finally:
        learner.stop()
        learner.close()


if __name__ == '__main__':
    main()
