"""
How well a controller drives in the built-in world: distance, speed, near-hits, collisions.

Computed from the simulator's events, so from what really happened, not from what the
controller believed: the true pose for the path (``ground_truth_odom``), the proximity
readings for near-hits. A *near-hit* is a rising edge of "some front sensor reads closer
than ``near_threshold``" (the explorer's 7 cm trigger: an IR-only robot has one at every
obstacle it meets; a robot that sees ahead should have almost none); which sensor read
closest at that moment is kept, since side sensors see what the camera does not. The area
visited (10 cm squares the robot's axle centre passed through) tells a robot that roams
from one that shuttles back and forth in a corner without meeting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Sequence

import numpy as np

from .simulator import SimEvent, Simulator

#: A front sensor reading closer than this (m) is a near-hit: the explorer's trigger.
NEAR_HIT_DISTANCE = 0.07
#: Time with some reading closer than this (m) is reported as ``time_within_5cm``.
CLOSE_DISTANCE = 0.05
#: Side (m) of the squares counted by ``area_visited_m2``: how much of the world was seen.
COVERAGE_CELL = 0.1


@dataclass
class DriveMetrics:
    """Accumulates a run's figures from its events (feed every event to :meth:`observe`)."""

    sensor_names: Sequence[str]
    proximity_period: float
    near_threshold: float = NEAR_HIT_DISTANCE
    close_threshold: float = CLOSE_DISTANCE
    distance_m: float = 0.0
    duration_s: float = 0.0
    near_hits: int = 0
    time_within_close: float = 0.0
    near_hits_by_sensor: dict[str, int] = field(default_factory=dict)
    #: (x, y, speed) of every true pose sample, world frame.
    path: list[tuple[float, float, float]] = field(default_factory=list)
    near_hit_points: list[tuple[float, float]] = field(default_factory=list)
    collision_points: list[tuple[float, float]] = field(default_factory=list)
    _readings: dict[str, float] = field(default_factory=dict)
    _readings_stamp: int | None = None
    _near: bool = False
    _first_stamp: int | None = None
    _last_stamp: int | None = None
    _collisions_seen: int = 0
    _cells: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Start every sensor's near-hit count at zero, so the split lists them all."""
        self.near_hits_by_sensor = dict.fromkeys(self.sensor_names, 0)

    def observe(self, event: SimEvent) -> None:
        """Take one simulator event into account."""
        if event.kind == 'ground_truth_odom':
            self._on_pose(event)
        elif event.kind == 'range':
            if event.stamp != self._readings_stamp:
                self._readings, self._readings_stamp = {}, event.stamp
            self._readings[event.sensor] = event.value
            if len(self._readings) == len(self.sensor_names):
                self._on_tick(self._readings)

    def after_step(self, sim: Simulator) -> None:
        """Record where new collisions happened (call after every simulator step)."""
        if sim.collisions > self._collisions_seen:
            self._collisions_seen = sim.collisions
            self.collision_points.append((float(sim.true_pose[0]), float(sim.true_pose[1])))

    def _on_pose(self, event: SimEvent) -> None:
        x, y = event.pose[0], event.pose[1]
        if self.path:
            self.distance_m += math.hypot(x - self.path[-1][0], y - self.path[-1][1])
        self.path.append((x, y, abs(event.twist[0])))
        self._cells.add((math.floor(x / COVERAGE_CELL), math.floor(y / COVERAGE_CELL)))
        if self._first_stamp is None:
            self._first_stamp = event.stamp
        self._last_stamp = event.stamp
        self.duration_s = (self._last_stamp - self._first_stamp) / 1e9

    def _on_tick(self, readings: dict[str, float]) -> None:
        seen = {name: value for name, value in readings.items()
                if math.isfinite(value) and value > 0.0}
        closest = min(seen.values(), default=math.inf)
        near = closest < self.near_threshold
        if near and not self._near:
            self.near_hits += 1
            sensor = min(seen, key=seen.__getitem__)
            self.near_hits_by_sensor[sensor] = self.near_hits_by_sensor.get(sensor, 0) + 1
            if self.path:
                self.near_hit_points.append(self.path[-1][:2])
        self._near = near
        if closest < self.close_threshold:
            self.time_within_close += self.proximity_period

    def summary(self, collisions: int) -> dict[str, Any]:
        """Return the report's driving figures (``collisions``: the simulator's count)."""
        mean_speed = self.distance_m / self.duration_s if self.duration_s > 0 else 0.0
        return {
            'distance_m': round(self.distance_m, 3),
            'mean_speed': round(mean_speed, 4),
            'near_hits': self.near_hits,
            'near_hits_per_m': (round(self.near_hits / self.distance_m, 4)
                                if self.distance_m > 0 else None),
            'near_hits_by_sensor': dict(self.near_hits_by_sensor),
            'collisions': int(collisions),
            'time_within_5cm': round(self.time_within_close, 2),
            'area_visited_m2': round(len(self._cells) * COVERAGE_CELL ** 2, 2),
        }

    def path_array(self) -> np.ndarray:
        """Return the path as an (N, 3) array of x, y, speed."""
        return np.asarray(self.path, dtype=np.float64).reshape(-1, 3)
