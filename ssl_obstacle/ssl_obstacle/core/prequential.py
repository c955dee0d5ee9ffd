"""
Prequential scores: each labeled frame predicted before it is trained on, over a window.

An online learner has no held-out set while the robot drives; scoring every frame with the
weights of the moment, *before* the frame joins the training data, is the honest figure it
can report (the model has never seen the frame). The window keeps the newest frames only,
so the score follows the model as it learns.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import auc_by_distance, roc_auc


class PrequentialWindow:
    """The last ``size`` scored frames (probabilities and observed labels), a ring buffer."""

    def __init__(self, size: int, num_sensors: int, num_distances: int) -> None:
        """Preallocate the ring, so memory stays flat however long the robot runs."""
        if size < 1:
            raise ValueError('the prequential window needs at least one frame')
        shape = (int(size), int(num_sensors), int(num_distances))
        self._probs = np.full(shape, np.nan, np.float32)
        self._labels = np.full(shape, np.nan, np.float32)
        self._next = 0
        self.count = 0
        #: Frames scored since the window was created or cleared, not only those it holds.
        self.scored = 0

    def add(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Record frames (n, S, D) or one frame (S, D), oldest first."""
        probabilities = np.asarray(probabilities, np.float32).reshape(-1,
                                                                      *self._probs.shape[1:])
        labels = np.asarray(labels, np.float32).reshape(probabilities.shape)
        size = len(self._probs)
        for start in range(0, len(probabilities), size):  # a batch larger than the ring
            chunk = slice(start, start + size)
            slots = (self._next + np.arange(len(probabilities[chunk]))) % size
            self._probs[slots] = probabilities[chunk]
            self._labels[slots] = labels[chunk]
            self._next = int((self._next + len(slots)) % size)
            self.count = min(size, self.count + len(slots))
        self.scored += len(probabilities)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return copies of the held (probabilities, labels), (count, S, D)."""
        if self.count < len(self._probs):
            return self._probs[:self.count].copy(), self._labels[:self.count].copy()
        order = np.roll(np.arange(len(self._probs)), -self._next)
        return self._probs[order], self._labels[order]

    def aucs(self) -> tuple[np.ndarray, float]:
        """
        Return the AUC per distance (sensors pooled) and over every known cell.

        NaN where the window lacks a class (no obstacle cell scored yet at a distance).
        """
        if not self.count:
            return np.full(self._probs.shape[2], np.nan), math.nan
        probs, labels = self.arrays()
        by_distance = np.asarray(auc_by_distance(probs, labels), dtype=np.float64)
        return by_distance, float(roc_auc(probs, labels))  # unknown (NaN) cells skipped

    def clear(self) -> None:
        """Forget every frame: they scored weights that are no longer current."""
        self._probs[:] = np.nan
        self._labels[:] = np.nan
        self._next = 0
        self.count = 0
        self.scored = 0
