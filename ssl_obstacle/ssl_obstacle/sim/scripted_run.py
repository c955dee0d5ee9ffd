"""
A scripted run: sensor streams of a Thymio-like robot bouncing around a walled arena.

Not the full simulator (no camera rendering, no physics): a cheap, deterministic source of
the exact message streams a robot produces (odometry at 20 Hz, five proximity sensors at
10 Hz, camera frames at 30 Hz), used by tests, benchmarks and bag fixtures where what
matters is timing and geometry, not what the images show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..core.geometry import compose
from ..core.thymio import PROXIMITY_MAX_RANGE, PROXIMITY_MIN_RANGE, PROXIMITY_POSES

NS = 1_000_000_000

#: Sensor name → mounting pose (x, y, yaw) on the robot, from the ROS 2 Thymio driver's URDF.
THYMIO_PROXIMITY_POSES = PROXIMITY_POSES


@dataclass(frozen=True)
class Event:
    """One message of the run: ``kind`` is 'odom', 'frame' or 'range'."""

    stamp: int
    kind: str
    pose: tuple[float, float, float] | None = None  # odom
    sensor: str | None = None  # range
    value: float = -1.0  # range: metres, -1.0 = nothing seen
    image: np.ndarray | None = None  # frame


@dataclass(frozen=True)
class ArenaSpec:
    """A square arena of side ``size`` centred on the origin with round obstacles."""

    size: float = 2.0
    obstacles: tuple[tuple[float, float, float], ...] = (
        (0.4, 0.3, 0.12), (-0.5, -0.4, 0.15), (0.3, -0.6, 0.1), (-0.3, 0.6, 0.1))


def ray_distance(arena: ArenaSpec, origin: np.ndarray, yaw: float) -> float:
    """Distance along a ray to the first wall or obstacle (vectorised over obstacles)."""
    direction = np.array([np.cos(yaw), np.sin(yaw)])
    half = arena.size / 2
    best = np.inf
    for axis in (0, 1):
        if abs(direction[axis]) > 1e-12:
            for wall in (-half, half):
                t = (wall - origin[axis]) / direction[axis]
                if t > 0:
                    best = min(best, t)
    if arena.obstacles:
        obstacles = np.asarray(arena.obstacles)
        offset = origin[None, :] - obstacles[:, :2]
        b = offset @ direction
        c = np.einsum('ij,ij->i', offset, offset) - obstacles[:, 2] ** 2
        disc = b * b - c
        hit = disc >= 0
        t = -b[hit] - np.sqrt(disc[hit])
        t = t[t > 0]
        if t.size:
            best = min(best, float(t.min()))
    return float(best)


def proximity_reading(arena: ArenaSpec, pose: np.ndarray, sensor: str) -> float:
    """Return what the driver would publish for one sensor: metres, -1.0 for nothing seen."""
    mount = np.asarray(THYMIO_PROXIMITY_POSES[sensor])
    sensor_pose = compose(pose, mount)
    distance = ray_distance(arena, sensor_pose[:2], float(sensor_pose[2]))
    if distance > PROXIMITY_MAX_RANGE:
        return -1.0
    return float(max(distance, PROXIMITY_MIN_RANGE))


def generate_run(duration: float, seed: int = 0, *, camera_hz: float = 30.0,
                 proximity_hz: float = 10.0, odom_hz: float = 20.0, speed: float = 0.1,
                 image_shape: tuple[int, int] | None = (64, 80), distinct_images: int = 8,
                 arena: ArenaSpec | None = None, start_ns: int = 1_700_000_000 * NS,
                 ) -> Iterator[Event]:
    """
    Yield the run's events in stamp order.

    The robot drives straight and, when its centre sensors see something, turns on the spot
    by a random angle. Images cycle through ``distinct_images`` random pictures (their
    content is irrelevant to the labeler; generating a fresh 640×480 image per frame would
    dominate any benchmark). Deterministic for a given seed.
    """
    arena = arena or ArenaSpec()
    rng = np.random.default_rng(seed)
    images = None
    if image_shape is not None:
        images = [rng.integers(0, 256, size=(*image_shape, 3), dtype=np.uint8)
                  for _ in range(max(1, distinct_images))]
    dt = 0.005  # integration step of the scripted motion (200 Hz)
    periods = {'odom': int(round(NS / odom_hz)), 'frame': int(round(NS / camera_hz)),
               'range': int(round(NS / proximity_hz))}
    next_due = dict.fromkeys(periods, 0)
    pose = np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
    turn_left = 0.0  # radians still to turn on the spot
    frame_index = 0
    steps = int(duration / dt) + 1
    for step in range(steps):
        offset = int(round(step * dt * NS))
        stamp = start_ns + offset
        if offset >= next_due['odom']:
            next_due['odom'] += periods['odom']
            yield Event(stamp, 'odom', pose=(float(pose[0]), float(pose[1]), float(pose[2])))
        if offset >= next_due['frame']:
            next_due['frame'] += periods['frame']
            image = images[frame_index % len(images)] if images is not None else None
            frame_index += 1
            yield Event(stamp, 'frame', image=image)
        readings = None
        if offset >= next_due['range']:
            next_due['range'] += periods['range']
            readings = {name: proximity_reading(arena, pose, name)
                        for name in THYMIO_PROXIMITY_POSES}
            for name, value in readings.items():
                yield Event(stamp, 'range', sensor=name, value=value)
            blocked = any(0 < readings[n] < 0.07
                          for n in ('center_left', 'center', 'center_right'))
            if turn_left == 0.0 and blocked:
                turn_left = float(rng.uniform(0.6, 2.6)) * (1 if rng.random() < 0.5 else -1)
            elif turn_left == 0.0 and np.abs(pose[:2]).max() > arena.size / 2 - 0.06:
                # Grazing a wall the front sensors cannot see: turn to face the centre.
                to_centre = np.arctan2(-pose[1], -pose[0]) - pose[2]
                turn_left = float((to_centre + np.pi) % (2 * np.pi) - np.pi)
        if turn_left != 0.0:
            step_turn = np.sign(turn_left) * min(abs(turn_left), 1.5 * dt)
            pose[2] = (pose[2] + step_turn + np.pi) % (2 * np.pi) - np.pi
            turn_left -= step_turn
            if abs(turn_left) < 1e-9:
                turn_left = 0.0
        else:
            pose[0] += speed * dt * np.cos(pose[2])
            pose[1] += speed * dt * np.sin(pose[2])
