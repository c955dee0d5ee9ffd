"""
Benchmark the labeling core alone: a run's messages in, labeled frames out, offline.

Synthetic runs of a scripted Thymio (``generate_run`` with ``image_shape=None``: camera
30 Hz, five proximity sensors at 10 Hz, odometry 20 Hz) are converted to plain tuples
before the clock starts, then fed to one :class:`~ssl_obstacle.core.labeler.Labeler`
the way ``ssl-obstacle export`` does: one ``add_readings`` per Range message, a poll
every 200 messages, a flush at the end. Labeled frames are counted and dropped, as an
exporter writes them out, so what is measured is the core, not a growing result list.

For each length it reports:

* frames/s: camera frames per second of labeling, best of ``--repeat`` runs (wall clock;
  the CPU time of the process is shown too, since the machine may be shared);
* µs/frame and the ratio of the longest to the shortest run: 1.0 means time is linear
  in the length of the run. The same ratio within the longest run (CPU time of its last
  tenth over its first) is printed too: on a shared machine it is the steadier of the two;
* peak memory: the largest amount Python allocated during the labeling loop, above what
  was allocated before it (tracemalloc, in a separate untimed pass because tracing slows
  Python down). It should not grow with the length of the run.

Usage (``SSL_OBSTACLE_DEV=1`` benchmarks the source tree instead of the install space)::

    scripts/with_env.sh python benchmarks/bench_labeling.py                # 5, 15, 60 min
    scripts/with_env.sh python benchmarks/bench_labeling.py --quick        # 1 and 3 min
    scripts/with_env.sh python benchmarks/bench_labeling.py --minutes 5 15 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import tracemalloc

import numpy as np
from ssl_obstacle.core.labeler import Labeler
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.sim.scripted_run import (generate_run, PROXIMITY_MAX_RANGE,
                                           PROXIMITY_MIN_RANGE)

ODOM, FRAME, RANGE = 0, 1, 2
POLL_EVERY = 200
TARGET_FRAMES_PER_S = 20_000


def prepare(minutes: float, seed: int) -> tuple[list[tuple], int]:
    """Return the run's messages as ``(kind, stamp, a, b, c)`` tuples and its frame count."""
    sensor_index = {name: i for i, name in enumerate(LabelParams().sensor_names)}
    events: list[tuple] = []
    frames = 0
    for event in generate_run(minutes * 60.0, seed=seed, image_shape=None):
        if event.kind == 'odom':
            events.append((ODOM, event.stamp, *event.pose))
        elif event.kind == 'frame':
            events.append((FRAME, event.stamp, None, None, None))
            frames += 1
        else:  # what range_saw_obstacle decides for the driver's Range messages
            hit = PROXIMITY_MIN_RANGE <= event.value <= PROXIMITY_MAX_RANGE
            events.append((RANGE, event.stamp, sensor_index[event.sensor], hit, None))
    return events, frames


def label(events: list[tuple], params: LabelParams,
          clock: list[float] | None = None) -> tuple[int, Labeler]:
    """
    Feed every message, polling every POLL_EVERY; return frames labeled and the labeler.

    With ``clock``, the CPU time at every poll is appended to it.
    """
    labeler = Labeler(params)
    add_odometry, add_frame = labeler.add_odometry, labeler.add_frame
    add_readings, poll = labeler.add_readings, labeler.poll
    labeled = 0
    for count, (kind, stamp, a, b, c) in enumerate(events, 1):
        if kind == ODOM:
            add_odometry(stamp, a, b, c)
        elif kind == FRAME:
            add_frame(stamp)
        else:
            add_readings(stamp, [a], [b])
        if count % POLL_EVERY == 0:
            labeled += len(poll())
            if clock is not None:
                clock.append(time.process_time())
    labeled += len(labeler.poll()) + len(labeler.flush())
    return labeled, labeler


def timed(events: list[tuple], params: LabelParams,
          repeat: int) -> tuple[float, float, int, Labeler, float]:
    """
    Return best wall-clock and CPU seconds over ``repeat`` runs, and the drift.

    The drift is the CPU time of the last tenth of the messages over that of the first
    tenth, within one run: unlike comparing runs of different lengths, a shared machine's
    changing load hardly affects it when the run is long.
    """
    best_wall = best_cpu = float('inf')
    drift = float('nan')
    for _ in range(repeat):
        gc.collect()
        clock: list[float] = []
        wall, cpu = time.perf_counter(), time.process_time()
        labeled, labeler = label(events, params, clock)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        tenth = len(clock) // 10
        if tenth >= 2:
            drift = (clock[-1] - clock[-1 - tenth]) / (clock[tenth] - clock[0])
    return best_wall, best_cpu, labeled, labeler, drift


def peak_memory(events: list[tuple], params: LabelParams) -> int:
    """Bytes allocated at the peak of the labeling loop, above the level before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        label(events, params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def machine() -> str:
    load = ', '.join(f'{value:.2f}' for value in os.getloadavg())
    return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
            f'load average {load}; Python {platform.python_version()}, numpy {np.__version__}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--minutes', type=float, nargs='+', default=[5.0, 15.0, 60.0],
                        help='run lengths (default: 5 15 60)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs per length; the best counts (default: 3)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-memory', action='store_true', help='skip the tracemalloc pass')
    parser.add_argument('--quick', action='store_true', help='1 and 3 minutes, one run each')
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.repeat = [1.0, 3.0], 1
    params = LabelParams()
    print(f'machine: {machine()}')
    print(f'core: {Labeler.__module__} ({sys.modules[Labeler.__module__].__file__})')
    print(f'polling every {POLL_EVERY} messages; target {TARGET_FRAMES_PER_S} frames/s\n')
    header = (f'{"minutes":>7} {"frames":>8} {"messages":>9} {"best s":>8} {"frames/s":>9} '
              f'{"cpu f/s":>9} {"us/frame":>9} {"peak MB":>8} {"labeled":>8}')
    print(header)
    rows = []
    for minutes in args.minutes:
        events, frames = prepare(minutes, args.seed)
        wall, cpu, labeled, labeler, drift = timed(events, params, args.repeat)
        peak = None if args.no_memory else peak_memory(events, params)
        rows.append((minutes, frames, wall, peak, drift))
        peak_text = '-' if peak is None else f'{peak / 1e6:.2f}'
        print(f'{minutes:7g} {frames:8d} {len(events):9d} {wall:8.3f} {frames / wall:9.0f} '
              f'{frames / cpu:9.0f} {wall / frames * 1e6:9.2f} {peak_text:>8} {labeled:8d}',
              flush=True)
        del events
    counters = labeler.counters.as_dict()
    print('\nlast run: ' + ', '.join(f'{key} {value}' for key, value in counters.items()
                                     if value))
    if len(rows) > 1:
        shortest, longest = rows[0], rows[-1]
        ratio = (longest[2] / longest[1]) / (shortest[2] / shortest[1])
        print(f'time per frame, {longest[0]:g} min vs {shortest[0]:g} min: x{ratio:.2f} '
              '(1.00 = linear)')
        print(f'time per message, last vs first tenth of the {longest[0]:g} min run: '
              f'x{longest[4]:.2f} (1.00 = linear; less sensitive to load changes)')
        if longest[3] is not None and shortest[3] is not None:
            print(f'peak memory, {longest[0]:g} min vs {shortest[0]:g} min: '
                  f'x{longest[3] / shortest[3]:.2f} (1.00 = independent of length)')
    slowest = min(frames / wall for _, frames, wall, _, _ in rows)
    verdict = 'meets' if slowest >= TARGET_FRAMES_PER_S else 'is below'
    print(f'slowest length: {slowest:.0f} frames/s, {verdict} the target of '
          f'{TARGET_FRAMES_PER_S} frames/s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
