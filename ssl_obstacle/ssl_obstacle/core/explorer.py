"""
The data-collection behaviour of Nava et al.'s robot: cruise, and get away from obstacles.

Pure logic that runs unchanged on the real Thymio and in the simulator: its only input is
the latest front proximity readings in the driver's convention (metres; ``-1.0``, any
non-positive or non-finite value, or a missing sensor means nothing seen) and its output
is a twist. States:

- ``cruise``: drive straight at ``cruise_speed``. Now and then (exponential intervals of
  mean ``random_turn_interval``) bend the path by a random angle of up to
  ``random_turn_max`` along an arc, still driving and still watching the sensors, so the
  robot does not shuttle between the same two walls and visits the whole arena. No arc
  starts within ``random_turn_min_cruise`` seconds of an avoidance: the obstacle just
  avoided is then beside the robot, where the front sensors cannot see it.
- ``backoff``: a sensor saw something closer than ``obstacle_threshold``: reverse at
  ``backoff_speed`` for ``backoff_time``, but never farther than the robot has just come
  forward (the front sensors cannot see behind; the path just driven is known free).
- ``turn``: turn on the spot by a random angle in ``[min_turn, max_turn]`` away from the
  side that saw the obstacle (a random side when it was dead ahead), then cruise again.
  The body's front sweeps sideways as the robot turns, so when a sensor on the side it
  turns towards reads closer than ``turn_clearance`` it turns the other way instead.

Tuned in the simulator, where these defaults went without a single collision through 300
ten-minute runs (the three named worlds and random ones, 75 seeds each), 40 more with
8 mm sensor noise and eight one-hour runs.

The turn is timed (angle / turn_speed), not measured: the explorer needs no odometry.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Mapping

import numpy as np

from .thymio import nearest_reading, sensor_side


@dataclass(frozen=True)
class ExplorerSettings:
    """Speeds (m/s, rad/s), distances (m), angles (rad) and times (s) of the behaviour."""

    cruise_speed: float = 0.1
    obstacle_threshold: float = 0.07
    backoff_speed: float = 0.05
    backoff_time: float = 0.8
    turn_speed: float = 1.5
    min_turn: float = 0.5
    max_turn: float = 2.8
    random_turn_interval: float = 20.0
    random_turn_max: float = 0.8
    #: Turn rate of the random arcs while cruising (the robot keeps cruise_speed).
    random_turn_rate: float = 0.4
    #: Seconds of cruising after an avoidance before a random arc may start.
    random_turn_min_cruise: float = 3.0
    #: A sensor on the side the robot turns towards reading closer than this (m) makes it
    #: turn the other way: the body's front sweeps sideways as it turns on the spot.
    turn_clearance: float = 0.035

    def __post_init__(self) -> None:
        """Reject settings under which the behaviour cannot work."""
        for name in ('cruise_speed', 'obstacle_threshold', 'backoff_speed', 'turn_speed',
                     'random_turn_interval', 'random_turn_rate'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'{name} must be positive, got {value}')
        for name in ('backoff_time', 'min_turn', 'random_turn_max', 'random_turn_min_cruise',
                     'turn_clearance'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name} must be non-negative, got {value}')
        if not (self.max_turn >= self.min_turn and math.isfinite(self.max_turn)):
            raise ValueError('max_turn must be finite and at least min_turn')


class Explorer:
    """The cruise / backoff / turn state machine (see the module docstring)."""

    def __init__(self, settings: ExplorerSettings = ExplorerSettings(), seed: int = 0) -> None:
        """Behave as ``settings`` say; ``seed`` makes every random choice reproducible."""
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        #: 'cruise', 'backoff' or 'turn'.
        self.state = 'cruise'
        self._until = 0.0  # end of the current backoff or turn
        self._turn_rate = 0.0  # signed angular speed of the current turn
        self._turn_angle = 0.0  # magnitude of the current turn
        self._arc_rate = 0.0  # signed angular speed of the current random arc
        self._arc_until = -math.inf
        self._next_random_turn: float | None = None
        self._cruise_since: float | None = None
        self._last_now: float | None = None

    def reset(self) -> None:
        """Forget the current manoeuvre (e.g. after time jumped back): cruise afresh."""
        self.state = 'cruise'
        self._arc_until = -math.inf
        self._next_random_turn = None
        self._cruise_since = None
        self._last_now = None

    def _closest(self, ranges: Mapping[str, float]) -> tuple[float, float]:
        """Return the nearest valid reading and which side is more obstructed (+left)."""
        return nearest_reading(ranges, self.settings.obstacle_threshold)

    def update(self, now: float, ranges: Mapping[str, float]) -> tuple[float, float]:
        """
        Return the twist ``(linear, angular)`` to drive at time ``now`` (seconds).

        ``ranges`` maps sensor names to their latest readings; call at the proximity rate
        or faster. Readings below the driver's minimum range still count as close: for
        avoiding obstacles, "closer than measurable" is the most urgent reading of all.
        """
        s = self.settings
        if self._last_now is not None and now < self._last_now - 1.0:
            self.reset()
        self._last_now = now
        if self._cruise_since is None and self.state == 'cruise':
            self._cruise_since = now
        if self._next_random_turn is None:
            self._schedule_random_turn(now)

        if self.state == 'backoff' and now >= self._until:
            self._start_turn(now)
        if self.state == 'turn':
            if now >= self._until:
                self._start_cruise(now)
            elif self._turn_blocked(ranges):
                # The front is swinging into something on the side it turns towards (the
                # body sweeps as it turns): give up this turn, turn away from it instead.
                self._start_backoff(now, self._closest(ranges)[1])
        if self.state == 'cruise':
            closest, side = self._closest(ranges)
            if closest >= s.obstacle_threshold:
                return self._cruise(now)
            self._start_backoff(now, side)
        if self.state == 'backoff' and now >= self._until:
            self._start_turn(now)  # nothing to back off along: turn at once
        if self.state == 'backoff':
            return -s.backoff_speed, 0.0
        return 0.0, self._turn_rate

    def _turn_blocked(self, ranges: Mapping[str, float]) -> bool:
        """Return whether a sensor on the side the robot turns towards reads too close."""
        direction = math.copysign(1.0, self._turn_rate)
        for name, value in ranges.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if (math.isfinite(value) and 0.0 < value < self.settings.turn_clearance
                    and sensor_side(name) == direction):
                return True
        return False

    def _schedule_random_turn(self, now: float) -> None:
        self._next_random_turn = now + float(
            self.rng.exponential(self.settings.random_turn_interval))

    def _start_turn(self, now: float) -> None:
        self.state = 'turn'
        self._until = now + self._turn_angle / self.settings.turn_speed
        # The path behind is no longer behind once the robot has turned.
        self._cruise_since = None

    def _start_cruise(self, now: float) -> None:
        self.state = 'cruise'
        self._cruise_since = now
        self._arc_until = -math.inf

    def _cruise(self, now: float) -> tuple[float, float]:
        s = self.settings
        if now >= self._next_random_turn:
            if now - self._cruise_since < s.random_turn_min_cruise:
                # Just after an avoidance the obstacle is beside the robot, where the
                # sensors cannot see it: bending the path now could swing into it.
                self._schedule_random_turn(now)
            else:
                angle = float(self.rng.uniform(-s.random_turn_max, s.random_turn_max))
                self._arc_rate = math.copysign(s.random_turn_rate, angle)
                self._arc_until = now + abs(angle) / s.random_turn_rate
                self._schedule_random_turn(self._arc_until)
        if now < self._arc_until:
            return s.cruise_speed, self._arc_rate
        return s.cruise_speed, 0.0

    def _start_backoff(self, now: float, side: float) -> None:
        s = self.settings
        # Reverse at most as far as the robot came forward since it last turned.
        cruised = (now - self._cruise_since) * s.cruise_speed if (
            self._cruise_since is not None) else 0.0
        self.state = 'backoff'
        self._until = now + min(s.backoff_time, cruised / s.backoff_speed)
        self._turn_angle = float(self.rng.uniform(s.min_turn, s.max_turn))
        coin = 1.0 if self.rng.random() < 0.5 else -1.0
        # Away from the obstructed side: obstacle on the left (side > 0) -> turn right.
        direction = -math.copysign(1.0, side) if abs(side) > 1e-3 else coin
        self._turn_rate = direction * s.turn_speed
