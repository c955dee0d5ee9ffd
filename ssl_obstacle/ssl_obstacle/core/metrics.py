"""
ROC AUC of obstacle predictions, per (sensor, distance) cell, as Nava et al. 2019 report it.

AUC is the probability that a random positive cell scores higher than a random negative
one (ties count half): it does not depend on a decision threshold or on how rare obstacles
are at a distance, which is why the paper uses it. Only known cells are scored (labels NaN
are skipped); a label counts as positive when it is at least 0.5, so fractional labels are
scored by their majority. Where a cell has only one class the AUC is undefined: NaN here,
``null`` in reports.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

#: Distance bands of the reports, in metres: [low, high) except the last, which is closed.
BANDS: Mapping[str, tuple[float, float]] = {
    '0-10cm': (0.0, 0.10), '10-20cm': (0.10, 0.20), '20-30cm': (0.20, 0.30)}


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """
    Return the ROC AUC of ``scores`` against ``targets`` (positive where ≥ 0.5).

    Computed from average ranks (Mann–Whitney U), so ties between a positive and a negative
    count half and the result is exact; entries whose target is NaN are ignored. NaN when
    either class is missing.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = np.asarray(targets, dtype=np.float64).ravel()
    known = ~np.isnan(targets)
    scores, positive = scores[known], targets[known] >= 0.5
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float('nan')
    u = average_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Return each value's 1-based rank, tied values sharing the average of their ranks."""
    _, inverse, counts = np.unique(np.asarray(values).ravel(), return_inverse=True,
                                   return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def auc_grid(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the AUC (S, D) of each cell over the frames where it is known; NaN if one-class."""
    probabilities, labels = _check(probabilities, labels)
    _, sensors, distances = labels.shape
    grid = np.full((sensors, distances), np.nan)
    for s in range(sensors):
        for d in range(distances):
            grid[s, d] = roc_auc(probabilities[:, s, d], labels[:, s, d])
    return grid


def auc_by_distance(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the AUC (D,) per distance, pooling the cells of every sensor at that distance."""
    probabilities, labels = _check(probabilities, labels)
    return np.array([roc_auc(probabilities[:, :, d], labels[:, :, d])
                     for d in range(labels.shape[2])])


def auc_mean(grid: np.ndarray) -> float:
    """Return the mean of the defined AUCs of a grid (NaN when none is defined)."""
    grid = np.asarray(grid, dtype=np.float64)
    finite = grid[~np.isnan(grid)]
    return float(finite.mean()) if finite.size else float('nan')


def auc_by_band(grid: np.ndarray, distances: Sequence[float],
                bands: Mapping[str, tuple[float, float]] = BANDS) -> dict[str, float]:
    """
    Return the mean cell AUC of each distance band (``{'0-10cm': …, …}``).

    The mean of per-cell AUCs, like :func:`auc_mean`, so the bands and the overall figure
    weigh cells alike; NaN for a band with no defined cell.
    """
    grid = np.asarray(grid, dtype=np.float64)
    return {name: auc_mean(grid[:, in_band])
            for name, in_band in band_columns(distances, bands).items()}


def band_columns(distances: Sequence[float],
                 bands: Mapping[str, tuple[float, float]] = BANDS) -> dict[str, np.ndarray]:
    """Return, per band, which distances it holds: [low, high), the last band [low, high]."""
    distances = np.asarray(distances, dtype=np.float64)
    last = max(high for _, high in bands.values())
    columns = {}
    for name, (low, high) in bands.items():
        upper = distances <= high + 1e-9 if high >= last else distances < high - 1e-9
        columns[name] = (distances >= low - 1e-9) & upper
    return columns


def bootstrap_auc_ci(probabilities: np.ndarray, labels: np.ndarray, n_boot: int = 200,
                     alpha: float = 0.05, rng: np.random.Generator | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """
    Return percentile bootstrap confidence intervals (low (S, D), high (S, D)) of each cell.

    Frames are resampled with replacement, as the paper does (cells of one frame are not
    independent, so resampling cells would understate the spread). A resample is a vector
    of per-frame multiplicities shared by every cell, and each cell's AUC is computed for
    all resamples at once from its sorted scores (weighted Mann–Whitney), so the cost is
    O(n_boot × frames) per cell instead of a sort per resample. NaN where a cell's AUC is
    undefined in more than half of the resamples.
    """
    probabilities, labels = _check(probabilities, labels)
    count, sensors, distances = labels.shape
    cells = [(probabilities[:, s, d], labels[:, s, d]) for s in range(sensors)
             for d in range(distances)]
    low, high = _bootstrap(cells, count, n_boot, alpha, rng)
    return low.reshape(sensors, distances), high.reshape(sensors, distances)


def bootstrap_auc_by_distance_ci(probabilities: np.ndarray, labels: np.ndarray,
                                 n_boot: int = 200, alpha: float = 0.05,
                                 rng: np.random.Generator | None = None,
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Return bootstrap intervals (low (D,), high (D,)) of :func:`auc_by_distance`."""
    probabilities, labels = _check(probabilities, labels)
    count, _, distances = labels.shape
    groups = [(probabilities[:, :, d], labels[:, :, d]) for d in range(distances)]
    return _bootstrap(groups, count, n_boot, alpha, rng)


# ---------------------------------------------------------------------- internals
def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probabilities.shape != labels.shape or labels.ndim != 3:
        raise ValueError(f'probabilities {probabilities.shape} and labels {labels.shape} must '
                         'both be (N, S, D)')
    return probabilities, labels


def _bootstrap(groups: list[tuple[np.ndarray, np.ndarray]], count: int, n_boot: int,
               alpha: float, rng: np.random.Generator | None,
               chunk: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """
    Return percentile intervals of the AUC of each group of entries under frame resampling.

    Each group is (scores, labels) with frames on the first axis (N,) or (N, K); the K
    entries of a frame share its multiplicity. Resamples are drawn ``chunk`` at a time so
    memory is O(chunk × frames) whatever ``n_boot`` is.
    """
    rng = rng if rng is not None else np.random.default_rng()
    samples = np.full((len(groups), n_boot), np.nan)
    prepared = [_prepare(scores, labels) for scores, labels in groups]
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        weights = rng.multinomial(count, np.full(count, 1.0 / count), size=size) if count \
            else np.zeros((size, 0))
        for index, group in enumerate(prepared):
            if group is not None:
                samples[index, start:start + size] = _weighted_auc(weights, *group)
    defined = np.sum(~np.isnan(samples), axis=1) * 2 > n_boot
    low = np.full(len(groups), np.nan)
    high = np.full(len(groups), np.nan)
    if defined.any():
        low[defined] = np.nanpercentile(samples[defined], 100.0 * alpha / 2.0, axis=1)
        high[defined] = np.nanpercentile(samples[defined], 100.0 * (1.0 - alpha / 2.0),
                                         axis=1)
    return low, high


def _prepare(scores: np.ndarray, labels: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """
    Sort a group's known entries by score once, for every resample.

    Return (frame index, positive, tie-group start offsets) in sorted order, or None when
    the group has only one class (its AUC is NaN in every resample).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    labels = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    frames = np.broadcast_to(np.arange(len(scores))[:, None], scores.shape)
    known = ~np.isnan(labels)
    scores, positive, frames = scores[known], labels[known] >= 0.5, frames[known]
    if positive.all() or not positive.any():
        return None
    order = np.argsort(scores, kind='stable')
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    return frames[order], positive[order], starts


def _weighted_auc(weights: np.ndarray, frames: np.ndarray, positive: np.ndarray,
                  starts: np.ndarray) -> np.ndarray:
    """
    Return the AUC of one group for each row of frame ``weights`` (B, N).

    A positive's weighted count of lower-scored negatives is the negatives' weight in the
    tie groups below its own plus half its own group's; summed over tie groups this is
    Mann–Whitney U with multiplicities.
    """
    entry = weights[:, frames].astype(np.float64)  # (B, n) in score order
    pos_w = np.where(positive, entry, 0.0)
    neg_w = entry - pos_w
    pos_groups = np.add.reduceat(pos_w, starts, axis=1)
    neg_groups = np.add.reduceat(neg_w, starts, axis=1)
    below = np.cumsum(neg_groups, axis=1) - neg_groups
    u = np.sum(pos_groups * (below + 0.5 * neg_groups), axis=1)
    denominator = pos_groups.sum(axis=1) * neg_groups.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(denominator > 0, u / np.where(denominator > 0, denominator, 1.0),
                        np.nan)
