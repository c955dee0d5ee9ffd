#!/usr/bin/env python3
"""
Held-out ground-truth AUC of the online learner after N simulated minutes, beside offline.

The online part is the demo itself (:class:`ssl_obstacle.commands.demo.Demo`): simulator, explorer,
labeler and learner as ROS nodes over DDS in this process, simulated time as fast as the
CPU allows but paced so that the learner gets ``--updates-per-second`` training steps per
simulated second, the training world's appearance re-drawn every ``--appearance-period``
simulated seconds. Its model is then scored on a fresh run in the held-out layout (unseen
seed) against the simulator's exact labels on every cell.

The offline part trains a fresh model with ``ssl-obstacle train``'s code
(:func:`ssl_obstacle.core.training.train_model`) on exactly the labeled frames the online learner
was sent (a subscriber beside it keeps them; the pacing leaves none in flight, and a
differing count is printed; at the default capacity its replay buffer evicts nothing),
for as many wall-clock seconds as the online run took, with ``--offline-threads`` torch
threads (the online trainer uses one), no validation split, the same augmentation; then
scores it on the same held-out frames.

Prints a table (mean AUC and per 10 cm band, updates, frames, seconds) with the machine's
conditions (CPUs, load before and after: other people's jobs share these cores, and the
pacing keeps the online figure independent of load while the wall time is not), and writes
the figures to ``--json`` (default ``<out>/bench_heldout.json``).

Run: scripts/with_env.sh python benchmarks/bench_heldout.py [--minutes 10] [--out DIR]
     [--seed 0] [--updates-per-second 3] [--appearance-period 5] [--offline-threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pathlib
import platform
import sys
import time
from typing import Any

import numpy as np
from ssl_obstacle.commands.demo import add_arguments, Demo
from ssl_obstacle.commands.plots import write_json
from ssl_obstacle.core.evaluation import build_report
from ssl_obstacle.core.implied_labels import BlockedCompletion
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.core.training import Frames, train_model
import torch


def conditions() -> dict[str, Any]:
    """Return the machine's CPUs and load averages, as `uptime` shows them."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    return {'machine': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(), 'cpus_usable': usable,
            'load': [round(value, 2) for value in os.getloadavg()],
            'torch': torch.__version__}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Return the mean AUC and the per-band AUCs of a report as plain floats."""
    return {'auc_mean': float(report['auc_mean']),
            'auc_by_band': {band: float(value) for band, value in report['auc_by_band'].items()},
            'frames': int(report['frames'])}


def offline(frames: Frames, seconds: float, threads: int, seed: int,
            heldout: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Train with core/training.py for ``seconds`` of wall time; score on the held-out set."""
    from ssl_obstacle.core.model import predict_probabilities

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        result = train_model(frames, None, epochs=10 ** 6, seed=seed, max_seconds=seconds,
                             progress=sys.stderr.isatty())
        images, labels = heldout
        probabilities = predict_probabilities(result.model, images)
    finally:
        torch.set_num_threads(previous)
    params = LabelParams()
    report = build_report(probabilities, labels, params.sensor_names, params.distances,
                          n_boot=20, seed=seed)
    return {**summary(report), 'updates': result.updates, 'seconds': round(result.seconds, 1),
            'threads': max(1, threads), 'epochs': len(result.history)}


def table(figures: dict[str, Any]) -> str:
    """Return the figures as a small text table."""
    online, off = figures['online'], figures.get('offline')
    bands = list(online['auc_by_band'])
    head = f'{"model":8} {"mean AUC":>9} ' + ' '.join(f'{b:>8}' for b in bands) + \
        f' {"updates":>8} {"frames":>7} {"wall s":>7}'
    lines = [head, '-' * len(head)]
    rows = [('online', online)] + ([('offline', off)] if off else [])
    for name, row in rows:
        lines.append(f'{name:8} {row["auc_mean"]:9.3f} '
                     + ' '.join(f'{row["auc_by_band"][b]:8.3f}' for b in bands)
                     + f' {row["updates"]:8d} {figures["train_frames"]:7d}'
                     f' {row["seconds"]:7.0f}')
    if off:
        lines.append(f'online - offline: {online["auc_mean"] - off["auc_mean"]:+.3f}')
    settings = figures['settings']
    before, after = figures['conditions_before'], figures['conditions_after']
    lines.append(
        f'{settings["minutes"]:g} simulated minutes in {settings["world"]!r} (appearance '
        f're-drawn every {settings["appearance_period"]:g} s, '
        f'{settings["updates_per_second"]:g} updates per simulated s), held-out '
        f'{settings["heldout_world"]!r} seed {settings["heldout_seed"]} '
        f'({online["frames"]} frames, every cell scored against ground truth)')
    lines.append(
        f'conditions: {before["cpus"]} CPUs ({before["cpus_usable"]} usable), load before '
        f'{" ".join(map(str, before["load"]))}, after {" ".join(map(str, after["load"]))}; '
        f'offline with {off["threads"] if off else "-"} torch thread(s)')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the online demo, the offline comparison, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    add_arguments(parser)
    parser.add_argument('--offline-threads', type=int, default=1,
                        help='torch threads of the offline training (the online trainer '
                             'uses 1)')
    parser.add_argument('--no-offline', action='store_true', help='online figures only')
    parser.add_argument('--json', help='figures file (default <out>/bench_heldout.json)')
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = pathlib.Path(args.out or f'runs/bench-heldout-{stamp}')
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    before = conditions()
    print(f'online: demo for {args.minutes:g} simulated minutes -> {out}', flush=True)
    demo = Demo(args, out, record_frames=True)
    report = demo.run()
    training = json.loads((out / 'report.json').read_text())['training']
    images, labels = demo.frames
    # Frames without a known cell carry no gradient; the trainer does not store them either.
    usable = ~np.isnan(labels).all(axis=(1, 2))
    frames = Frames(images[usable], labels[usable])
    params = LabelParams()
    completion = BlockedCompletion(params.sensor_names, params.distances) \
        if demo.final['parameters'].get('implied_blocking', True) else None
    if completion is not None and completion.active:
        # offline trains on the targets the online trainer trained on
        frames = Frames(frames.images, completion(frames.labels))
    evicted = int(training['trainer'].get('replay_evicted', 0))
    figures: dict[str, Any] = {
        'online': {**summary(report), 'updates': int(training['updates']),
                   'labeled_frames': int(training['labeled_frames']),
                   'seconds': round(demo.wall_seconds, 1), 'threads': 1,
                   'pacing': demo.pacer.summary() if demo.pacer else None},
        'train_frames': len(frames), 'tapped_frames': len(labels), 'evicted': evicted,
        'settings': {'minutes': args.minutes, 'world': args.world, 'seed': args.seed,
                     'heldout_world': args.heldout_world, 'heldout_seed': args.seed + 1000,
                     'heldout_minutes': args.heldout_minutes,
                     'appearance_period': args.appearance_period,
                     'updates_per_second': args.updates_per_second,
                     'implied_blocking': completion is not None,
                     'learner_params': list(args.learner_param)},
        'conditions_before': before,
    }
    if evicted:
        print(f'note: the online replay buffer evicted {evicted} frames; offline trains on '
              f'all {len(frames)}', flush=True)
    if len(labels) != training['labeled_frames']:
        print(f'note: the trainer received {training["labeled_frames"]} labeled frames, the '
              f'benchmark {len(labels)}', flush=True)
    if not args.no_offline:
        print(f'offline: {len(frames)} frames, {demo.wall_seconds:.0f} s of training',
              flush=True)
        started = time.monotonic()
        figures['offline'] = offline(frames, demo.wall_seconds, args.offline_threads,
                                     args.seed, demo.heldout)
        figures['offline']['wall_seconds'] = round(time.monotonic() - started, 1)
    figures['conditions_after'] = conditions()
    path = pathlib.Path(args.json) if args.json else out / 'bench_heldout.json'
    write_json(path, figures)
    print()
    print(table(figures))
    print(f'figures: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
