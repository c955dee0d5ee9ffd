"""
How far each predicted cell can be trusted, and whether that claim holds.

Some cells the model cannot know: the side sensors look out at ±38° while the camera sees
±22°, so the near cells of the side sensors are mostly outside the picture, and their
probabilities say little whatever the image. A calibrated probability of 0.5 is not the
same statement as a confident 0.1: the controller needs both. Two things go into a
prediction's confidence:

* the cell's *skill*, which only the trainer can know: how well the model ranked that
  cell on frames it had not trained on (the prequential window), ``2 (AUC - 0.5)``
  clipped to [0, 1], 0 where the window has no obstacle or no free case for it yet. It
  travels with the weights (:func:`cell_confidence`);
* the prediction's own *certainty* ``|2P - 1|``: 0 where the model says 0.5, 1 at 0 or 1.
  For a calibrated P the expected error |P - y| is ``(1 - certainty ** 2) / 2``.

Their product (:func:`prediction_confidence`) is published with every prediction: 0 when
the model says it cannot tell, and 0 in a cell it has not learnt to rank, whatever it
says. :func:`error_by_confidence` checks the claim on other frames: the error should fall
as the confidence rises (docs/learning_quality.md, "Uncertainty").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import auc_grid, average_ranks

#: Cells of a confidence group in :func:`error_by_confidence`: equal shares of known cells.
GROUPS = 4


def cell_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return each cell's ranking skill on scored frames (n, S, D): (S, D) in [0, 1]."""
    grid = auc_grid(probabilities, labels)
    skill = np.clip(2.0 * (np.nan_to_num(grid, nan=0.5) - 0.5), 0.0, 1.0)
    return skill.astype(np.float32)


def prediction_confidence(probabilities: np.ndarray, skill: np.ndarray) -> np.ndarray:
    """Return the confidence of predictions (..., S, D): each cell's skill x |2P - 1|."""
    certainty = np.abs(2.0 * np.asarray(probabilities, dtype=np.float32) - 1.0)
    return np.clip(certainty * np.asarray(skill, dtype=np.float32), 0.0, 1.0)


def checked_confidence(values: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """Return stored or received confidences as an (S, D) grid, None when empty; else raise."""
    grid = np.asarray(values if values is not None else [], dtype=np.float32)
    if grid.size == 0:
        return None
    if grid.size != shape[0] * shape[1]:
        raise ValueError(f'{grid.size} cell confidences for a grid of {shape[0]} x {shape[1]}')
    if not (np.isfinite(grid).all() and (grid >= 0).all() and (grid <= 1).all()):
        raise ValueError('cell confidences must lie in [0, 1]')
    return grid.reshape(shape)


def error_by_confidence(probabilities: np.ndarray, labels: np.ndarray,
                        confidence: np.ndarray, groups: int = GROUPS) -> dict[str, Any]:
    """
    Return the error of the known cells in groups of rising confidence.

    ``confidence`` is (S, D) (one per cell, as published) or (n, S, D). Cells are sorted by
    confidence and cut into ``groups`` groups of about equal size (ties kept together);
    for each, its confidence range, cells, mean absolute error |P - label| and Brier score.
    Also the rank correlation of confidence with error over all cells (negative when low
    confidence goes with high error).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    confidence = np.broadcast_to(np.asarray(confidence, dtype=np.float64), labels.shape)
    known = ~np.isnan(labels)
    error = np.abs(probabilities[known] - labels[known])
    trust = confidence[known]
    order = np.argsort(trust, kind='stable')
    rows = []
    for part in np.array_split(order, groups):
        if not part.size:
            continue
        rows.append({'confidence_low': float(trust[part].min()),
                     'confidence_high': float(trust[part].max()), 'cells': int(part.size),
                     'mean_abs_error': float(error[part].mean()),
                     'brier': float((error[part] ** 2).mean())})
    return {'groups': rows, 'rank_correlation': rank_correlation(trust, error)}


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Return Spearman's correlation (average ranks for ties; NaN when one side is constant)."""
    if x.size < 2:
        return float('nan')
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float('nan')
    return float(np.corrcoef(rx, ry)[0, 1])
