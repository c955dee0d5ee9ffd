"""
``ssl-obstacle evaluate --model MODEL.pt DATA.h5 [DATA.h5 …] --out DIR``: score a model.

ROC AUC per (sensor, distance) cell on the known cells of the datasets, with bootstrap
confidence intervals over frames (:mod:`ssl_obstacle.core.evaluation`). Writes
``DIR/report.json``, ``DIR/auc_heatmap.png`` and ``DIR/auc_by_distance.png`` (each
atomically) and prints a short table. :func:`write_report` is shared with the demo, so every
report of the project has the same keys and figures.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any, Mapping

import numpy as np

from ..core.evaluation import as_float_array, evaluate_files, EvaluateError, format_table


def write_report(directory: str | os.PathLike[str], report: Mapping[str, Any],
                 extra: Mapping[str, Any] | None = None) -> dict[str, pathlib.Path]:
    """
    Write ``report.json``, ``auc_heatmap.png`` and ``auc_by_distance.png`` into ``directory``.

    ``extra`` keys (the demo's learning curve and settings, the model used, …) are added to
    the JSON. Each file is written atomically; the directory is created if needed. Return
    the paths written, by name.
    """
    from .plots import plot_auc_by_distance, plot_auc_heatmap, write_json

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
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``evaluate`` subcommand."""
    parser.add_argument('data', nargs='+', help='dataset files (HDF5, from ssl-obstacle export)')
    parser.add_argument('--model', required=True, help='checkpoint (from train or the learner)')
    parser.add_argument('--out', required=True, help='directory for report.json and figures')
    parser.add_argument('--bootstrap', type=int, default=200,
                        help='bootstrap resamples for the confidence intervals (default 200)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the bootstrap')
    parser.add_argument('--device', default='cpu', help="torch device, e.g. 'cpu' or 'cuda'")


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the report; 0 on success, 2 with ``error: ...`` when it cannot."""
    try:
        if args.bootstrap < 1:
            raise EvaluateError('--bootstrap must be at least 1')
        out = pathlib.Path(args.out)
        if out.exists() and not out.is_dir():
            raise EvaluateError(f'output path {str(out)!r} exists and is not a directory')
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
    print(f'wrote {", ".join(str(p) for p in paths.values())}')
    return 0
