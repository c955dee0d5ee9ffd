"""
``ssl-obstacle evaluate --model MODEL.pt DATA.h5 [DATA.h5 …] --out DIR``: score a model.

ROC AUC per (sensor, distance) cell on the known cells of the datasets, with bootstrap
confidence intervals over frames (:mod:`ssl_obstacle.core.evaluation`). Writes
``DIR/report.json``, ``DIR/auc_heatmap.png`` and ``DIR/auc_by_distance.png`` (each
atomically) and prints a short table. :func:`write_report` is shared with the demo, so every
report of the project has the same keys and figures. ``--protocol nava2019`` scores the
paper's test recordings as the paper does and adds its table and figures
(:func:`write_protocol_outputs`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any, Mapping

import numpy as np

from ..core.evaluation import (as_float_array, evaluate_files, evaluate_nava2019,
                               EvaluateError, format_table)
from ..core.nava_protocol import (BOOTSTRAP_ROUNDS, BOOTSTRAP_SEED, FLIP_MODES,
                                  format_paper_table, NAME)


def write_report(directory: str | os.PathLike[str], report: Mapping[str, Any],
                 extra: Mapping[str, Any] | None = None) -> dict[str, pathlib.Path]:
    """
    Write ``report.json`` and the report's figures into ``directory``.

    The figures: ``auc_heatmap.png``, ``auc_by_distance.png`` and, for a report with its
    calibration, ``calibration.png``.

    ``extra`` keys (the demo's learning curve and settings, the model used, …) are added to
    the JSON. Each file is written atomically; the directory is created if needed. Return
    the paths written, by name.
    """
    from .plots import plot_auc_by_distance, plot_auc_heatmap, plot_reliability, write_json

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name
             for name in ('report.json', 'auc_heatmap.png', 'auc_by_distance.png')}
    write_json(paths['report.json'], {**report, **(extra or {})})
    plot_auc_heatmap(paths['auc_heatmap.png'], np.asarray(report['auc'], dtype=np.float64),
                     report['sensor_names'], report['distances'])
    plot_auc_by_distance(paths['auc_by_distance.png'], report['distances'],
                         as_float_array(report['auc_by_distance']),
                         as_float_array(report.get('auc_by_distance_ci_low')),
                         as_float_array(report.get('auc_by_distance_ci_high')))
    if 'reliability' in report:
        paths['calibration.png'] = directory / 'calibration.png'
        plot_reliability(paths['calibration.png'], report['reliability'],
                         {'all': report['ece'], **report['ece_by_band']})
    return paths


def format_protocol_table(report: Mapping[str, Any]) -> str:
    """Return the paper-protocol table of a report (its ``nava2019`` section) as text."""
    section = report['nava2019']
    rounds = len(section['test_recordings']) * section['bootstrap']['rounds_per_recording']
    table = format_paper_table(np.asarray(section['auc_mean']), np.asarray(section['auc_std']),
                               rounds, report['sensor_names'], report['distances'])
    return (f'{table}\n  mean over cells {100 * section["auc_mean_over_cells"]:.1f} (test '
            f'recordings {", ".join(map(str, section["test_recordings"]))}, flip '
            f'{section["flip"]})')


def write_protocol_outputs(directory: str | os.PathLike[str],
                           report: Mapping[str, Any]) -> dict[str, pathlib.Path]:
    """
    Write the paper-protocol table (CSV) and figures beside report.json; return their paths.

    ``auc_table_nava2019.csv``: one row per distance, farthest first, the mean and std of
    each sensor's AUC; ``auc_heatmap_nava2019.png`` and ``auc_vs_distance_nava2019.png``:
    their test.py's two figures, in their orientation and scale, to lay beside the paper's.
    """
    from .plots import plot_paper_auc_vs_distance, plot_paper_heatmap, write_csv

    directory = pathlib.Path(directory)
    section = report['nava2019']
    table = section['table']
    paths = {name: directory / name for name in (
        'auc_table_nava2019.csv', 'auc_heatmap_nava2019.png', 'auc_vs_distance_nava2019.png')}
    header = ['distance_cm'] + [f'{s}_auc' for s in table['sensors']] \
        + [f'{s}_std' for s in table['sensors']]
    rows = [[f'{distance:g}', *mean, *std] for distance, mean, std in
            zip(table['distances_cm'], np.asarray(table['auc_mean']).tolist(),
                np.asarray(table['auc_std']).tolist())]
    write_csv(paths['auc_table_nava2019.csv'], header, rows)
    plot_paper_heatmap(paths['auc_heatmap_nava2019.png'], np.asarray(section['auc_mean']),
                       report['sensor_names'], report['distances'])
    plot_paper_auc_vs_distance(paths['auc_vs_distance_nava2019.png'],
                               np.asarray(section['auc_mean']), np.asarray(section['auc_std']),
                               report['sensor_names'], report['distances'])
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``evaluate`` subcommand."""
    parser.add_argument('data', nargs='+',
                        help='dataset files (HDF5, from ssl-obstacle export); with --protocol '
                             f'{NAME}: the folder (or files) of ssl-obstacle import-idsia')
    parser.add_argument('--model', required=True, help='checkpoint (from train or the learner)')
    parser.add_argument('--out', required=True, help='directory for report.json and figures')
    parser.add_argument('--protocol', choices=(NAME,), default=None,
                        help=f'{NAME}: score a folder of import-idsia files as the paper does '
                             '(test recordings 9 and 10, per-cell bootstrap, test-time flip); '
                             'adds its table and heatmap to the report')
    parser.add_argument('--bootstrap', type=int, default=None,
                        help='bootstrap resamples for the confidence intervals (default 200; '
                             f'{NAME}: {BOOTSTRAP_ROUNDS} rounds per test recording)')
    parser.add_argument('--flip', choices=FLIP_MODES, default=None,
                        help=f'test-time flip under --protocol {NAME}: paper = mirror each '
                             'frame with probability 0.5, as their test.py (default); mean = '
                             'average the predictions of each frame and its mirror image; none')
    parser.add_argument('--seed', type=int, default=0,
                        help=f'seed of the bootstrap (with {NAME}: of the flip and of the '
                             f'pooled report; its own bootstrap is seeded {BOOTSTRAP_SEED})')
    parser.add_argument('--device', default='cpu', help="torch device, e.g. 'cpu' or 'cuda'")


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the report; 0 on success, 2 with ``error: ...`` when it cannot."""
    try:
        if args.flip is not None and args.protocol is None:
            raise EvaluateError(f'--flip is for --protocol {NAME}')
        if args.bootstrap is None:
            args.bootstrap = 200 if args.protocol is None else BOOTSTRAP_ROUNDS
        if args.bootstrap < 1:
            raise EvaluateError('--bootstrap must be at least 1')
        out = pathlib.Path(args.out)
        if out.exists() and not out.is_dir():
            raise EvaluateError(f'output path {str(out)!r} exists and is not a directory')
        if args.protocol == NAME:
            report = evaluate_nava2019(args.model, args.data, device=args.device,
                                       flip=args.flip or 'paper', rounds=args.bootstrap,
                                       n_boot=args.bootstrap, seed=args.seed)
            paths = write_report(out, report)
            paths.update(write_protocol_outputs(out, report))
        else:
            report = evaluate_files(args.model, args.data, device=args.device,
                                    n_boot=args.bootstrap, seed=args.seed)
            paths = write_report(out, report)
    except EvaluateError as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: cannot write {args.out!r}: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    print(format_table(report))
    if 'nava2019' in report:
        print(format_protocol_table(report))
    print(f'wrote {", ".join(str(p) for p in paths.values())}')
    return 0
