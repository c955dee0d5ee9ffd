#!/usr/bin/env python3
"""
Screen changes to the learning on the demo's own frames, without ROS, several seeds at once.

A 5-seed demo benchmark (``bench_demo_seeds.py``) takes about 25 minutes per setting on two
cores, most of it simulating and rendering. What a learning change alters is only what the
trainer does with the frames, so this benchmark records, once per seed, the stream the
demo's trainer is sent (the same simulator, world, appearance re-draws, explorer and label
rule, without DDS: :class:`~ssl_obstacle.sim.closed_loop.ClosedLoop` and the core labeler),
caches it, and replays it into :class:`~ssl_obstacle.core.trainer.OnlineTrainer` as the demo
paces it: ``--updates-per-second`` training steps per simulated second from the first step,
a publication every ``--publish-every`` steps, every frame scored with the published
weights before it is stored. The published model is scored on the demo's held-out set
(unseen layout, exact labels on every cell) every ``--eval-every`` simulated seconds.

Prints, per variant, the held-out AUC after 3 and after ``--minutes`` simulated minutes
(mean and minimum over seeds), the ECE, and the simulated minutes to reach 0.85 and 0.90;
writes every figure to ``<cache>/results-<stamp>.json``, with each run's final AUC per cell
(printed per sensor and 10 cm band), a calibration check (each candidate calibration fitted
on the trainer's window, its held-out and training-room ECE) and an uncertainty check (how
candidate confidences rank the held-out error; docs/learning_quality.md, "Calibration" and
"Uncertainty"). Confirm a winner with ``bench_demo_seeds.py`` (the real nodes over DDS).

Run: scripts/with_env.sh python benchmarks/bench_learning.py [--variant default ...]
     [--seeds 0 1 2 3 4] [--minutes 10] [--jobs 2] [--cache runs/bench_learning]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
import dataclasses
import datetime
import functools
import json
import math
import multiprocessing
import os
import pathlib
import statistics
import time
from typing import Any

import numpy as np

#: Variants: trainer settings and model config overrides against the trainer node's defaults
#: (docs/learning_quality.md has the table, including variants since removed).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    'default': {},
    'before issue 14': {'settings': {'label_smoothing': 0.0, 'calibration': 'none'},
                        'config': {'filters': (10, 10, 8)}},
    'no calibration': {'settings': {'calibration': 'none'}},
    'no smoothing': {'settings': {'label_smoothing': 0.0}},
    "paper's filters": {'config': {'filters': (10, 10, 8)}},
    'positive 0.3': {'settings': {'positive_sample_fraction': 0.3}},
    'lr 1e-3': {'settings': {'learning_rate': 1e-3}},
    'average 0.95': {'settings': {'average_decay': 0.95}},
    'hue shuffle 0.3': {'augmentation': {'channel_shuffle': 0.3}},
    'hue shuffle 0.5': {'augmentation': {'channel_shuffle': 0.5}},
    'colour gain 0.3': {'augmentation': {'channel_gain': 0.3}},
    'four blocks': {'config': {'filters': (16, 16, 16, 16)}},
}


def record_stream(seed: int, minutes: float, world_name: str,
                  appearance_period: float) -> dict[str, np.ndarray]:
    """Simulate one demo robot; return its labeled frames with the simulated second sent."""
    from ssl_obstacle.core.explorer import Explorer
    from ssl_obstacle.core.labeler import Labeler
    from ssl_obstacle.core.params import LabelParams
    from ssl_obstacle.io.conversions import resize_rgb
    from ssl_obstacle.sim.camera import CameraModel, Renderer
    from ssl_obstacle.sim.closed_loop import ClosedLoop
    from ssl_obstacle.sim.simulator import Simulator
    from ssl_obstacle.nodes.simulator_node import PARAMETERS, sim_settings
    from ssl_obstacle.sim.world import make_world

    # The demo's simulator node with its parameter defaults; ground truth is not needed.
    values = {name: spec[0] for name, spec in PARAMETERS.items()}
    values.update(appearance_period=appearance_period, ground_truth=False)
    settings, image_noise = sim_settings(values), float(values['image_noise'])
    world = make_world(world_name, seed, False)
    camera = CameraModel(width=settings.camera_width, height=settings.camera_height)
    sim = Simulator(world, settings, seed=seed, renderer=Renderer(world, camera,
                                                                  noise=image_noise))
    params = LabelParams()
    labeler = Labeler(params)
    index = {name: i for i, name in enumerate(params.sensor_names)}
    start = sim.now_ns
    out: dict[str, list[Any]] = {'images': [], 'labels': [], 'stamps': [], 'sent': []}

    def keep(results: list[Any], now: int) -> None:
        for result in results:
            out['images'].append(result.payload)
            out['labels'].append(np.array(result.labels, np.float32))
            out['stamps'].append(result.stamp)
            out['sent'].append((now - start) / 1e9)

    for event in ClosedLoop(sim, Explorer(seed=seed)).run(60.0 * minutes):
        if event.kind == 'odom':
            labeler.add_odometry(event.stamp, *event.pose)
        elif event.kind == 'image' and event.image is not None:
            labeler.add_frame(event.stamp, resize_rgb(event.image, 80, 64))
        elif event.kind == 'range':
            hit = event.value >= 0.0  # the simulator says -1.0 for nothing seen
            labeler.add_readings(event.stamp, [index[event.sensor]], [hit])
        else:
            continue
        keep(labeler.poll(), event.stamp)
    keep(labeler.flush(), sim.now_ns)
    return {'images': np.stack(out['images']), 'labels': np.stack(out['labels']),
            'stamps': np.array(out['stamps'], np.int64),
            'sent': np.array(out['sent'], np.float64)}


def heldout_arrays(world_name: str, seed: int) -> dict[str, np.ndarray]:
    """Return the demo's held-out frames (2 simulated minutes) and their exact labels."""
    from ssl_obstacle.commands.demo import heldout_frames

    images, labels = heldout_frames(world_name, seed, 120.0)
    return {'images': images, 'labels': labels}


def cached(path: pathlib.Path, make: Any) -> dict[str, np.ndarray]:
    """Return the arrays stored at ``path``, making and storing them first if absent."""
    if not path.exists():
        arrays = make()
        partial = path.with_suffix('.partial.npz')
        np.savez(partial, **arrays)
        os.replace(partial, path)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def replay(task: dict[str, Any]) -> dict[str, Any]:
    """Feed one cached stream to a trainer as the demo paces it; score on the held-out set."""
    import torch

    torch.set_num_threads(1)
    # Dropout draws from torch's global generator, which the trainer does not seed: seeded
    # here, a run no longer depends on which runs its worker process made before it.
    torch.manual_seed(task['seed'])
    from ssl_obstacle.core.calibration import expected_calibration_error
    from ssl_obstacle.core.implied_labels import BlockedCompletion
    from ssl_obstacle.core.metrics import auc_grid, auc_mean
    from ssl_obstacle.core.model_config import ModelConfig
    from ssl_obstacle.core.params import LabelParams
    from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings
    from ssl_obstacle.nodes.trainer_node import TRAINER_FILTERS

    stream = dict(np.load(task['stream']))
    heldout = dict(np.load(task['heldout']))
    params = LabelParams()
    overrides = VARIANTS[task['variant']]
    config = dataclasses.replace(ModelConfig(filters=TRAINER_FILTERS),
                                 **overrides.get('config', {}))
    settings = dataclasses.replace(TrainerSettings(seed=task['seed']),
                                   **overrides.get('settings', {}))
    if 'augmentation' in overrides:
        settings = dataclasses.replace(settings, augmentation=dataclasses.replace(
            settings.augmentation, **overrides['augmentation']))
    completion = BlockedCompletion(params.sensor_names, params.distances)
    trainer = OnlineTrainer(config, settings, label_completion=completion)
    rate, every = task['updates_per_second'], task['publish_every']
    first_step: float | None = None
    curve: list[dict[str, float]] = []
    next_eval = task['eval_every']
    started = time.monotonic()

    def evaluate(sim_seconds: float) -> None:
        probabilities = published(trainer, heldout['images']) if trainer.version else None
        auc = auc_mean(auc_grid(probabilities, heldout['labels'])) \
            if probabilities is not None else float('nan')
        ece = expected_calibration_error(probabilities, heldout['labels']) \
            if probabilities is not None else float('nan')
        curve.append({'sim_seconds': sim_seconds, 'auc': float(auc), 'ece': float(ece),
                      'updates': trainer.updates})

    images, labels = stream['images'], stream['labels']
    for i, sent in enumerate(stream['sent']):
        while sent >= next_eval:
            evaluate(next_eval)
            next_eval += task['eval_every']
        if first_step is None and trainer.can_train:
            first_step = sent
        if first_step is not None:
            while trainer.updates < int(rate * (sent - first_step)):
                trainer.train_step()
                if trainer.updates % every == 0:
                    trainer.publish()
        trainer.score_and_store(images[i:i + 1], labels[i:i + 1], [int(stream['stamps'][i])])
    trainer.publish()
    final = trainer.predict(heldout['images'])  # raw: the checks fit their own calibrations
    uncertainty = uncertainty_check(trainer, heldout, final)
    calibration = calibration_check(trainer, heldout, final)
    final_grid = auc_grid(final, heldout['labels'])
    while next_eval <= 60.0 * task['minutes'] + 1e-9:
        evaluate(next_eval)
        next_eval += task['eval_every']
    return {'variant': task['variant'], 'seed': task['seed'], 'curve': curve,
            'updates': trainer.updates, 'frames': int(len(images)),
            'uncertainty': uncertainty, 'calibration': calibration,
            'auc_grid': np.where(np.isnan(final_grid), None, final_grid).tolist(),
            'wall_s': round(time.monotonic() - started, 1)}


def published(trainer: Any, images: np.ndarray) -> np.ndarray:
    """Return what the robots would predict: the published weights with their calibration."""
    raw = trainer.predict(images)
    return raw if trainer.calibration.is_identity else trainer.calibration.apply(raw)


def calibration_check(trainer: Any, heldout: dict[str, np.ndarray],
                      probabilities: np.ndarray) -> dict[str, float]:
    """
    Return the held-out ECE (and AUC) of each calibration candidate, fitted post hoc.

    Every candidate is fitted on the frames the trainer's own calibration would use (the
    newest of its prequential window, scored before they were trained on) and applied to
    the raw held-out predictions, so one run compares them all on one model.
    """
    from ssl_obstacle.core.calibration import (expected_calibration_error, fit_platt,
                                               fit_temperature)
    from ssl_obstacle.core.metrics import auc_grid, auc_mean

    window, labels = trainer._recent_scores()
    truth = heldout['labels']
    smoothing = trainer.settings.label_smoothing
    candidates = {'none': probabilities,
                  'platt per distance': fit_platt(window, labels).apply(probabilities)}
    for per in ('all', 'distance'):
        for shrink in (1.0, 0.5):
            scaling = fit_temperature(window, labels, per=per, shrink=shrink)
            candidates[f'temperature {per} x{shrink:g}'] = scaling.apply(probabilities)
    if smoothing > 0.0:
        candidates['unsmooth'] = np.clip((probabilities - smoothing / 2) / (1 - smoothing),
                                         0.0, 1.0)
    out = {'window_ece': expected_calibration_error(window, labels)}
    for name, calibrated in candidates.items():
        out[f'ece {name}'] = expected_calibration_error(calibrated, truth)
        out[f'auc {name}'] = float(auc_mean(auc_grid(calibrated, truth)))
    # In the training room: fitted on the older half of the window, scored on the newer.
    half = len(window) // 2
    older, newer = (window[:half], labels[:half]), (window[half:], labels[half:])
    out['room ece none'] = expected_calibration_error(*newer)
    out['room ece platt per distance'] = expected_calibration_error(
        fit_platt(*older).apply(newer[0]), newer[1])
    for shrink in (1.0, 0.5):
        scaling = fit_temperature(*older, per='distance', shrink=shrink)
        out[f'room ece temperature distance x{shrink:g}'] = expected_calibration_error(
            scaling.apply(newer[0]), newer[1])
    return out


def uncertainty_check(trainer: Any, heldout: dict[str, np.ndarray],
                      probabilities: np.ndarray) -> dict[str, Any]:
    """
    Return how candidate confidences rank the held-out error (negative: they foresee it).

    Per cell: the published cell skill, the prediction's certainty |2P - 1|, and their
    product. Per frame: the distance of its dense-layer features from the buffer's, as an
    RMS z-score and as the distance to its 10th nearest buffered neighbour.
    """
    import torch
    from ssl_obstacle.core.confidence import error_by_confidence, prediction_confidence, \
        rank_correlation
    from ssl_obstacle.core.model import preprocess

    model = trainer._scoring_model

    def features(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = preprocess(images).contiguous(memory_format=torch.channels_last)
            return model.head[:4](model.features(x)).numpy()

    count = len(trainer.buffer)
    rng = np.random.default_rng(0)
    train = features(trainer.buffer.images[rng.choice(count, min(count, 2000), replace=False)])
    mean, scale = train.mean(0), train.std(0) + 1e-3
    test = features(heldout['images'])
    zscore = np.sqrt((((test - mean) / scale) ** 2).mean(1))
    labels = heldout['labels']
    error = np.nanmean(np.abs(probabilities - labels), axis=(1, 2))
    cells = trainer.cell_confidence
    certainty = np.abs(2.0 * probabilities - 1.0)
    out: dict[str, Any] = {'frame rank_corr zscore': rank_correlation(zscore, error),
                           'frame rank_corr knn': rank_correlation(knn_distance(test, train),
                                                                   error),
                           'frame rank_corr certainty':
                               rank_correlation(certainty.mean((1, 2)), error)}
    for name, confidence in (('skill', cells), ('certainty', certainty),
                             ('skill x certainty', prediction_confidence(probabilities, cells))):
        check = error_by_confidence(probabilities, labels, confidence)
        out[f'cell rank_corr {name}'] = check['rank_correlation']
        out[f'cell groups {name}'] = [g['mean_abs_error'] for g in check['groups']]
    return out


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int = 10) -> np.ndarray:
    """Return each query's Euclidean distance to its k-th nearest reference row."""
    squared = ((queries ** 2).sum(1)[:, None] + (reference ** 2).sum(1)[None]
               - 2.0 * queries @ reference.T)
    return np.sqrt(np.maximum(np.partition(squared, k - 1, axis=1)[:, k - 1], 0.0))


def at(curve: list[dict[str, float]], seconds: float, key: str = 'auc') -> float:
    """Return the curve's value at the last point no later than ``seconds``."""
    points = [p[key] for p in curve if p['sim_seconds'] <= seconds + 1e-9]
    return points[-1] if points else float('nan')


def time_to(curve: list[dict[str, float]], level: float) -> float:
    """Return the simulated minutes after which the AUC stays at or above ``level``."""
    reached = float('nan')
    for point in curve:
        if point['auc'] >= level:
            if math.isnan(reached):
                reached = point['sim_seconds'] / 60.0
        else:
            reached = float('nan')
    return reached


def summarise(results: list[dict[str, Any]], minutes: float) -> list[dict[str, Any]]:
    """Return one row per variant: the means and minima over seeds."""
    rows = []
    for variant in dict.fromkeys(r['variant'] for r in results):
        runs = [r for r in results if r['variant'] == variant]
        final = [at(r['curve'], 60 * minutes) for r in runs]
        early = [at(r['curve'], 180.0) for r in runs]
        ece = [at(r['curve'], 60 * minutes, 'ece') for r in runs]
        rows.append({'variant': variant, 'seeds': [r['seed'] for r in runs],
                     'auc': final, 'auc_mean': statistics.fmean(final), 'auc_min': min(final),
                     'auc_3min_mean': statistics.fmean(early),
                     'ece_mean': statistics.fmean(ece),
                     'minutes_to_085': [time_to(r['curve'], 0.85) for r in runs],
                     'minutes_to_090': [time_to(r['curve'], 0.90) for r in runs],
                     'wall_s': [r['wall_s'] for r in runs]})
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    """Print the table."""
    def minutes(values: list[float]) -> str:
        reached = [v for v in values if not math.isnan(v)]
        text = f'{statistics.median(reached):.1f}' if reached else '-'
        return text + ('' if len(reached) == len(values) else f' ({len(reached)}/{len(values)})')

    print(f'{"variant":24} {"AUC mean":>8} {"min":>6} {"3 min":>6} {"ECE":>6} '
          f'{"t0.85":>9} {"t0.90":>9}  per seed')
    for row in rows:
        print(f'{row["variant"]:24} {row["auc_mean"]:8.3f} {row["auc_min"]:6.3f} '
              f'{row["auc_3min_mean"]:6.3f} {row["ece_mean"]:6.3f} '
              f'{minutes(row["minutes_to_085"]):>9} {minutes(row["minutes_to_090"]):>9}  '
              + ' '.join(f'{v:.3f}' for v in row['auc']))


def main() -> None:
    """Record the streams (once), replay every variant on every seed, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variant', action='append', choices=sorted(VARIANTS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--world', default='boxes')
    parser.add_argument('--heldout-world', default='pillars')
    parser.add_argument('--appearance-period', type=float, default=5.0)
    parser.add_argument('--updates-per-second', type=float, default=3.0)
    parser.add_argument('--publish-every', type=int, default=3,
                        help='training steps between publications (the demo publishes '
                             'every 0.5 s of wall time, about 3 steps at its pace)')
    parser.add_argument('--eval-every', type=float, default=30.0)
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--cache', type=pathlib.Path, default=pathlib.Path('runs/bench_learning'))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    variants = args.variant or ['default']
    tasks = []
    for seed in args.seeds:
        stream = args.cache / f'stream-{args.world}-{seed}-{args.minutes:g}min.npz'
        heldout = args.cache / f'heldout-{args.heldout_world}-{seed + 1000}.npz'
        print(f'seed {seed}: frames', flush=True)
        cached(stream, functools.partial(record_stream, seed, args.minutes, args.world,
                                         args.appearance_period))
        cached(heldout, functools.partial(heldout_arrays, args.heldout_world, seed + 1000))
        tasks += [{'variant': v, 'seed': seed, 'stream': str(stream), 'heldout': str(heldout),
                   'minutes': args.minutes, 'updates_per_second': args.updates_per_second,
                   'publish_every': args.publish_every, 'eval_every': args.eval_every}
                  for v in variants]
    results = []
    context = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=context) as pool:
        for result in pool.map(replay, tasks):
            print(f'{result["variant"]} seed {result["seed"]}: '
                  f'{at(result["curve"], 60 * args.minutes):.3f} '
                  f'({result["updates"]} updates, {result["wall_s"]} s)', flush=True)
            results.append(result)
    rows = summarise(results, args.minutes)
    print_rows(rows)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    path = args.cache / f'results-{stamp}.json'
    path.write_text(json.dumps({'args': {k: str(v) for k, v in vars(args).items()},
                                'load': os.getloadavg(), 'rows': rows, 'runs': results},
                               indent=1))
    print(f'figures: {path}')
    print_grids(results, variants)


def print_grids(results: list[dict[str, Any]], variants: list[str]) -> None:
    """Print each variant's held-out AUC per sensor and 10 cm band, averaged over seeds."""
    from ssl_obstacle.core.params import LabelParams

    params = LabelParams()
    distances = np.asarray(params.distances)
    bands = [(0.0, 0.10), (0.10, 0.20), (0.20, 0.31)]
    for variant in variants:
        grids = np.array([np.array(r['auc_grid'], dtype=float) for r in results
                          if r['variant'] == variant])
        mean = np.nanmean(grids, axis=0)
        print(f'{variant}: AUC per sensor (rows) and band 0-10 / 10-20 / 20-30 cm')
        for row, name in enumerate(params.sensor_names):
            cells = [np.nanmean(mean[row, (distances >= lo) & (distances < hi)])
                     for lo, hi in bands]
            print(f'  {name:14} ' + ' '.join(f'{value:.3f}' for value in cells))


if __name__ == '__main__':
    main()
