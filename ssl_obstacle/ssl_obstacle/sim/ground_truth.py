"""
Ground-truth label grids: what each sensor would see from each pose straight ahead.

The self-supervised labels of a frame at pose ``p`` are the readings the robot later takes
at ``p ⊕ (d, 0, 0)`` (DESIGN.md §5); they are sparse, since the robot rarely drives
exactly straight on. The simulator knows the world, so it can give every cell: place the
robot at ``p ⊕ (d, 0, 0)`` for every ``d`` and cast the sensors' rays (the very rays of
:mod:`.proximity`, noise-free). A pose where the body would overlap an obstacle or wall
counts as obstacle for every sensor: the robot cannot be there, and an obstacle is what
stops it. So does every pose beyond one on the straight path: driving ahead, the robot
stops at the first obstacle it meets and never stands behind it. Without that, the cells
behind a thin wall (behind the arena's walls, outside the world) would say "free", a
claim no robot driving ahead could ever check and the opposite of what its sensors report
at the wall. Evaluation uses these grids as its yardstick.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry2d import footprint_overlaps
from .proximity import (DEFAULT_HALF_ANGLE, DEFAULT_RAYS, ideal_distances, mounting_poses,
                        ray_offsets, SENSOR_HEIGHT)
from .robot import body_centres, BODY_OFFSET, BODY_RADIUS
from .world import World
from ..core.geometry import compose
from ..core.params import DEFAULT_DISTANCES
from ..core.thymio import PROXIMITY_MAX_RANGE, SENSOR_NAMES


def label_grid(world: World, pose: np.ndarray | Sequence[float],
               sensor_names: Sequence[str] = SENSOR_NAMES,
               distances: Sequence[float] = DEFAULT_DISTANCES,
               max_range: float = PROXIMITY_MAX_RANGE, *, rays: int = DEFAULT_RAYS,
               half_angle: float = DEFAULT_HALF_ANGLE, min_height: float = SENSOR_HEIGHT,
               body_radius: float = BODY_RADIUS,
               body_offset: float = BODY_OFFSET) -> np.ndarray:
    """
    Return the (S, D) float32 grid of 0/1: would sensor ``s`` see something at ``d``.

    ``pose`` is the frame's true pose in the world frame. A cell is 1 when the body
    overlaps anything at ``pose ⊕ (d', 0, 0)`` for some ``0 ≤ d' ≤ d`` (the path there is
    blocked), or else when the sensor's noise-free reading at ``d`` is within range
    (readings below the minimum range clamp to it, so any hit up to ``max_range``
    counts). One ray cast covers all distances × sensors × rays.
    """
    pose = np.asarray(pose, dtype=np.float64)
    distances = np.asarray(distances, dtype=np.float64)
    blocked = _path_blocked(world, pose, distances, body_radius, body_offset)
    poses = compose(pose, _straight_ahead(distances))
    seen = ideal_distances(world, poses, mounting_poses(sensor_names),
                           ray_offsets(rays, half_angle), max_range=max_range,
                           min_height=min_height) <= max_range
    return (seen | blocked[:, None]).T.astype(np.float32)


def _straight_ahead(distances: np.ndarray) -> np.ndarray:
    """Return the relative poses ``(d, 0, 0)``, one row per distance."""
    ahead = np.zeros((len(distances), 3))
    ahead[:, 0] = distances
    return ahead


def _path_blocked(world: World, pose: np.ndarray, distances: np.ndarray,
                  body_radius: float, body_offset: float,
                  step: float = 0.005) -> np.ndarray:
    """
    Return, per distance, whether the body hits something on the way from 0 to ``d``.

    The path is sampled every ``step`` (finer than any wall is thin: the body is a disc
    of radius ``body_radius``, so a 5 mm step cannot jump over an obstacle) as well as at
    the distances themselves, whatever their order or spacing.
    """
    if distances.size == 0:
        return np.zeros(0, dtype=bool)
    far = max(float(distances.max()), 0.0)
    samples = np.union1d(np.linspace(0.0, far, int(np.ceil(far / step)) + 1), distances)
    centres = body_centres(compose(pose, _straight_ahead(samples)), body_offset)
    hit = footprint_overlaps(world, centres, body_radius)
    first_hit = samples[np.argmax(hit)] if hit.any() else np.inf
    return distances >= first_hit
