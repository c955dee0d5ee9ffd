"""
The Thymio's front IR proximity sensors, as its ROS 2 driver reports them.

Each sensor sits at its URDF mounting pose (:data:`~..core.thymio.PROXIMITY_POSES`) and
sees a narrow cone, modelled by a fan of rays (default 3 over ±0.15 rad, the driver's
``field_of_view`` of 0.3 rad); the reading is the nearest hit over the fan. Readings are in
metres, clamped up to the minimum range, and exactly ``-1.0`` when nothing lies within the
maximum range (the driver's convention, DESIGN.md §4). The sensors are about 3 cm above the
floor, so only obstacles taller than that reflect them.

The ideal (noise-free) reading and the ground-truth labels cast exactly the same rays
(:func:`sensor_rays`), so "the sensor would have seen it" means the same thing for both.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry2d import ray_cast
from .world import World
from ..core.thymio import (NOTHING_SEEN, PROXIMITY_MAX_RANGE, PROXIMITY_MIN_RANGE,
                           PROXIMITY_POSES, SENSOR_NAMES)

#: Height of the IR emitters above the floor: lower obstacles are not seen.
SENSOR_HEIGHT = 0.03
DEFAULT_RAYS = 3
DEFAULT_HALF_ANGLE = 0.15
DEFAULT_NOISE = 0.003


def mounting_poses(sensor_names: Sequence[str]) -> np.ndarray:
    """Return (S, 3) mounting poses on ``base_link``; unknown names raise ``ValueError``."""
    unknown = [name for name in sensor_names if name not in PROXIMITY_POSES]
    if unknown:
        raise ValueError(f'unknown proximity sensors {unknown}; known: {list(PROXIMITY_POSES)}')
    return np.array([PROXIMITY_POSES[name] for name in sensor_names], dtype=np.float64)


def ray_offsets(rays: int = DEFAULT_RAYS, half_angle: float = DEFAULT_HALF_ANGLE) -> np.ndarray:
    """Return the (K,) angles of a sensor's rays relative to its axis."""
    if rays < 1:
        raise ValueError('a sensor needs at least one ray')
    return np.linspace(-half_angle, half_angle, rays) if rays > 1 else np.zeros(1)


def sensor_rays(poses: np.ndarray, mounts: np.ndarray,
                offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Return the rays of every sensor at every robot pose, flattened for one ray cast.

    ``poses`` (P, 3) world frame, ``mounts`` (S, 3) from :func:`mounting_poses`,
    ``offsets`` (K,) from :func:`ray_offsets`. Returns origins (P·S·K, 2) and angles
    (P·S·K,), ordered pose-major then sensor then ray, so ``reshape(P, S, K)`` undoes it.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    cos, sin = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    sx = poses[:, 0, None] + cos * mounts[None, :, 0] - sin * mounts[None, :, 1]
    sy = poses[:, 1, None] + sin * mounts[None, :, 0] + cos * mounts[None, :, 1]
    yaw = poses[:, 2, None] + mounts[None, :, 2]
    k = offsets.shape[0]
    origins = np.stack((np.repeat(sx, k, axis=1), np.repeat(sy, k, axis=1)), axis=-1)
    angles = (yaw[:, :, None] + offsets[None, None, :]).reshape(poses.shape[0], -1)
    return origins.reshape(-1, 2), angles.reshape(-1)


def ideal_distances(world: World, poses: np.ndarray, mounts: np.ndarray,
                    offsets: np.ndarray, max_range: float = np.inf,
                    min_height: float = SENSOR_HEIGHT) -> np.ndarray:
    """Return (P, S): each sensor's nearest hit over its rays, ``inf`` beyond ``max_range``."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    origins, angles = sensor_rays(poses, mounts, offsets)
    hits = ray_cast(world, origins, angles, max_range=max_range, min_height=min_height)
    return hits.reshape(poses.shape[0], mounts.shape[0], offsets.shape[0]).min(axis=2)


def to_readings(distances: np.ndarray, min_range: float = PROXIMITY_MIN_RANGE,
                max_range: float = PROXIMITY_MAX_RANGE) -> np.ndarray:
    """Return distances in the driver's convention: clamped to ``min_range``, -1.0 beyond."""
    distances = np.asarray(distances, dtype=np.float64)
    readings = np.maximum(distances, min_range)
    readings[~(distances <= max_range)] = NOTHING_SEEN
    return readings


def ideal_readings(world: World, pose: np.ndarray,
                   sensor_names: Sequence[str] = SENSOR_NAMES, rays: int = DEFAULT_RAYS,
                   half_angle: float = DEFAULT_HALF_ANGLE,
                   min_height: float = SENSOR_HEIGHT) -> np.ndarray:
    """Return the (S,) noise-free readings at ``pose``, as the driver would publish them."""
    distances = ideal_distances(world, pose, mounting_poses(sensor_names),
                                ray_offsets(rays, half_angle), min_height=min_height)[0]
    return to_readings(distances)


class ProximitySensors:
    """The front sensors of one robot, with Gaussian range noise from a private rng."""

    def __init__(self, world: World, sensor_names: Sequence[str] = SENSOR_NAMES,
                 noise: float = DEFAULT_NOISE, rays: int = DEFAULT_RAYS,
                 half_angle: float = DEFAULT_HALF_ANGLE, min_height: float = SENSOR_HEIGHT,
                 rng: np.random.Generator | None = None) -> None:
        """Model ``sensor_names`` in ``world``; ``noise`` is the range std in metres (>= 0)."""
        if not (noise >= 0.0 and np.isfinite(noise)):
            raise ValueError(f'noise must be a finite, non-negative std, got {noise}')
        self.world = world
        self.sensor_names = tuple(sensor_names)
        self.noise = float(noise)
        self.min_height = float(min_height)
        self.mounts = mounting_poses(self.sensor_names)
        self.offsets = ray_offsets(rays, half_angle)
        self.rng = rng if rng is not None else np.random.default_rng()

    def distances(self, pose: np.ndarray) -> np.ndarray:
        """Return the (S,) exact distances to the nearest hit (``inf``: nothing at all)."""
        return ideal_distances(self.world, pose, self.mounts, self.offsets,
                               min_height=self.min_height)[0]

    def ideal(self, pose: np.ndarray) -> np.ndarray:
        """Return the (S,) noise-free readings (driver convention)."""
        return to_readings(self.distances(pose))

    def read(self, pose: np.ndarray) -> np.ndarray:
        """
        Return the (S,) noisy readings (driver convention).

        Noise is added to the true distance before the range limits apply, so an obstacle
        just beyond 0.14 m is sometimes seen and one just inside sometimes missed, as with
        the real sensor. One draw per sensor per call, hit or not, so the noise sequence
        does not depend on what the robot happens to see.
        """
        distances = self.distances(pose)
        if self.noise > 0.0:
            distances = distances + self.rng.normal(0.0, self.noise, distances.shape)
        return to_readings(distances)
