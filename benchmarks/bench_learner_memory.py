#!/usr/bin/env python3
"""
Resident memory of the learner node over a long run: flat, or leaking?

The learner node runs in this process (its training process, if any, is counted too); the
driver of bench_learner.py runs in another process and feeds it 320x240 camera frames at
30 Hz and labeled frames at 10 Hz for ``--minutes`` of wall-clock time (real-time rates),
after first filling the replay buffer (``--prefill``, default: its capacity) so that the
buffer's own growth (it fills lazily, up to ~300 MB at 20000 frames) is not mistaken for a
leak. Resident memory is sampled every ``--sample`` seconds; the series, and the slope of a
least-squares line through it (MB per hour, over all samples and over the second half), are
printed, with the load average at every sample.

Run: nice scripts/with_env.sh python benchmarks/bench_learner_memory.py [--minutes 60]
     [--param trainer=thread]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

from bench_learner import child_pids, learner_overrides, load_text, rss_mb
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor


def slope_mb_per_hour(minutes: list[float], values: list[float]) -> float:
    """Return the least-squares slope of ``values`` against time, in MB per hour."""
    if len(values) < 2:
        return float('nan')
    return float(np.polyfit(np.asarray(minutes) / 60.0, np.asarray(values), 1)[0])


def main() -> None:
    """Run the learner for the given time and print the memory series."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=60.0)
    parser.add_argument('--sample', type=float, default=60.0, help='seconds between samples')
    parser.add_argument('--prefill', type=int, default=None,
                        help='labeled frames sent first (default: the buffer capacity)')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='learner node parameter (YAML value), repeatable')
    args = parser.parse_args()

    from ssl_obstacle.nodes.learner_node import LearnerNode

    context = Context()
    rclpy.init(context=context)
    learner = LearnerNode(context=context, parameter_overrides=learner_overrides(args))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(learner)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    capacity = learner.learner_settings.buffer_size
    prefill = capacity if args.prefill is None else args.prefill
    seconds = 60.0 * args.minutes
    driver = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                      'bench_learner.py'),
         '--role', 'driver', '--seconds', str(seconds), '--prefill', str(prefill),
         '--warmup', '2'], stdout=subprocess.PIPE, text=True)
    print(f'{os.cpu_count()} cores; learner: {", ".join(args.param) or "defaults"}; '
          f'prefill {prefill} labeled frames (buffer {capacity}), then {args.minutes:g} min '
          'of camera 30 Hz + labeled 10 Hz (real time)', flush=True)
    assert driver.stdout is not None
    assert driver.stdout.readline().strip() == 'start'
    start = time.monotonic()
    minutes: list[float] = []
    values: list[float] = []
    updates0 = learner.learner.updates
    try:
        while True:
            pids = child_pids()
            main_mb = rss_mb()
            child_mb = sum(rss_mb(pid) for pid in pids if pid != driver.pid)
            elapsed = (time.monotonic() - start) / 60.0
            minutes.append(elapsed)
            values.append(main_mb + child_mb)
            status = learner.learner.status()
            print(f'{elapsed:6.1f} min  rss {main_mb + child_mb:7.1f} MB (node {main_mb:.1f}, '
                  f'trainer {child_mb:.1f})  updates {status.updates - updates0}  replay '
                  f'{status.replay_size}  predicted {learner.counters["predicted"]}  '
                  f'{load_text()}', flush=True)
            if elapsed * 60.0 >= seconds or driver.poll() is not None:
                break
            time.sleep(max(0.0, min(args.sample, seconds - elapsed * 60.0 + 0.5)))
    finally:
        driver.terminate()
        driver.wait(10)
        executor.shutdown()
        spin.join(5)
        learner.close()
        learner.destroy_node()
        rclpy.shutdown(context=context)
    half = len(values) // 2
    print(f'slope {slope_mb_per_hour(minutes, values):+.1f} MB/h over {len(values)} samples; '
          f'{slope_mb_per_hour(minutes[half:], values[half:]):+.1f} MB/h over the second half; '
          f'range {min(values):.1f}-{max(values):.1f} MB', flush=True)


if __name__ == '__main__':
    main()
