"""
The evaluation protocol of Nava et al. 2019, as their ``train.py`` and ``test.py`` apply it.

What their code does, and what this module reproduces (docs/paper_dataset.md):

* **Split** by recording: train on 0–8, test on 9 and 10 (:func:`split_recordings`).
* **Training**: 60 epochs of 1,000 steps, batches of 64, Adam at 2e-4, their augmentation
  and a random horizontal flip. A batch is drawn as their ``generator`` draws it: pick a
  training recording uniformly, take the next 64 consecutive frames from that recording's
  cursor, and rewind the cursor to 0 once the following batch would run past the end
  (:func:`paper_batches`). Their last model is the one they test (no selection on the
  test recordings), so none is selected here either.
* **Flip** at test time: their test set is read with ``do_flip=True``, which mirrors each
  test frame with probability 0.5, image and labels together (the sensor axis reversed),
  before predicting (:func:`paper_test_flip`). :func:`mirror_average` is the other reading
  of "flip as test-time augmentation" (average the prediction of a frame and of its
  mirror image), offered beside it.
* **Scoring** per test recording, per (distance, sensor) cell, over the frames where that
  cell is known: 100 rounds, each resampling those frames with replacement (a fresh draw
  per cell, from one ``RandomState(13)`` in their loop order), AUC of each resample, 0.5
  where a resample lacks a class; the figure is the mean over the rounds of both test
  recordings, with their standard deviation (:func:`paper_bootstrap`,
  :func:`summarise_rounds`). The cells are scored separately, and the two recordings too:
  not the pooled, frame-resampled AUC of :mod:`.evaluation`.

Pure numpy, no torch or ROS: predictions come in as arrays (or a prediction function).
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import pathlib
from typing import Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from .metrics import roc_auc

NAME = 'nava2019'

#: Their split (train.py, test.py).
TRAIN_RECORDINGS: tuple[int, ...] = tuple(range(9))
TEST_RECORDINGS: tuple[int, ...] = (9, 10)

#: Their training settings (train.py's defaults).
EPOCHS = 60
STEPS_PER_EPOCH = 1000
BATCH_SIZE = 64
LEARNING_RATE = 2e-4

#: Their scoring settings (test.py).
BOOTSTRAP_ROUNDS = 100
BOOTSTRAP_SEED = 13
UNDEFINED_AUC = 0.5

#: Test-time flip modes: theirs, the averaging kind, or none.
FLIP_MODES = ('paper', 'mean', 'none')


class ProtocolError(ValueError):
    """The data do not allow the protocol; the message says what is missing."""


# ---------------------------------------------------------------------- split
def _recording_of(path: pathlib.Path) -> int:
    """Return the ``recording`` attribute import-idsia writes, or raise naming the file."""
    try:
        with h5py.File(path, 'r') as file:
            value = file.attrs.get('recording')
    except OSError as error:
        raise ProtocolError(f'cannot read dataset {str(path)!r}: {error}') from error
    if value is None:
        raise ProtocolError(f'{path} has no "recording" attribute: the {NAME} protocol runs '
                            'on the files of ssl-obstacle import-idsia')
    return int(value)


def find_recordings(data: Sequence[str | os.PathLike[str]]) -> dict[int, str]:
    """
    Return ``{recording: path}`` of dataset files and folders of them (their ``*.h5``).

    The recording is read from the file (the ``recording`` attribute of import-idsia), not
    guessed from its name; two files of one recording are an error.
    """
    found: dict[int, str] = {}
    for entry in map(pathlib.Path, data):
        paths = (sorted(p for p in entry.glob('*.h5') if not p.name.startswith('.'))
                 if entry.is_dir() else [entry])
        if entry.is_dir() and not paths:
            raise ProtocolError(f'{entry} holds no .h5 files')
        for path in paths:
            index = _recording_of(path)
            if index in found:
                raise ProtocolError(f'{path} and {found[index]} are both recording {index}')
            found[index] = str(path)
    return found


def split_recordings(recordings: Mapping[int, str],
                     ) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """
    Return (training, test) ``(recording, path)`` lists in recording order.

    Every recording of the split must be present: a protocol run on a subset would not be
    the paper's, so a missing one is an error that names it. Others are ignored.
    """
    missing = [i for i in TRAIN_RECORDINGS + TEST_RECORDINGS if i not in recordings]
    if missing:
        raise ProtocolError(f'the {NAME} protocol needs recordings 0-10 (train 0-8, test 9 '
                            f'and 10); missing: {", ".join(map(str, missing))} (have: '
                            f'{", ".join(map(str, sorted(recordings))) or "none"})')
    return ([(i, recordings[i]) for i in TRAIN_RECORDINGS],
            [(i, recordings[i]) for i in TEST_RECORDINGS])


# ---------------------------------------------------------------------- training batches
def paper_batches(lengths: Sequence[int], batch_size: int,
                  rng: np.random.Generator) -> Iterator[np.ndarray]:
    """
    Yield row indices of batches drawn as their ``generator`` draws them, forever.

    ``lengths`` are the recordings' frame counts, their rows laid end to end (recording
    ``k`` starts at ``sum(lengths[:k])``). Each batch: a recording chosen uniformly (not by
    size), its next ``batch_size`` consecutive rows from a cursor per recording, the cursor
    moved on and rewound to 0 when the next batch would pass the end (so a recording's
    last partial batch is never drawn, and one shorter than a batch yields all its rows).
    """
    lengths = [int(n) for n in lengths]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cursors = [0] * len(lengths)
    candidates = [k for k, n in enumerate(lengths) if n > 0]
    if not candidates:
        raise ProtocolError('no training recording has a frame')
    while True:
        k = candidates[int(rng.integers(len(candidates)))]
        start = cursors[k]
        end = min(start + batch_size, lengths[k])
        cursors[k] = start + batch_size
        if cursors[k] + batch_size > lengths[k]:
            cursors[k] = 0
        yield np.arange(offsets[k] + start, offsets[k] + end)


# ---------------------------------------------------------------------- flip
def mirror(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, H, W, C) mirrored left-right and cells (N, S, D) with S reversed."""
    return images[:, :, ::-1], labels[:, ::-1, :]


def paper_test_flip(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Return (images, labels, flipped (N,) bool): each frame mirrored with probability 0.5.

    As their test generator does: the image left-right and the labels' sensor axis
    together, so a mirrored frame is a plausible frame of a mirrored world with true
    labels. Returns copies; the inputs are untouched.
    """
    flipped = rng.random(len(labels)) < 0.5
    images, labels = np.array(images), np.array(labels)
    images[flipped], labels[flipped] = mirror(images[flipped], labels[flipped])
    return images, labels, flipped


def mirror_average(predict: Callable[[np.ndarray], np.ndarray],
                   images: np.ndarray) -> np.ndarray:
    """
    Return the mean of the predictions (N, S, D) of the frames and of their mirror images.

    The mirror image's prediction is mirrored back (sensor axis reversed) before averaging,
    so each cell averages two opinions about the same place.
    """
    direct = np.asarray(predict(images))
    mirrored = np.asarray(predict(np.ascontiguousarray(images[:, :, ::-1])))
    return (direct + mirrored[:, ::-1, :]) / 2.0


# ---------------------------------------------------------------------- scoring
def paper_bootstrap(probabilities: np.ndarray, labels: np.ndarray, rounds: int,
                    rng: np.random.RandomState) -> np.ndarray:
    """
    Return AUCs (rounds, S, D) of one test recording, resampled as their test.py does.

    For each round, each distance, each sensor (their loop order, so the same
    ``RandomState`` draws the same resamples as theirs): the frames where the cell is known,
    drawn with replacement as many times (``rng.choice(known, len(known))``), and the AUC
    of their predictions; :data:`UNDEFINED_AUC` where a resample has one class only (or the
    cell is never known), as their ``except ValueError`` does.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probabilities.shape != labels.shape or labels.ndim != 3:
        raise ValueError(f'probabilities {probabilities.shape} and labels {labels.shape} must '
                         'both be (N, S, D)')
    _, sensors, distances = labels.shape
    known = [[np.flatnonzero(~np.isnan(labels[:, s, d])) for s in range(sensors)]
             for d in range(distances)]
    out = np.empty((rounds, sensors, distances))
    for r in range(rounds):
        for d in range(distances):
            for s in range(sensors):
                rows = known[d][s]
                if len(rows):
                    rows = rng.choice(rows, len(rows))
                auc = roc_auc(probabilities[rows, s, d], labels[rows, s, d])
                out[r, s, d] = UNDEFINED_AUC if np.isnan(auc) else auc
    return out


@dataclass
class ProtocolScores:
    """The paper's figures: AUC statistics per (sensor, distance) over all bootstrap rounds."""

    mean: np.ndarray  # (S, D)
    std: np.ndarray  # (S, D)
    low: np.ndarray  # (S, D), 2.5th percentile (their todo: instead of mean ± std)
    high: np.ndarray  # (S, D), 97.5th percentile
    by_recording: dict[int, np.ndarray]  # recording → mean (S, D) of its rounds
    rounds: int


def summarise_rounds(rounds_by_recording: Mapping[int, np.ndarray]) -> ProtocolScores:
    """Pool the rounds (R, S, D) of every test recording, as their ``auc_array`` does."""
    stacked = np.concatenate([np.asarray(v) for v in rounds_by_recording.values()])
    return ProtocolScores(
        mean=stacked.mean(axis=0), std=stacked.std(axis=0),
        low=np.percentile(stacked, 2.5, axis=0), high=np.percentile(stacked, 97.5, axis=0),
        by_recording={k: np.asarray(v).mean(axis=0) for k, v in rounds_by_recording.items()},
        rounds=len(stacked))


def paper_orientation(grid: np.ndarray) -> np.ndarray:
    """
    Return a (S, D) grid as their figure lays it out: (D, S), the farthest distance on top.

    Their ``aucs[n_dist - 1 - i, j]``: rows are distances from the farthest (first row) to
    0 (last), columns the sensors from left to right.
    """
    return np.asarray(grid).T[::-1]


def format_paper_table(mean: np.ndarray, std: np.ndarray, rounds: int,
                       sensor_names: Sequence[str], distances: Sequence[float]) -> str:
    """Return the mean ± std AUC × 100 per distance (farthest first) and sensor, as text."""
    header = ' cm ' + ''.join(f'{name[:13]:>14}' for name in sensor_names)
    lines = [f'AUC x 100 by the {NAME} protocol (mean ± std of {rounds} bootstrap rounds of '
             'the test recordings; rows as in the paper, farthest first):', header]
    mean, std = paper_orientation(mean), paper_orientation(std)
    for row, distance in enumerate(np.asarray(distances, dtype=np.float64)[::-1]):
        cells = ''.join(f'{100 * m:8.1f} ±{100 * s:4.1f}' for m, s in zip(mean[row], std[row]))
        lines.append(f'{100 * distance:3.0f} {cells}')
    return '\n'.join(lines)
