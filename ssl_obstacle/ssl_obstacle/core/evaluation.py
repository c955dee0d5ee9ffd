"""
Scoring a model: ROC AUC per (sensor, distance) cell, with bootstrap confidence intervals.

On the known cells of the labels, as Nava et al. 2019 report it: :func:`build_report` turns
predictions and labels into the report every part of the project writes (``evaluate``, the
demo, the benchmarks), :func:`format_table` into a short text, and :func:`evaluate_files`
scores a checkpoint on dataset files, and :func:`evaluate_nava2019` on the paper's test
recordings as the paper scores them (:mod:`.nava_protocol`). Nothing here writes a file or
prints: the commands do (``commands/evaluate.py``: report.json and the figures).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TYPE_CHECKING

import h5py
import numpy as np

from . import nava_protocol
from .calibration import reliability
from .metrics import (auc_by_band, auc_by_distance, auc_grid, auc_mean, band_columns,
                      bootstrap_auc_by_distance_ci, bootstrap_auc_ci)
from .training import check_compatible, FileInfo, inspect_dataset, load_frames, TrainError

if TYPE_CHECKING:  # torch loads in seconds: only when evaluating
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
    and the bootstrap settings. Values are numpy arrays here; ``write_report`` of
    commands/evaluate.py turns NaN into JSON null.
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
        **calibration_report(probabilities, labels, distances),
    }


def calibration_report(probabilities: np.ndarray, labels: np.ndarray,
                       distances: Sequence[float]) -> dict[str, Any]:
    """
    Return how well the probabilities are calibrated, over the known cells.

    ``ece`` (15 bins), ``ece_by_band`` and ``reliability``: per band and for ``all``, each
    bin's cells, mean predicted probability and observed obstacle rate (NaN when empty).
    """
    groups = {'all': np.ones(len(distances), bool), **band_columns(distances)}
    curves = {name: reliability(probabilities[:, :, columns], labels[:, :, columns])
              for name, columns in groups.items()}
    return {
        'ece': curves['all'].ece,
        'ece_by_band': {name: curve.ece for name, curve in curves.items() if name != 'all'},
        'reliability': {name: {'bin_edges': curve.edges, 'cells': curve.counts,
                               'mean_predicted': curve.mean_predicted,
                               'observed_rate': curve.mean_observed}
                        for name, curve in curves.items()},
    }


def as_float_array(values: Any) -> np.ndarray | None:
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
    if 'ece' in report:
        lines.append(f'  calibration error (ECE, 0 = P means what it says): '
                     f'{number(report["ece"])}; by band: ' + ', '.join(
                         f'{name} {number(value)}'
                         for name, value in report['ece_by_band'].items()))
    low = as_float_array(report.get('auc_by_distance_ci_low'))
    high = as_float_array(report.get('auc_by_distance_ci_high'))
    cells = []
    for i, (distance, value) in enumerate(zip(report['distances'],
                                              as_float_array(report['auc_by_distance']))):
        interval = (f' [{number(low[i])}, {number(high[i])}]' if low is not None
                    and high is not None else '')
        cells.append(f'{100 * distance:4.0f} cm {number(value)}{interval}')
    columns = 3
    rows = -(-len(cells) // columns)
    lines.append('  AUC by distance (sensors pooled, 95% CI):')
    for row in range(rows):
        lines.append('  ' + ' | '.join(cells[row::rows]))
    return '\n'.join(lines)


def predict_datasets(model: torch.nn.Module, paths: Sequence[str], device: str = 'cpu',
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """
    Return (probabilities, labels) of every frame of the files, in file order.

    Images are read ``READ_CHUNK`` frames at a time, so memory holds only the (N, S, D)
    arrays whatever the datasets' length.
    """
    from .model import predict_probabilities

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


def load_checked_model(model_path: str, data: Sequence[str], device: str = 'cpu',
                       ) -> tuple[torch.nn.Module, FileInfo]:
    """Return (model, first file's info) after checking the files match it and each other."""
    from .checkpoint import build_model, CheckpointError, load_checkpoint

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
    return build_model(checkpoint, device=device), info


def evaluate_files(model_path: str, data: Sequence[str], *, device: str = 'cpu',
                   n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Return the :func:`build_report` of a checkpoint on dataset files (checked to match)."""
    model, info = load_checked_model(model_path, data, device)
    probabilities, labels = predict_datasets(model, data, device)
    report = build_report(probabilities, labels, info.sensor_names, info.distances,
                          n_boot=n_boot, seed=seed)
    report['model'] = str(model_path)
    report['datasets'] = [str(path) for path in data]
    return report


# ---------------------------------------------------------------------- the paper's protocol
def _predict_recording(model: torch.nn.Module, path: str, flip: str, rng: np.random.Generator,
                       device: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (probabilities, labels, frames mirrored) of one test file under a flip mode."""
    from .model import predict_probabilities

    try:
        info = inspect_dataset(path)
        frames = load_frames([info], [(0, 0, info.frames)])
    except TrainError as error:
        raise EvaluateError(str(error)) from error
    images, labels = frames.images, frames.labels
    if flip == 'paper':
        images, labels, flipped = nava_protocol.paper_test_flip(images, labels, rng)
        return predict_probabilities(model, images, device), labels, int(flipped.sum())
    if flip == 'mean':
        probabilities = nava_protocol.mirror_average(
            lambda batch: predict_probabilities(model, batch, device), images)
        return probabilities, labels, len(labels)
    return predict_probabilities(model, images, device), labels, 0


def evaluate_nava2019(model_path: str, data: Sequence[str], *, device: str = 'cpu',
                      flip: str = 'paper', rounds: int = nava_protocol.BOOTSTRAP_ROUNDS,
                      n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """
    Return the report of a checkpoint on the paper's test recordings, scored as they score.

    ``data``: import-idsia files or folders; recordings 9 and 10 are scored (all of 0-10
    must be there, so that the split is the paper's). The report has the usual keys
    (:func:`build_report` of the pooled test frames, as the model saw them: mirrored
    under ``flip='paper'``) and a ``nava2019`` section: the mean, std and 2.5-97.5
    percentiles of the paper's per-cell bootstrap (``rounds`` per recording, from
    ``RandomState(13)``), per recording too, and the table in their orientation. ``seed``
    seeds the paper flip and this report's own bootstrap.
    """
    if flip not in nava_protocol.FLIP_MODES:
        raise EvaluateError(f'flip must be one of {nava_protocol.FLIP_MODES}, got {flip!r}')
    try:
        _, test = nava_protocol.split_recordings(nava_protocol.find_recordings(data))
    except nava_protocol.ProtocolError as error:
        raise EvaluateError(str(error)) from error
    paths = [path for _, path in test]
    model, info = load_checked_model(model_path, paths, device)
    flip_rng = np.random.default_rng(seed)
    bootstrap_rng = np.random.RandomState(nava_protocol.BOOTSTRAP_SEED)
    rounds_by_recording, all_probabilities, all_labels, mirrored = {}, [], [], {}
    for recording, path in test:
        probabilities, labels, mirrored[recording] = _predict_recording(
            model, path, flip, flip_rng, device)
        rounds_by_recording[recording] = nava_protocol.paper_bootstrap(
            probabilities, labels, rounds, bootstrap_rng)
        all_probabilities.append(probabilities)
        all_labels.append(labels)
    scores = nava_protocol.summarise_rounds(rounds_by_recording)
    report = build_report(np.concatenate(all_probabilities), np.concatenate(all_labels),
                          info.sensor_names, info.distances, n_boot=n_boot, seed=seed)
    report['model'] = str(model_path)
    report['datasets'] = paths
    report['nava2019'] = _protocol_section(scores, info, test, flip, mirrored,
                                           [len(p) for p in all_labels])
    return report


def _protocol_section(scores: nava_protocol.ProtocolScores, info: FileInfo,
                      test: Sequence[tuple[int, str]], flip: str, mirrored: dict[int, int],
                      frames: Sequence[int]) -> dict[str, Any]:
    """Return the report's ``nava2019`` section (numpy arrays; NaN-free by construction)."""
    return {
        'protocol': 'Nava et al. 2019 (idsia-robotics/learning-long-range-perception test.py)',
        'test_recordings': [recording for recording, _ in test],
        'frames': {str(recording): n for (recording, _), n in zip(test, frames)},
        'flip': flip, 'mirrored_frames': {str(k): v for k, v in mirrored.items()},
        'bootstrap': {'rounds_per_recording': scores.rounds // len(test),
                      'seed': nava_protocol.BOOTSTRAP_SEED, 'unit': 'known frames of a cell',
                      'undefined_auc': nava_protocol.UNDEFINED_AUC},
        'auc_mean': scores.mean, 'auc_std': scores.std,
        'auc_p2_5': scores.low, 'auc_p97_5': scores.high,
        'auc_mean_over_cells': float(scores.mean.mean()),
        'auc_by_recording': {str(k): v for k, v in scores.by_recording.items()},
        'table': {
            'orientation': 'rows: distances from the farthest to 0 cm; columns: sensors '
                           'left to right (their test.py heatmap)',
            'distances_cm': [round(100 * d, 3) for d in info.distances[::-1]],
            'sensors': list(info.sensor_names),
            'auc_mean': nava_protocol.paper_orientation(scores.mean),
            'auc_std': nava_protocol.paper_orientation(scores.std),
        },
    }
