#!/usr/bin/env python3
"""
Closed-loop driving: the avoider (by a model's predictions) against the IR-only explorer.

Each run is ``ssl-obstacle drive``'s (:func:`ssl_obstacle.commands.drive.drive_run`): the
built-in world in-process, deterministic for its seed, ``--minutes`` simulated minutes from
the seed's start pose. For every layout × seed it drives the explorer, the avoider with
``--model`` (e.g. the checkpoint of a 10-minute ``make demo``), the avoider with each
``--early-model`` (e.g. one trained for 3 simulated minutes: how early does driving by sight
pay off?) and the oracle (the avoider fed the simulator's exact label grid: what a perfect
model would give); with ``--memoryless`` also the avoider without its state (what the
memory buys); with ``--fused`` the avoider that also takes every proximity reading as its
sensor's first cell, with the model and with all-free grids (the same state machine on the
proximity readings alone: what sight adds). The default layouts are those the demo's
model never trained in (it learns in ``boxes``; ``random`` draws a new layout per seed).

Prints, per world and pooled: near-hits per metre (rising edges of any IR reading < 7 cm),
mean speed, collisions, reflexes and the avoider-to-explorer ratios; the per-sensor split
of the remaining near-hits; the controller's own cost per call (µs) and the prediction's
per frame (ms), with the machine's conditions. Writes everything to ``--json``.

Run: scripts/with_env.sh python benchmarks/bench_drive.py --model RUN/checkpoint.pt
     [--early-model RUN3/checkpoint.pt] [--worlds pillars,walls,random]
     [--seeds 1000,1001,1002] [--minutes 4] [--memoryless] [--fused]
     [--min-confidence 0.2 --min-confidence 0.4] [--jobs N]
     [--json FILE]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
import os
import pathlib
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np
from ssl_obstacle.commands.drive import drive_run, ModelPredictor
from ssl_obstacle.commands.plots import write_json
from ssl_obstacle.core.avoider import AvoiderSettings
from ssl_obstacle.core.params import LabelParams


def see_nothing(image: np.ndarray) -> np.ndarray:
    """Predict every cell free: the avoider then reacts to what its sensors read only."""
    return np.zeros((len(LabelParams().sensor_names), len(LabelParams().distances)))


#: The avoider with no memory: it stops turning at the first clear view, may turn back
#: toward the obstacle it just avoided, and does not steer away from side obstacles.
MEMORYLESS = AvoiderSettings(memory_time=0.0, overshoot_time=0.0, side_steer_gain=0.0)
#: The avoider that also treats every proximity reading (< 14 cm) as a blocked first cell.
FUSED = AvoiderSettings(proximity_fusion_range=0.14)


def conditions() -> dict[str, Any]:
    """Return the machine's CPUs and load averages, as `uptime` shows them."""
    return {'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
            'load': [round(value, 2) for value in os.getloadavg()]}


def pooled(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the pooled figures of runs: totals, per metre, per sensor, mean speed."""
    distance = sum(r['distance_m'] for r in reports)
    minutes = sum(r['minutes'] for r in reports)
    near = sum(r['near_hits'] for r in reports)
    by_sensor: dict[str, int] = {}
    for report in reports:
        for name, count in report['near_hits_by_sensor'].items():
            by_sensor[name] = by_sensor.get(name, 0) + count
    reflexes = [r['reflexes'] for r in reports if r.get('reflexes') is not None]
    return {'runs': len(reports), 'distance_m': round(distance, 2), 'near_hits': near,
            'near_hits_per_m': round(near / distance, 4) if distance else None,
            'mean_speed': round(distance / (60.0 * minutes), 4) if minutes else None,
            'collisions': sum(r['collisions'] for r in reports),
            'reflexes': sum(reflexes) if reflexes else None,
            'time_within_5cm': round(sum(r['time_within_5cm'] for r in reports), 1),
            'area_visited_m2_per_run': round(sum(r['area_visited_m2'] for r in reports)
                                             / max(1, len(reports)), 2),
            'near_hits_by_sensor': by_sensor}


def ratios(candidate: dict[str, Any], explorer: dict[str, Any]) -> dict[str, float | None]:
    """Return near-hits per metre and mean speed of ``candidate`` relative to the explorer."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 4) if a is not None and b else None
    return {'near_hits_per_m': ratio(candidate['near_hits_per_m'], explorer['near_hits_per_m']),
            'mean_speed': ratio(candidate['mean_speed'], explorer['mean_speed'])}


def table_line(name: str, figures: dict[str, Any], explorer: dict[str, Any] | None) -> str:
    """Return one row of the printed table."""
    per_m = figures['near_hits_per_m']
    line = (f'  {name:18} {figures["distance_m"]:7.1f} m {figures["mean_speed"]:6.4f} m/s '
            f'{figures["near_hits"]:5d} near-hits {per_m:6.3f}/m '
            f'{figures["collisions"]:3d} coll. {figures["reflexes"] or 0:4d} reflexes '
            f'{figures["area_visited_m2_per_run"]:4.2f} m² visited')
    if explorer is not None and name != 'explorer':
        r = ratios(figures, explorer)
        line += (f' | x{r["near_hits_per_m"]:.3f} near-hits/m, x{r["mean_speed"]:.3f} speed'
                 if r['near_hits_per_m'] is not None else '')
    return line


def load_models(args: argparse.Namespace) -> dict[str, ModelPredictor]:
    """Return the predictors by label: ``avoider`` and ``avoider_early[N]``."""
    models = {'avoider': ModelPredictor(args.model)}
    for index, path in enumerate(args.early_model):
        models[f'avoider_early{index + 1 if len(args.early_model) > 1 else ""}'] = \
            ModelPredictor(path)
    return models


def drive_plan(args: argparse.Namespace, job: tuple[str, int]) -> list[dict[str, Any]]:
    """Drive every controller of the benchmark in one world and seed (a worker's job)."""
    world, seed = job
    models = load_models(args)
    plan: list[tuple[str, Any, AvoiderSettings | None]] = [('explorer', None, None)]
    plan += [(label, predictor, None) for label, predictor in models.items()]
    if args.memoryless:
        plan.append(('avoider_memoryless', models['avoider'], MEMORYLESS))
    if args.fused:
        plan.append(('avoider_fused', models['avoider'], FUSED))
        plan.append(('sightless_fused', see_nothing, FUSED))
    for value in args.min_confidence:
        plan.append((f'avoider_conf{value:g}', models['avoider'],
                     AvoiderSettings(min_confidence=value)))
    if not args.no_oracle:
        plan.append(('oracle', None, None))
    reports = []
    for label, predictor, settings in plan:
        controller = 'avoider' if predictor is not None else label
        report = drive_run(world, seed, args.minutes, controller, predictor, settings).report
        report['label'] = label
        reports.append(report)
        print(f'{world:8} seed {seed}: {label:18} {report["near_hits"]:3d} near-hits in '
              f'{report["distance_m"]:5.1f} m, {report["mean_speed"]:.4f} m/s, '
              f'{report["collisions"]} collisions', flush=True)
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True, help='checkpoint of the avoider')
    parser.add_argument('--early-model', action='append', default=[],
                        help='another checkpoint, e.g. after 3 simulated minutes; repeatable')
    parser.add_argument('--worlds', default='pillars,walls,random')
    parser.add_argument('--seeds', default='1000,1001,1002')
    parser.add_argument('--minutes', type=float, default=4.0)
    parser.add_argument('--no-oracle', action='store_true', help='skip the exact-label runs')
    parser.add_argument('--memoryless', action='store_true',
                        help="also the avoider without its state (memory_time and "
                             "overshoot_time 0, no side steering): what the memory buys")
    parser.add_argument('--fused', action='store_true',
                        help='also the avoider with proximity_fusion_range 0.14 (readings '
                             'as the first column), with the model and with all-free grids '
                             '(the same state machine on the proximity readings alone)')
    parser.add_argument('--min-confidence', action='append', type=float, default=[],
                        help='also the avoider with this min_confidence (a cell said free '
                             'with less confidence counts as an obstacle); repeatable')
    parser.add_argument('--jobs', type=int, default=os.cpu_count() or 1,
                        help='worlds x seeds driven in parallel processes')
    parser.add_argument('--json', default='runs/bench_drive.json')
    args = parser.parse_args(argv)
    worlds = [w for w in args.worlds.split(',') if w]
    seeds = [int(s) for s in args.seeds.split(',') if s]
    models = load_models(args)
    before = conditions()
    started = time.monotonic()
    jobs = [(world, seed) for world in worlds for seed in seeds]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = [report for reports in pool.map(partial(drive_plan, args), jobs)
                for report in reports]
    labels = list(dict.fromkeys(r['label'] for r in runs))
    results: dict[str, Any] = {'per_world': {}, 'pooled': {}}
    for world in [*worlds, None]:
        chosen = [r for r in runs if world is None or r['world'] == world]
        figures = {label: pooled([r for r in chosen if r['label'] == label]) for label in labels}
        for label in labels:
            if label != 'explorer':
                figures[label]['vs_explorer'] = ratios(figures[label], figures['explorer'])
        if world is None:
            results['pooled'] = figures
        else:
            results['per_world'][world] = figures
    avoider_runs = [r for r in runs if r['label'] in models]
    cost = {'controller_us_per_call': round(sum(r['controller_us_per_call'] for r in avoider_runs)
                                            / max(1, len(avoider_runs)), 1),
            'prediction_ms_per_frame': round(sum(r['prediction_ms_per_frame']
                                                 for r in avoider_runs)
                                             / max(1, len(avoider_runs)), 2)}
    print(f'\n{len(worlds)} worlds x {len(seeds)} seeds, {args.minutes:g} simulated minutes '
          f'each; load before {before["load"]}, after {conditions()["load"]}, '
          f'{time.monotonic() - started:.0f} s')
    for world, figures in [*results['per_world'].items(), ('pooled', results['pooled'])]:
        print(f'{world}:')
        for label in labels:
            print(table_line(label, figures[label], figures['explorer']))
    print('remaining near-hits by sensor (pooled):')
    for label in labels:
        print(f'  {label:18} {results["pooled"][label]["near_hits_by_sensor"]}')
    print(f'controller cost {cost["controller_us_per_call"]} us per call (update or grid), '
          f'prediction {cost["prediction_ms_per_frame"]} ms per frame (torch, 1 thread)')
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {'settings': vars(args), 'conditions_before': before,
                      'conditions_after': conditions(), 'models': {
                          label: {'path': p.path, 'updates': p.updates}
                          for label, p in models.items()},
                      'runs': runs, 'results': results, 'cost': cost})
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
