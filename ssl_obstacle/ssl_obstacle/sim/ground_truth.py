"""
Ground-truth label grids: what each sensor would see from each pose straight ahead.

The self-supervised labels of a frame at pose ``p`` are the readings the robot later takes
at ``p ⊕ (d, 0, 0)`` (DESIGN.md §5); they are sparse, since the robot rarely drives
exactly straight on. The simulator knows the world, so it can give every cell: place the
robot at ``p ⊕ (d, 0, 0)`` for every ``d`` and cast the sensors' rays (the very rays of
:mod:`.proximity`, noise-free). A pose where the body would overlap an obstacle or wall
counts as obstacle for every sensor: the robot cannot be there, and an obstacle is what
stops it. Evaluation uses these grids as its yardstick.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry2d import footprint_overlaps
from .proximity import (DEFAULT_HALF_ANGLE, DEFAULT_RAYS, ideal_distances, mounting_poses,
                        ray_offsets, SENSOR_HEIGHT)
from .robot import BODY_OFFSET, BODY_RADIUS
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

    ``pose`` is the frame's true pose in the world frame. A cell is 1 when the body at
    ``pose ⊕ (d, 0, 0)`` overlaps anything, or else when the sensor's noise-free reading
    there is within range (readings below the minimum range clamp to it, so any hit up to
    ``max_range`` counts). One ray cast covers all distances × sensors × rays.
    """
    ahead = np.zeros((len(distances), 3))
    ahead[:, 0] = np.asarray(distances, dtype=np.float64)
    poses = compose(np.asarray(pose, dtype=np.float64), ahead)
    centres = poses[:, :2] + body_offset * np.stack((np.cos(poses[:, 2]),
                                                     np.sin(poses[:, 2])), axis=-1)
    blocked = footprint_overlaps(world, centres, body_radius)
    seen = ideal_distances(world, poses, mounting_poses(sensor_names),
                           ray_offsets(rays, half_angle), max_range=max_range,
                           min_height=min_height) <= max_range
    return (seen | blocked[:, None]).T.astype(np.float32)
