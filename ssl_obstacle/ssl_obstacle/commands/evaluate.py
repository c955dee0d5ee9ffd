"""
``ssl-obstacle evaluate --model MODEL.pt DATA.h5 [DATA.h5 …] --out DIR``: score a model.

ROC AUC per (sensor, distance) cell on the known cells of the datasets, with bootstrap
confidence intervals over frames, as Nava et al. 2019 report it. Writes ``DIR/report.json``,
``DIR/auc_heatmap.png`` and ``DIR/auc_by_distance.png`` (each atomically) and prints a short
table. :func:`build_report` and :func:`write_report` are shared with the demo, so every
report of the project has the same keys and figures.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence, TYPE_CHECKING

import h5py
import numpy as np

from .train import check_compatible, inspect_dataset, TrainError
from ..core.metrics import (auc_by_band, auc_by_distance, auc_grid, auc_mean,
                            bootstrap_auc_by_distance_ci, bootstrap_auc_ci)

if TYPE_CHECKING:  # torch and matplotlib load in seconds: only when evaluating
    import torch

#: Frames read from a dataset file at a time while predicting: bounds memory for long runs.
READ_CHUNK = 2048


class EvaluateError(RuntimeError):
    """Evaluation cannot proceed; the message says why, in terms a user can act on."""


def build_report(probabilities: np.ndarray, labels: np.ndarray, sensor_names: Sequence[str],
                 distances: Sequence[float], *, n_boot: int = 200, alpha: float = 0.05,
                 seed: int = 0) -> dict[str, Any]:
    """
    Return the report of predictions against labels (both (N, S, D); labels NaN unknown).

    Keys: ``sensor_names``, ``distances``, ``auc`` ([sensor][distance], NaN where a class
    is missing), ``auc_ci_low``/``auc_ci_high`` (percentile bootstrap over frames),
    ``auc_mean``, ``auc_by_distance`` (sensors pooled) with its CI, ``auc_by_band`` (mean
    cell AUC per 10 cm band), ``frames``, ``known_cells`` and ``positive_cells`` per cell,
    and the bootstrap settings. Values are numpy arrays here; :func:`write_report` turns
    NaN into JSON null.
    """
    rng = np.random.default_rng(seed)
    grid = auc_grid(probabilities, labels)
    low, high = bootstrap_auc_ci(probabilities, labels, n_boot=n_boot, alpha=alpha, rng=rng)
    by_distance = auc_by_distance(probabilities, labels)
    d_low, d_high = bootstrap_auc_by_distance_ci(probabilities, labels, n_boot=n_boot,
                                                 alpha=alpha, rng=rng)
    known = ~np.isnan(labels)
    return {
        'sensor_names': list(sensor_names),
        'distances': [float(d) for d in distances],
        'auc': grid,
        'auc_ci_low': low,
        'auc_ci_high': high,
        'auc_mean': auc_mean(grid),
        'auc_by_distance': by_distance,
        'auc_by_distance_ci_low': d_low,
        'auc_by_distance_ci_high': d_high,
        'auc_by_band': auc_by_band(grid, distances),
        'frames': int(len(labels)),
        'known_cells': known.sum(axis=0),
        'positive_cells': (known & (np.nan_to_num(labels) >= 0.5)).sum(axis=0),
        'bootstrap': {'resamples': int(n_boot), 'alpha': float(alpha), 'unit': 'frame',
                      'seed': int(seed)},
    }


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
                         _floats(report['auc_by_distance']),
                         _floats(report.get('auc_by_distance_ci_low')),
                         _floats(report.get('auc_by_distance_ci_high')))
    return paths


def _floats(values: Any) -> np.ndarray | None:
    """Return ``values`` (lists may hold None from JSON) as floats with NaN, or None."""
    if values is None:
        return None
    return np.array([np.nan if v is None else v for v in np.asarray(values, dtype=object)],
                    dtype=np.float64)


def format_table(report: Mapping[str, Any]) -> str:
    """Return a short text summary: mean AUC, per band, and per distance in a few columns."""
    def number(value: Any) -> str:
        return '  n/a' if value is None or np.isnan(value) else f'{value:.3f}'

    lines = [f'frames {report["frames"]}, mean AUC over cells {number(report["auc_mean"])}',
             '  by band: ' + ', '.join(f'{name} {number(value)}'
                                       for name, value in report['auc_by_band'].items())]
    low = _floats(report.get('auc_by_distance_ci_low'))
    high = _floats(report.get('auc_by_distance_ci_high'))
    cells = []
    for i, (distance, value) in enumerate(zip(report['distances'],
                                              _floats(report['auc_by_distance']))):
        interval = (f' [{number(low[i])}, {number(high[i])}]' if low is not None
                    and high is not None else '')
        cells.append(f'{100 * distance:4.0f} cm {number(value)}{interval}')
    columns = 3
    rows = -(-len(cells) // columns)
    lines.append('  AUC by distance (sensors pooled, 95% CI):')
    for row in range(rows):
        lines.append('  ' + ' | '.join(cells[row::rows]))
    return '\n'.join(lines)


# ---------------------------------------------------------------------- the command
def predict_datasets(model: torch.nn.Module, paths: Sequence[str], device: str = 'cpu',
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """
    Return (probabilities, labels) of every frame of the files, in file order.

    Images are read ``READ_CHUNK`` frames at a time, so memory holds only the (N, S, D)
    arrays whatever the datasets' length.
    """
    from ..core.model import predict_probabilities

    probabilities, labels = [], []
    for path in paths:
        try:
            with h5py.File(path, 'r') as file:
                images, file_labels = file['images'], file['labels']
                for start in range(0, len(file_labels), READ_CHUNK):
                    chunk = images[start:start + READ_CHUNK]
                    probabilities.append(predict_probabilities(model, chunk, device,
                                                               batch_size))
                    labels.append(np.asarray(file_labels[start:start + READ_CHUNK],
                                             dtype=np.float32))
        except (OSError, KeyError) as error:
            raise EvaluateError(f'cannot read dataset {path!r}: {error}') from error
    shape = (0, model.config.num_sensors, model.config.num_distances)
    return (np.concatenate(probabilities) if probabilities else np.empty(shape, np.float32),
            np.concatenate(labels) if labels else np.empty(shape, np.float32))


def evaluate_files(model_path: str, data: Sequence[str], *, device: str = 'cpu',
                   n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Return the :func:`build_report` of a checkpoint on dataset files (checked to match)."""
    from ..core.checkpoint import build_model, CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(model_path, device=device)
    except (FileNotFoundError, CheckpointError) as error:
        raise EvaluateError(str(error)) from error
    config = checkpoint['config']
    try:
        infos = [inspect_dataset(path) for path in data]
        check_compatible(infos)
    except TrainError as error:
        raise EvaluateError(str(error)) from error
    info = infos[0]
    expected = (config.image_height, config.image_width, 3)
    if info.image_shape != expected or len(info.sensor_names) != config.num_sensors \
            or len(info.distances) != config.num_distances:
        raise EvaluateError(
            f'{info.path} (images {info.image_shape}, {len(info.sensor_names)} sensors, '
            f'{len(info.distances)} distances) does not fit the model (images {expected}, '
            f'{config.num_sensors} sensors, {config.num_distances} distances)')
    trained = checkpoint['params']
    if 'sensor_names' in trained and list(trained['sensor_names']) != info.sensor_names:
        raise EvaluateError(f'the model was trained on sensors {trained["sensor_names"]}, '
                            f'{info.path} has {info.sensor_names}')
    if 'distances' in trained and not np.allclose(trained['distances'], info.distances):
        raise EvaluateError(f'the model was trained on distances {trained["distances"]}, '
                            f'{info.path} has {info.distances}')
    model = build_model(checkpoint, device=device)
    probabilities, labels = predict_datasets(model, data, device)
    report = build_report(probabilities, labels, info.sensor_names, info.distances,
                          n_boot=n_boot, seed=seed)
    report['model'] = str(model_path)
    report['datasets'] = [str(path) for path in data]
    return report


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
