"""
Offline training of the obstacle model on HDF5 datasets, and the datasets' inspection.

The same network, preprocessing, loss and augmentation as the online learner
(:mod:`ssl_obstacle.core.model`), trained with Adam on exported datasets. Validation is split
by file (with several files the last ones are held out; with one, a contiguous tail), because
neighbouring frames of one run are nearly identical: a random split would score the model
on frames it has practically seen. The model with the best validation AUC is kept.

Memory: the training and validation frames are held in memory as uint8, read straight into
preallocated arrays (no concatenated copies): 15 KB per 64×80 frame, 1.5 GB for 100k
frames, which is the intended scale. Batches are drawn from that array by index.

``ssl-obstacle train`` (``commands/train.py``) reads its options, calls these and writes the
checkpoint; ``evaluate`` and the benchmarks use the dataset inspection and the loop too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
import itertools
import os
import sys
import time
from typing import Callable, Iterator, Sequence, TYPE_CHECKING

import h5py
import numpy as np

from .dataset import read_dataset
from .implied_labels import BlockedCompletion

if TYPE_CHECKING:  # torch loads in 2-3 s: only when training, not for every ssl-obstacle run
    import torch

    from .model import Augmentation, ModelConfig, ObstacleNet

#: Yields the row indices of training batches, given the training random generator.
BatchSampler = Callable[[np.random.Generator], Iterator[np.ndarray]]


class TrainError(RuntimeError):
    """Training cannot proceed; the message says why, in terms a user can act on."""


# ---------------------------------------------------------------------- data
@dataclass
class FileInfo:
    """One dataset file's shape and metadata, read without its images."""

    path: str
    frames: int
    image_shape: tuple[int, int, int]
    sensor_names: list[str]
    distances: list[float]


@dataclass
class Frames:
    """Frames and labels in memory, with where they came from."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # float32 (N, S, D), NaN = unknown
    sources: list[tuple[str, int, int]] = field(default_factory=list)  # (path, start, end)

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.labels)


def inspect_dataset(path: str | os.PathLike[str]) -> FileInfo:
    """Return a dataset file's size and metadata; :class:`TrainError` if it is not one."""
    try:
        meta = read_dataset(path, images=False)
        with h5py.File(path, 'r') as file:
            image_shape = tuple(int(v) for v in file['images'].shape[1:])
    except (OSError, ValueError, KeyError) as error:
        raise TrainError(f'cannot read dataset {str(path)!r}: {error}') from error
    return FileInfo(str(path), len(meta['labels']), image_shape, list(meta['sensor_names']),
                    [float(d) for d in meta['distances']])


def check_compatible(infos: Sequence[FileInfo]) -> None:
    """Raise :class:`TrainError` unless every file has the same frame size, sensors, distances."""
    first = infos[0]
    for info in infos[1:]:
        if (info.image_shape, info.sensor_names) != (first.image_shape, first.sensor_names) \
                or not np.allclose(info.distances, first.distances):
            raise TrainError(f'{info.path} does not match {first.path}: image '
                             f'{info.image_shape} vs {first.image_shape}, sensors '
                             f'{info.sensor_names} vs {first.sensor_names}, distances '
                             f'{info.distances} vs {first.distances}')


def split_by_file(infos: Sequence[FileInfo], val_fraction: float,
                  ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """
    Return (training, validation) ranges ``(file index, start, end)``.

    With several files, the fewest trailing files holding at least ``val_fraction`` of the
    frames are held out (at least one file stays for training); with one file, its last
    ``val_fraction`` of frames. ``val_fraction`` 0 means no validation.
    """
    whole = [(i, 0, info.frames) for i, info in enumerate(infos)]
    if val_fraction <= 0:
        return whole, []
    total = sum(info.frames for info in infos)
    if len(infos) == 1:
        tail = min(infos[0].frames - 1, max(1, round(val_fraction * total)))
        if tail < 1:
            return whole, []
        return [(0, 0, infos[0].frames - tail)], [(0, infos[0].frames - tail, infos[0].frames)]
    held = 0
    split = len(infos)
    while split > 1 and held < val_fraction * total:
        split -= 1
        held += infos[split].frames
    return whole[:split], whole[split:]


def load_frames(infos: Sequence[FileInfo], ranges: Sequence[tuple[int, int, int]]) -> Frames:
    """Read the frames of ``ranges`` into one preallocated array (no intermediate copies)."""
    count = sum(end - start for _, start, end in ranges)
    first = infos[0]
    images = np.empty((count, *first.image_shape), dtype=np.uint8)
    labels = np.empty((count, len(first.sensor_names), len(first.distances)), dtype=np.float32)
    sources = []
    row = 0
    for index, start, end in ranges:
        info = infos[index]
        if end <= start:
            continue
        try:
            with h5py.File(info.path, 'r') as file:
                file['images'].read_direct(images, np.s_[start:end], np.s_[row:row + end - start])
                labels[row:row + end - start] = file['labels'][start:end]
        except (OSError, ValueError, KeyError) as error:
            raise TrainError(f'cannot read dataset {info.path!r}: {error}') from error
        sources.append((info.path, start, end))
        row += end - start
    return Frames(images, labels, sources)


# ---------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """The kept model and what training did."""

    model: ObstacleNet
    optimizer: torch.optim.Optimizer
    history: list[dict[str, float]]
    best_epoch: int
    best_val_auc: float
    best_val_loss: float
    updates: int
    frames_seen: int
    seconds: float


def evaluate_loss_auc(model: ObstacleNet, images: np.ndarray, labels: np.ndarray,
                      device: str | torch.device = 'cpu', batch_size: int = 256,
                      ) -> tuple[float, float]:
    """Return (masked BCE over known cells, mean cell AUC) of ``model`` on a frame set."""
    import torch

    from .metrics import auc_grid, auc_mean
    from .model import masked_bce_loss, preprocess

    if len(labels) == 0:
        return float('nan'), float('nan')
    was_training = model.training
    model.eval()
    probabilities = np.empty(labels.shape, dtype=np.float32)
    loss_sum, known_sum = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(labels), batch_size):
                batch_labels = torch.from_numpy(labels[start:start + batch_size]).to(device)
                logits = model(preprocess(images[start:start + batch_size]).to(device))
                known = int((~torch.isnan(batch_labels)).sum())
                loss_sum += float(masked_bce_loss(logits, batch_labels)) * known
                known_sum += known
                probabilities[start:start + len(logits)] = torch.sigmoid(logits).cpu().numpy()
    finally:
        model.train(was_training)
    loss = loss_sum / known_sum if known_sum else float('nan')
    return loss, auc_mean(auc_grid(probabilities, labels))


def _better(auc: float, loss: float, best_auc: float, best_loss: float) -> bool:
    """Rank by validation AUC; by loss when AUC is undefined (one class only)."""
    if not np.isnan(auc):
        return np.isnan(best_auc) or auc > best_auc
    return np.isnan(best_auc) and not np.isnan(loss) and (np.isnan(best_loss)
                                                          or loss < best_loss)


def train_model(train: Frames, val: Frames | None = None, *, config: ModelConfig | None = None,
                epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                max_updates: int | None = None, use_augment: bool = True,
                device: str | torch.device = 'cpu', progress: bool = False,
                log: Callable[[str], None] | None = None,
                max_seconds: float | None = None,
                augmentation: Augmentation | None = None,
                sampler: BatchSampler | None = None,
                steps_per_epoch: int | None = None) -> TrainResult:
    """
    Train a fresh :class:`ObstacleNet` on ``train``; keep the best on ``val``.

    Each epoch visits every training frame with a known cell once, in a random order, in
    batches (augmented when ``use_augment``); after each epoch (and when ``max_updates``
    stops training early) the model is scored on ``val`` and kept if its AUC is the best so
    far. Without validation frames the last model is kept. ``log`` receives one line per
    epoch. ``max_seconds`` stops training after that much wall time (checked before every
    batch), as ``max_updates`` does after that many batches: a budget of compute rather
    than of data, e.g. to compare with an online learner given the same time.

    ``augmentation`` chooses how batches are perturbed (default: the model's default).
    ``sampler``, with ``steps_per_epoch``, replaces the shuffled passes: it is called once
    with the training generator and yields row indices of batches, of which each epoch
    takes ``steps_per_epoch`` (a protocol's own way of drawing batches, e.g. the paper's in
    :func:`~.nava_protocol.paper_batches`).
    """
    import torch
    from tqdm import tqdm

    from .model import (augment, DEFAULT_AUGMENTATION, masked_bce_loss, ModelConfig,
                        ObstacleNet, preprocess)

    # As the loss approaches zero, gradients and Adam's moments become denormal floats,
    # which the CPU handles up to 100x slower: flush them to zero (process-wide, harmless).
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    _, height, width, _ = train.images.shape
    config = config or ModelConfig(num_sensors=train.labels.shape[1],
                                   num_distances=train.labels.shape[2], image_height=height,
                                   image_width=width)
    model = ObstacleNet(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    usable = np.flatnonzero((~np.isnan(train.labels)).any(axis=(1, 2)))
    if len(usable) == 0:
        raise TrainError('no training frame has a known label')
    if (sampler is None) != (steps_per_epoch is None):
        raise TrainError('a batch sampler needs steps_per_epoch, and steps_per_epoch a sampler')
    stream = sampler(rng) if sampler is not None else None
    settings = augmentation if augmentation is not None else DEFAULT_AUGMENTATION
    if steps_per_epoch is None:
        steps_per_epoch = -(-len(usable) // batch_size)
    total = epochs * steps_per_epoch if max_updates is None else min(
        max_updates, epochs * steps_per_epoch)

    def epoch_batches() -> Iterator[np.ndarray]:
        if stream is not None:
            yield from itertools.islice(stream, steps_per_epoch)
            return
        order = rng.permutation(usable)
        for start in range(0, len(order), batch_size):
            yield np.sort(order[start:start + batch_size])  # sorted: faster gathers

    history: list[dict[str, float]] = []
    best_state = None
    best_auc, best_loss, best_epoch = float('nan'), float('nan'), 0
    updates = frames_seen = 0
    with tqdm(total=total, unit='batch', disable=not progress, file=sys.stderr,
              mininterval=0.5, dynamic_ncols=True, desc='train') as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            loss_sum = 0.0
            batches = 0
            for index in epoch_batches():
                if max_updates is not None and updates >= max_updates:
                    break
                if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    break
                images, labels = train.images[index], train.labels[index]
                if use_augment:
                    images, labels = augment(images, labels, rng, settings)
                logits = model(preprocess(images).to(device))
                loss = masked_bce_loss(logits, torch.from_numpy(labels).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                batches += 1
                updates += 1
                frames_seen += len(index)
                bar.update(1)
                bar.set_postfix_str(f'epoch {epoch} loss {loss_sum / batches:.4f}',
                                    refresh=False)
            if batches == 0:
                break
            val_loss, val_auc = (evaluate_loss_auc(model, val.images, val.labels, device)
                                 if val is not None and len(val) else (float('nan'),) * 2)
            entry = {'epoch': epoch, 'updates': updates, 'train_loss': loss_sum / batches,
                     'val_loss': val_loss, 'val_auc': val_auc}
            history.append(entry)
            improved = best_state is None or _better(val_auc, val_loss, best_auc, best_loss)
            if val is None or not len(val):
                improved = True
            if improved:
                best_state = copy.deepcopy(model.state_dict())
                best_auc, best_loss, best_epoch = val_auc, val_loss, epoch
            if log is not None:
                line = (f'epoch {epoch}/{epochs}  updates {updates}  train loss '
                        f'{entry["train_loss"]:.4f}  val loss {val_loss:.4f}  val AUC '
                        f'{val_auc:.4f}{"  *" if improved else ""}')
                if progress:
                    bar.write(line, file=sys.stdout)
                else:
                    log(line)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, optimizer, history, best_epoch, best_auc, best_loss, updates,
                       frames_seen, time.perf_counter() - started)


def with_implied_blocking(frames: Frames, info: FileInfo,
                          log: Callable[[str], None] | None = None) -> Frames:
    """
    Return the frames with the cells a sighting implies filled (core/implied_labels.py).

    ``log`` receives one line saying how many cells were filled, beside how many observed.
    """
    completion = BlockedCompletion(info.sensor_names, info.distances)
    if not completion.active:
        return frames
    labels = completion(frames.labels)
    added = int(np.isnan(frames.labels).sum() - np.isnan(labels).sum())
    observed = int(np.isfinite(frames.labels).sum())
    if log is not None:
        log(f'implied blocking: {added} unlabeled cells of the training frames are trained as '
            f'obstacles, beside {observed} observed ones ({completion.explain()}; '
            '--no-implied-blocking turns this off)')
    return Frames(frames.images, labels, frames.sources)
