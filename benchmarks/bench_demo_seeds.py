#!/usr/bin/env python3
"""
Held-out AUC of the demo over several seeds, for one checkout or several side by side.

Runs ``<checkout>/ssl-obstacle demo --seed S`` (each checkout in its own environment, so an
old commit checked out in a temporary folder runs its own code) and reads each run's
``report.json``: the held-out mean AUC over every cell, its 10 cm bands, its ECE, the
training updates and the wall time. ``--variant 'NAME:param=value,...'`` runs each checkout
once more per variant with those trainer parameters (the demo's ``--trainer-param``), so a
candidate default is tried on the real demo before it becomes one. Runs go one after
another, so that two demos never share the CPU; the demo's pacing keeps the AUC independent
of the load, the wall time is not.

Run: scripts/with_env.sh python benchmarks/bench_demo_seeds.py [--seeds 0 1 2 3 4]
     [--minutes 10] [--checkout . --checkout /tmp/old] [--robots 1] [--out runs/seeds]
     [--variant 'lr 1e-3:learning_rate=0.001']
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any


def parse_variant(text: str) -> tuple[str, list[str]]:
    """Split ``'NAME:a=1,b=2'`` into its name and its ``NAME=VALUE`` trainer parameters."""
    name, sep, assignments = text.partition(':')
    params = [a.strip() for a in assignments.split(',') if a.strip()] if sep else []
    if not name or any('=' not in a for a in params):
        raise SystemExit(f"error: --variant wants 'NAME:param=value,...', got {text!r}")
    return name, params


def heldout_auc_at(report: dict[str, Any], sim_seconds: float) -> float | None:
    """Held-out AUC of the learning-curve point nearest ``sim_seconds`` (None if none)."""
    points = [p for p in report.get('learning_curve') or [] if p.get('heldout_auc') is not None]
    if not points:
        return None
    return min(points, key=lambda p: abs(p['sim_seconds'] - sim_seconds))['heldout_auc']


def run_demo(checkout: pathlib.Path, seed: int, args: argparse.Namespace,
             out: pathlib.Path, params: list[str]) -> dict[str, Any]:
    """Run one demo in ``checkout``'s environment with ``params``; return its figures."""
    command = [str(checkout / 'ssl-obstacle'), 'demo', '--minutes', str(args.minutes),
               '--seed', str(seed), '--drive-minutes', '0', '--out', str(out)]
    if args.robots != 1:
        command += ['--robots', str(args.robots)]
    for param in params:
        command += ['--trainer-param', param]
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SSL_', 'PYTHON',
                                                                     'AMENT', 'COLCON'))}
    started = time.monotonic()
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f'{checkout} seed {seed} failed ({result.returncode}):\n'
                         f'{result.stderr[-2000:]}')
    report = json.loads((out / 'report.json').read_text())
    bands = report.get('auc_by_band') or {}
    return {'checkout': str(checkout), 'seed': seed, 'auc': report['auc_mean'],
            'ece': report.get('ece'), 'auc_3min': heldout_auc_at(report, 180.0),
            'bands': bands, 'updates': report['training']['updates'],
            'labeled_frames': report['training']['labeled_frames'], 'wall_s': round(wall, 1),
            'load': os.getloadavg()[0]}


def _figure(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.3f}'


def _mean_of(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    return _figure(statistics.mean(values) if values else None)


def main() -> None:
    """Run every checkout on every seed; print a table and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--robots', type=int, default=1)
    parser.add_argument('--checkout', action='append', type=pathlib.Path,
                        help='repository root to run (repeatable; default: this one)')
    parser.add_argument('--variant', action='append', default=[], metavar="'NAME:p=v,...'",
                        help='also run each checkout with these trainer parameters '
                             '(repeatable; the defaults always run, as "default")')
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/seeds'))
    args = parser.parse_args()
    checkouts = [c.resolve() for c in (args.checkout or [pathlib.Path('.')])]
    variants = [('default', []), *map(parse_variant, args.variant)]
    columns = [(checkout, name, params) for checkout in checkouts for name, params in variants]
    rows = []
    print(f'{os.cpu_count()} cores; {args.minutes:g} simulated minutes; seeds {args.seeds}',
          flush=True)
    for seed in args.seeds:  # seed-major: old and new run close together in time
        for index, (checkout, name, params) in enumerate(columns):
            out = args.out.resolve() / f'{index}-seed{seed}'
            row = {**run_demo(checkout, seed, args, out, params), 'variant': name}
            rows.append(row)
            ece, early = (_figure(row[key]) for key in ('ece', 'auc_3min'))
            print(f'{checkout} [{name}]  seed {seed}: AUC {row["auc"]:.3f}  3 min {early}  '
                  f'ECE {ece}  '
                  f'updates {row["updates"]}  frames {row["labeled_frames"]}  '
                  f'{row["wall_s"]:.0f} s  load {row["load"]:.1f}', flush=True)
    for checkout, name, _ in columns:
        mine = [r for r in rows if r['checkout'] == str(checkout) and r['variant'] == name]
        aucs = [r['auc'] for r in mine]
        print(f'{checkout} [{name}]: mean {statistics.mean(aucs):.3f}, min {min(aucs):.3f}, '
              f'max {max(aucs):.3f}, 3 min {_mean_of(mine, "auc_3min")}, '
              f'ECE {_mean_of(mine, "ece")} over {len(aucs)} seeds')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_demo_seeds.json').write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    sys.exit(main())
