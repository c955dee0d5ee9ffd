#!/usr/bin/env python3
"""
Held-out AUC of the demo over several seeds, for one checkout or several side by side.

Runs ``<checkout>/ssl-obstacle demo --seed S`` (each checkout in its own environment, so an
old commit checked out in a temporary folder runs its own code) and reads each run's
``report.json``: the held-out mean AUC over every cell, its 10 cm bands, the training
updates and the wall time. Runs go one after another, so that two demos never share the
CPU; the demo's pacing keeps the AUC independent of the load, the wall time is not.

Run: scripts/with_env.sh python benchmarks/bench_demo_seeds.py [--seeds 0 1 2 3 4]
     [--minutes 10] [--checkout . --checkout /tmp/old] [--robots 1] [--out runs/seeds]
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


def run_demo(checkout: pathlib.Path, seed: int, args: argparse.Namespace,
             out: pathlib.Path) -> dict[str, Any]:
    """Run one demo in ``checkout``'s environment; return its figures."""
    command = [str(checkout / 'ssl-obstacle'), 'demo', '--minutes', str(args.minutes),
               '--seed', str(seed), '--drive-minutes', '0', '--out', str(out)]
    if args.robots != 1:
        command += ['--robots', str(args.robots)]
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
            'bands': bands, 'updates': report['training']['updates'],
            'labeled_frames': report['training']['labeled_frames'], 'wall_s': round(wall, 1),
            'load': os.getloadavg()[0]}


def main() -> None:
    """Run every checkout on every seed; print a table and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--robots', type=int, default=1)
    parser.add_argument('--checkout', action='append', type=pathlib.Path,
                        help='repository root to run (repeatable; default: this one)')
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/seeds'))
    args = parser.parse_args()
    checkouts = [c.resolve() for c in (args.checkout or [pathlib.Path('.')])]
    rows = []
    print(f'{os.cpu_count()} cores; {args.minutes:g} simulated minutes; seeds {args.seeds}',
          flush=True)
    for seed in args.seeds:  # seed-major: old and new run close together in time
        for index, checkout in enumerate(checkouts):
            row = run_demo(checkout, seed, args, args.out.resolve() / f'{index}-seed{seed}')
            rows.append(row)
            print(f'{checkout}  seed {seed}: AUC {row["auc"]:.3f}  updates {row["updates"]}  '
                  f'frames {row["labeled_frames"]}  {row["wall_s"]:.0f} s  load '
                  f'{row["load"]:.1f}', flush=True)
    for checkout in checkouts:
        aucs = [r['auc'] for r in rows if r['checkout'] == str(checkout)]
        print(f'{checkout}: mean {statistics.mean(aucs):.3f}, min {min(aucs):.3f}, '
              f'max {max(aucs):.3f} over {len(aucs)} seeds')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_demo_seeds.json').write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    sys.exit(main())
