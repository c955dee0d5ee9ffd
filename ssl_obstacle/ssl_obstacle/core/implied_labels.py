"""
Labels implied by a seen obstacle: the cells the robot could only reach by driving through it.

The label rule (DESIGN.md §5) only knows a cell ``(s, d)`` when the robot later stands at
``p ⊕ (d, 0, 0)``. Beyond an obstacle straight ahead it never does: it stops or turns
first. Those cells stay unknown, so a model trained on observed cells alone learns nothing
about them and, in practice, calls them free: a pillar filling the view is predicted an
obstacle at 0–15 cm and free at 20–30 cm. Yet the robot's own observations settle them.
When a sensor whose whole cone lies inside the body's path (on a Thymio, the centre one)
saw an obstacle from ``p ⊕ (d', 0, 0)``, the obstacle is at most ``max_range`` from that
sensor, within the corridor the body sweeps; driving on, the body hits it no later than
``d' + gap`` (the gap follows from the geometry alone), and an obstacle is what a blocked
robot's sensors report. Every cell from there on is therefore an obstacle for every sensor.

:func:`complete_blocked` fills such cells, where they are unknown, for *training* only:
what was observed is never changed, and prequential scores, datasets and ``evaluate``
keep the observed labels. The same function serves the online learner and offline
``train``, so both learn from the same targets.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .thymio import (BODY_OFFSET, BODY_RADIUS, PROXIMITY_FIELD_OF_VIEW, PROXIMITY_MAX_RANGE,
                     PROXIMITY_POSES)

#: Seen by at least this share of a cell's readings (the label is that share) to count.
SEEN_THRESHOLD = 0.5


def blocking_gaps(sensor_names: Sequence[str], *, max_range: float = PROXIMITY_MAX_RANGE,
                  field_of_view: float = PROXIMITY_FIELD_OF_VIEW,
                  body_radius: float = BODY_RADIUS, body_offset: float = BODY_OFFSET,
                  samples: int = 57) -> np.ndarray:
    """
    Return, per sensor, the farthest the robot can drive past a sighting before it collides.

    NaN for a sensor that can see an obstacle outside the body's path (the robot may drive
    past it) or whose mounting is unknown. A sighting can lie anywhere in the cone up to
    ``max_range``; the gap is the worst case over a fine grid of ranges and the cone's
    edges and axis, so it is never shorter than the truth by more than the grid step.
    """
    ranges = np.linspace(0.0, max_range, samples)
    angles = np.array([-0.5, 0.0, 0.5]) * field_of_view
    gaps = np.full(len(sensor_names), np.nan)
    for index, name in enumerate(sensor_names):
        if name not in PROXIMITY_POSES:
            continue
        x, y, yaw = PROXIMITY_POSES[name]
        along = x + ranges[:, None] * np.cos(yaw + angles[None, :])
        across = y + ranges[:, None] * np.sin(yaw + angles[None, :])
        if np.abs(across).max() >= body_radius:
            continue
        # The body disc, centred body_offset ahead of a pose d further on, first touches
        # the point (along, across) at d = along - body_offset - sqrt(R² - across²).
        touch = along - body_offset - np.sqrt(body_radius ** 2 - across ** 2)
        gaps[index] = max(0.0, float(touch.max()))
    return gaps


def complete_blocked(labels: np.ndarray, distances: Sequence[float],
                     gaps: np.ndarray) -> np.ndarray:
    """
    Return ``labels`` (S, D) or (N, S, D) with the unknown cells a sighting implies set to 1.

    For each frame, the nearest implied collision is ``min(d' + gap[s])`` over the cells
    ``(s, d')`` of path-covering sensors labeled at least :data:`SEEN_THRESHOLD`; every
    unknown cell at or beyond it, of every sensor, becomes 1. Known cells are kept as they
    are (the robot got there after all: the observation wins). Returns a new array.
    """
    labels = np.asarray(labels, dtype=np.float32)
    single = labels.ndim == 2
    batch = labels[None] if single else labels
    out = batch.copy()
    usable = np.flatnonzero(np.isfinite(np.asarray(gaps, dtype=np.float64)))
    if usable.size:
        distances = np.asarray(distances, dtype=np.float64)
        seen = np.nan_to_num(batch[:, usable, :], nan=0.0) >= SEEN_THRESHOLD  # (N, S', D)
        reach = distances[None, :] + np.asarray(gaps, dtype=np.float64)[usable, None]
        collide = np.where(seen, reach[None], np.inf).min(axis=(1, 2))  # (N,)
        # Cells within a rounding error of the collision count as reached.
        implied = distances[None, :] >= collide[:, None] - 1e-6  # (N, D)
        fill = implied[:, None, :] & np.isnan(out)
        out[fill] = 1.0
    return out[0] if single else out


class BlockedCompletion:
    """:func:`complete_blocked` bound to one grid, or a no-op where no sensor qualifies."""

    def __init__(self, sensor_names: Sequence[str], distances: Sequence[float]) -> None:
        """Work out the gaps once for this grid."""
        self.sensor_names = tuple(sensor_names)
        self.distances = np.asarray(distances, dtype=np.float64)
        self.gaps = blocking_gaps(self.sensor_names)

    @property
    def active(self) -> bool:
        """Whether any sensor's sightings imply blocked cells."""
        return bool(np.isfinite(self.gaps).any())

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Return the labels completed (a copy)."""
        if not self.active:
            return np.array(labels, dtype=np.float32, copy=True)
        return complete_blocked(labels, self.distances, self.gaps)

    def describe(self) -> str:
        """Return a one-line summary for logs, e.g. ``center: +0.132 m``."""
        parts = [f'{name}: +{gap:.3f} m' for name, gap in zip(self.sensor_names, self.gaps)
                 if math.isfinite(gap)]
        return ', '.join(parts) if parts else 'no sensor covers the path'

    def explain(self) -> str:
        """
        Return what implied blocking does with this grid, in words, for a newcomer's log.

        :meth:`describe`'s ``center: +0.132 m`` is exact but means nothing to someone who
        has not read this module; this says which sightings count, what the number is and
        which cells it turns into obstacles, e.g. for a Thymio: *"when sensor center sees
        an obstacle from a pose d metres ahead, the robot's body would hit it by d + 0.132
        m at the latest, so every unlabeled cell from there on, of every sensor, is trained
        as an obstacle (the robot never gets there to label it)"*.
        """
        found = [(name, gap) for name, gap in zip(self.sensor_names, self.gaps)
                 if math.isfinite(gap)]
        if not found:
            return ("off for this grid: no sensor sees only what lies in the robot's path, "
                    'so a sighting implies nothing about the cells behind it')
        sensors = ' or '.join(f'sensor {name}' for name, _ in found)
        reach = ', '.join(f'd + {gap:.3f} m ({name})' for name, gap in found) \
            if len(found) > 1 else f'd + {found[0][1]:.3f} m'
        return (f"when {sensors} sees an obstacle from a pose d metres ahead, the robot's "
                f'body would hit it by {reach} at the latest, so every unlabeled cell from '
                'there on, of every sensor, is trained as an obstacle (the robot never gets '
                'there to label it); observed labels are kept as they are')
