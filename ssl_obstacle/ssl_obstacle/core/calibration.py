"""
Whether P(obstacle) means what it says, and a correction that keeps it so.

A controller thresholds the predicted probabilities (the avoider's free distance is the
first cell with P >= 0.5), so 0.7 should mean that an obstacle is there seven times in
ten. Measured here: the expected calibration error (ECE) and reliability curves over the
known cells. Fixed here: Platt scaling, ``P = sigmoid(scale * logit + bias)`` per distance
(or per cell), or a temperature (the scale alone), fitted to frames the model had not
trained on, i.e. the trainer's prequential window. With ``scale > 0`` the map is
increasing in each cell, so every per-cell AUC is unchanged; and it folds into the
network's last layer, so the robots get calibrated probabilities with no change to the
forward pass or the model message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .model_config import OUTPUT_LAYER
from .numpy_model import sigmoid

#: Equal-width probability bins of the ECE and the reliability curve.
ECE_BINS = 15
#: Probabilities are clipped this far from 0 and 1 before taking logits.
EPSILON = 1e-6
#: Known cells a distance (or cell) needs before its own scaling is fitted; fewer: identity.
MIN_CELLS = 200
#: Range of the fitted scale: positive keeps every ranking; bounded keeps a few unlucky
#: cells from turning a model into a step function.
SCALE_RANGE = (0.05, 10.0)
#: Ridge pulling (scale, bias) toward the identity (1, 0), per known cell: a prior that only
#: matters where few cells are known.
RIDGE = 1e-3
#: How far the trainer's temperature moves from 1 toward the fitted one (geometrically):
#: half-way, because it is fitted on the training room and the robot may drive into
#: another (docs/learning_quality.md, "Calibration").
TEMPERATURE_SHRINK = 0.5


def known_cells(probabilities: np.ndarray,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the probabilities and labels of the known (non-NaN label) cells, flattened."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probabilities.shape != labels.shape:
        raise ValueError(f'probabilities {probabilities.shape} and labels {labels.shape} '
                         'differ in shape')
    known = ~np.isnan(labels)
    return probabilities[known], labels[known]


@dataclass(frozen=True)
class Reliability:
    """A reliability curve: per probability bin, the cells, mean prediction, mean outcome."""

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    mean_observed: np.ndarray

    @property
    def ece(self) -> float:
        """Return the expected calibration error: the count-weighted mean |gap| of the bins."""
        total = self.counts.sum()
        if not total:
            return float('nan')
        used = self.counts > 0
        gaps = np.abs(self.mean_observed[used] - self.mean_predicted[used])
        return float((self.counts[used] * gaps).sum() / total)


def reliability(probabilities: np.ndarray, labels: np.ndarray,
                bins: int = ECE_BINS) -> Reliability:
    """
    Bin the known cells by predicted probability; NaN means where a bin is empty.

    Labels may be fractions (the labeler's share of readings that saw an obstacle): the
    observed rate of a bin is then their mean, which is what a probability should match.
    """
    predicted, observed = known_cells(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, predicted, side='right') - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.int64)
    with np.errstate(invalid='ignore', divide='ignore'):
        mean_predicted = np.bincount(index, predicted, bins) / counts
        mean_observed = np.bincount(index, observed, bins) / counts
    return Reliability(edges, counts, mean_predicted, mean_observed)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Return the ECE over the known cells (NaN when none is known)."""
    return reliability(probabilities, labels, bins).ece


def logits(probabilities: np.ndarray) -> np.ndarray:
    """Return log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class PlattScaling:
    """``P = sigmoid(scale * logit + bias)``, one (scale, bias) per cell of the grid (S, D)."""

    scale: np.ndarray
    bias: np.ndarray

    @classmethod
    def identity(cls, num_sensors: int, num_distances: int) -> PlattScaling:
        """Return the scaling that changes nothing."""
        shape = (num_sensors, num_distances)
        return cls(np.ones(shape, np.float32), np.zeros(shape, np.float32))

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> PlattScaling:
        """Return the scaling stored by :meth:`as_dict` (checked: same shapes, finite)."""
        scale = np.asarray(values['scale'], dtype=np.float32)
        bias = np.asarray(values['bias'], dtype=np.float32)
        if scale.ndim != 2 or scale.shape != bias.shape:
            raise ValueError(f'calibration scale {scale.shape} and bias {bias.shape} must be '
                             'two grids of one shape')
        if not (np.isfinite(scale).all() and np.isfinite(bias).all() and (scale > 0).all()):
            raise ValueError('calibration scale must be finite and positive, bias finite')
        return cls(scale, bias)

    def as_dict(self) -> dict[str, list[list[float]]]:
        """Return plain lists, for a checkpoint (weights_only) or a report."""
        return {'scale': self.scale.astype(float).tolist(),
                'bias': self.bias.astype(float).tolist()}

    @property
    def is_identity(self) -> bool:
        """Return whether this scaling changes nothing."""
        return bool((self.scale == 1).all() and (self.bias == 0).all())

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities for grids (..., S, D)."""
        return sigmoid(self.scale * logits(probabilities) + self.bias).astype(np.float32)

    def fold_into(self, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """
        Return a copy of a network's state whose outputs are the calibrated logits.

        The last layer computes ``logit = W h + c``, one row per cell in sensor-major
        order; ``scale * (W h + c) + bias`` is the layer ``(scale W) h + (scale c + bias)``.
        """
        weight_name, bias_name = f'{OUTPUT_LAYER}.weight', f'{OUTPUT_LAYER}.bias'
        weight = np.asarray(state[weight_name], dtype=np.float32)
        out_bias = np.asarray(state[bias_name], dtype=np.float32)
        scale = self.scale.reshape(-1)
        if weight.shape[0] != scale.size:
            raise ValueError(f'calibration of {scale.size} cells for a layer of '
                             f'{weight.shape[0]} outputs')
        folded = dict(state)
        folded[weight_name] = (weight * scale[:, None]).astype(np.float32)
        folded[bias_name] = (out_bias * scale + self.bias.reshape(-1)).astype(np.float32)
        return folded


def _grids(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return predictions and labels as float64 grids (n, S, D) of one shape, else raise."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probabilities.ndim != 3 or probabilities.shape != labels.shape:
        raise ValueError(f'expected predictions and labels (n, S, D) of one shape, got '
                         f'{probabilities.shape} and {labels.shape}')
    return probabilities, labels


def fit_platt(probabilities: np.ndarray, labels: np.ndarray, per: str = 'distance',
              min_cells: int = MIN_CELLS) -> PlattScaling:
    """
    Fit Platt scaling to predictions (n, S, D) and their labels (NaN = unknown).

    ``per='distance'`` fits one (scale, bias) per distance, pooling the sensors (five times
    the cells of one sensor); ``per='cell'`` one per sensor and distance. A group with
    fewer than ``min_cells`` known cells, or with one class only, keeps the identity.
    """
    probabilities, labels = _grids(probabilities, labels)
    if per not in ('distance', 'cell'):
        raise ValueError(f"per must be 'distance' or 'cell', got {per!r}")
    _, sensors, distances = probabilities.shape
    result = PlattScaling.identity(sensors, distances)
    scale, bias = result.scale.copy(), result.bias.copy()
    groups = [(slice(None), d) for d in range(distances)] if per == 'distance' else \
        [(s, d) for s in range(sensors) for d in range(distances)]
    for rows, column in groups:
        predicted, observed = known_cells(probabilities[:, rows, column],
                                          labels[:, rows, column])
        if predicted.size < min_cells or observed.min() == observed.max():
            continue
        scale[rows, column], bias[rows, column] = _fit_one(logits(predicted), observed)
    return PlattScaling(scale, bias)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, per: str = 'all',
                    shrink: float = 1.0, min_cells: int = MIN_CELLS) -> PlattScaling:
    """
    Fit a temperature, ``P = sigmoid(logit / T)``, to predictions (n, S, D) and labels.

    Returned as a :class:`PlattScaling` with ``scale = 1 / T`` and no bias. ``per='all'``
    fits one for the whole grid, ``per='distance'`` one per distance. ``shrink`` in [0, 1]
    pulls the fitted scale toward 1 geometrically (``scale ** shrink``): the frames it is
    fitted on come from the training room, where the full correction is best, and another
    room may want less of it (measured: docs/learning_quality.md, "Calibration").
    """
    probabilities, labels = _grids(probabilities, labels)
    if per not in ('all', 'distance'):
        raise ValueError(f"per must be 'all' or 'distance', got {per!r}")
    if not 0.0 <= shrink <= 1.0:
        raise ValueError(f'shrink must lie in [0, 1], got {shrink}')
    _, sensors, distances = probabilities.shape
    result = PlattScaling.identity(sensors, distances)
    scale = result.scale.copy()
    columns = [slice(None)] if per == 'all' else list(range(distances))
    for column in columns:
        predicted, observed = known_cells(probabilities[:, :, column], labels[:, :, column])
        if predicted.size < min_cells or observed.min() == observed.max():
            continue
        fitted, _ = _fit_one(logits(predicted), observed, with_bias=False)
        scale[:, column] = fitted ** shrink
    return PlattScaling(scale, result.bias)


def _fit_one(x: np.ndarray, y: np.ndarray, steps: int = 25,
             with_bias: bool = True) -> tuple[float, float]:
    """
    Fit (a, b) minimising the cross-entropy of sigmoid(a x + b) against y, by Newton.

    Without ``with_bias``, b stays 0 and only a is fitted. Written here because the
    environment has neither scipy nor scikit-learn, and a convex problem of one or two
    parameters needs only a few Newton steps (ridge toward (1, 0)).
    """
    ridge = RIDGE * len(x)
    theta = np.array([1.0, 0.0])
    design = np.stack([x, np.ones_like(x)], axis=1)
    free = slice(None) if with_bias else slice(0, 1)
    for _ in range(steps):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - y) + ridge * (theta - (1.0, 0.0))
        weights = np.maximum(p * (1.0 - p), 1e-9)
        hessian = (design * weights[:, None]).T @ design + ridge * np.eye(2)
        step = np.zeros(2)
        step[free] = np.linalg.solve(hessian[free, free], gradient[free])
        theta = theta - step
        theta[0] = np.clip(theta[0], *SCALE_RANGE)
        if np.abs(step).max() < 1e-7:
            break
    return float(theta[0]), float(theta[1])
