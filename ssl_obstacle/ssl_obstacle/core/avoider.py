"""
Driving by sight: an obstacle-avoidance controller whose input is the learned predictions.

Pure logic, no ROS: the avoider node runs it on a robot, ``ssl-obstacle drive`` in the
built-in world. Inputs are the newest prediction grid (sensors × distances, P(obstacle)
that the sensor would see something if the robot drove that far ahead), given with
:meth:`Avoider.set_prediction`, and the latest front proximity readings (driver's
convention, as :class:`~.explorer.Explorer` takes them); the output is a twist.

From a grid it reads one *free distance* per sensor: how far the robot can drive before
the cell first reaches ``probability_threshold`` (the whole horizon when none does). With
``min_confidence`` > 0 and a prediction that carries its confidence
(:func:`~.confidence.prediction_confidence`: the cell's skill × |2P − 1|), a cell said
free with less confidence than that counts as a likely obstacle too: the robot is careful
where the model cannot tell, most of all in the side sensors' near cells, beyond the
camera's view (off by default; a prediction without confidence is taken at its word). With
``proximity_fusion_range`` > 0, a sensor that reads something closer than that right now
has a free distance of 0: the grid's first column is what the sensor measures (off by
default: the controller then drives by sight, the sensors only fire the reflex). The
front's free distance (the sensors within ``front_half_angle`` of the axis) sets a speed
limit that falls smoothly from ``cruise_speed`` at ``slow_distance`` to ``min_speed`` at
``stop_distance``; the two sides' free distances say where to turn. States:

- ``cruise``: drive at the speed limit; with ``side_steer_gain``, bend away from a side
  whose free distance is inside ``side_steer_distance`` (never toward a remembered side).
- ``avoid``: the front's free distance fell below ``turn_distance``, or a side's below
  ``side_turn_distance``: turn away from the more obstructed side at ``turn_speed`` along
  an arc, at ``turn_speed_fraction`` of the speed limit (on the spot once the front is
  closer than ``stop_distance``), until the front's free distance is back above
  ``clear_distance`` and the sides' above ``side_clear_distance``; then keep turning for
  ``overshoot_time``: the camera's view (±22° on the Thymio) clears before the side
  sensors' (±38°) do, so stopping the turn at the first clear view would swing the side of
  the body back into the obstacle. Arcs rather than spins keep the mean speed of the
  explorer, which loses its time backing off and turning on the spot.
  With ``reverse_blocked_turns``, if the side it turns toward becomes blocked itself while
  the other is freer, the turn reverses, once per avoidance.
- After an avoidance the side of the obstacle is remembered for ``memory_time`` seconds;
  a turn started within that time never goes back toward it (a memoryless rule loops back
  into the obstacle it just turned from).
- ``reflex_backoff`` / ``reflex_turn``: a proximity reading closer than
  ``reflex_threshold`` (Nava et al.'s explorer rule): reverse for ``reflex_backoff_time``,
  then turn away from the side that saw it for at least ``reflex_min_turn`` radians and
  until no sensor reads closer than ``reflex_clearance``. A safety net, counted each time
  it fires (:attr:`Avoider.counters` ``reflexes``): with good predictions it rarely does.
- ``blind``: no valid prediction within ``prediction_timeout`` of now (none yet, stale,
  or stamped that far ahead): decelerate to a stop at ``stop_deceleration`` and wait
  (counted once per episode as ``stale_stops``, the start's wait included). The reflex
  does not fire while blind: the robot is stopping there anyway. A grid (or, with
  ``min_confidence``, its confidence) of the wrong size or with NaN is refused
  (``bad_predictions``) and so never drives the robot: it cannot become "the newest
  prediction".

``unsure_predictions`` counts the predictions whose free distances ``min_confidence``
shortened.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Mapping, Sequence

import numpy as np

from .confidence import checked_confidence
from .params import DEFAULT_DISTANCES
from .thymio import nearest_reading, PROXIMITY_POSES, SENSOR_NAMES, sensor_side

#: Counters of :attr:`Avoider.counters`, in the order status messages list them.
COUNTER_NAMES: tuple[str, ...] = ('updates', 'predictions', 'bad_predictions', 'stale_stops',
                                  'avoidances', 'reflexes', 'blind_updates',
                                  'unsure_predictions')


@dataclass(frozen=True)
class AvoiderSettings:
    """Speeds (m/s, rad/s), free distances (m), angles (rad), times (s), a probability."""

    cruise_speed: float = 0.1
    #: A cell whose P(obstacle) reaches this counts as the first likely obstacle.
    probability_threshold: float = 0.5
    #: ... and so does a cell said free with a confidence below this (0: off).
    min_confidence: float = 0.0
    #: Sensors within this angle of the robot's axis make up "the front".
    front_half_angle: float = 0.4
    #: Front free distance below which the speed limit starts to fall.
    slow_distance: float = 0.2
    #: Front free distance at which it reaches ``min_speed`` (and turns are on the spot).
    stop_distance: float = 0.03
    min_speed: float = 0.02
    #: Front free distance below which the robot turns away.
    turn_distance: float = 0.1
    #: Free distance of a side sensor below which the robot turns away from that side.
    side_turn_distance: float = 0.05
    #: The front's free distance above this and the sides' above ``side_clear_distance``:
    #: the view is clear, the turn may end.
    clear_distance: float = 0.12
    side_clear_distance: float = 0.06
    turn_speed: float = 1.6
    #: While turning away, drive at this fraction of the speed limit (an arc, not a spin).
    turn_speed_fraction: float = 1.0
    #: While cruising, a side's free distance below this turns the robot gently away from
    #: it, at up to ``side_steer_gain`` × ``turn_speed`` (0: drive straight).
    side_steer_distance: float = 0.15
    side_steer_gain: float = 0.3
    #: Reverse a turn (once) when the side it turns toward is blocked and the other is
    #: freer. Right with exact grids; with learned ones, whose side cells are their weakest
    #: (beyond the camera's view), it turned the robot into more obstacles than it saved.
    reverse_blocked_turns: bool = False
    #: Seconds the turn goes on after the view cleared.
    overshoot_time: float = 0.4
    #: Seconds after an avoidance during which no turn goes back toward its side.
    memory_time: float = 4.0
    #: Predictions older than this (s, by their stamps) are not driven on.
    prediction_timeout: float = 0.3
    #: m/s² at which the robot slows to a stop without valid predictions.
    stop_deceleration: float = 0.5
    reflex_threshold: float = 0.07
    reflex_backoff_speed: float = 0.05
    reflex_backoff_time: float = 0.5
    reflex_turn_speed: float = 1.5
    reflex_min_turn: float = 0.6
    #: The reflex turn ends once no sensor reads closer than this (and the minimum is done).
    reflex_clearance: float = 0.1
    #: A proximity reading closer than this sets its sensor's free distance to 0: the
    #: grid's first column, measured (0: decide by the predictions alone).
    proximity_fusion_range: float = 0.0
    #: The reflex turn gives up after this angle even if a sensor still reads close.
    reflex_max_turn: float = 3.2

    def __post_init__(self) -> None:
        """Reject settings under which the behaviour cannot work, saying which and why."""
        if not 0.0 <= self.turn_speed_fraction <= 1.0:
            raise ValueError('turn_speed_fraction must be in [0, 1]')
        positive = ('cruise_speed', 'slow_distance', 'turn_speed', 'prediction_timeout',
                    'stop_deceleration', 'reflex_threshold', 'reflex_backoff_speed',
                    'reflex_turn_speed', 'reflex_max_turn')
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'{name} must be positive, got {value}')
        non_negative = ('front_half_angle', 'stop_distance', 'min_speed', 'turn_distance',
                        'side_turn_distance', 'clear_distance', 'side_clear_distance',
                        'overshoot_time', 'memory_time', 'side_steer_distance',
                        'side_steer_gain', 'reflex_backoff_time', 'reflex_min_turn',
                        'reflex_clearance', 'proximity_fusion_range')
        for name in non_negative:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name} must be non-negative, got {value}')
        if not 0.0 < self.probability_threshold < 1.0:
            raise ValueError('probability_threshold must be in (0, 1)')
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError('min_confidence must be in [0, 1)')
        if not self.stop_distance < self.slow_distance:
            raise ValueError('stop_distance must be below slow_distance')
        if self.min_speed > self.cruise_speed:
            raise ValueError('min_speed must not exceed cruise_speed')
        if self.clear_distance < self.turn_distance or \
                self.side_clear_distance < self.side_turn_distance:
            raise ValueError('clear_distance must be at least turn_distance and '
                             'side_clear_distance at least side_turn_distance (else a turn '
                             'would end inside its own trigger)')
        if self.reflex_max_turn < self.reflex_min_turn:
            raise ValueError('reflex_max_turn must be at least reflex_min_turn')


def sensor_angle(name: str) -> float:
    """Return the mounting yaw of a sensor (rad); unknown names guess from left/right."""
    pose = PROXIMITY_POSES.get(name)
    return float(pose[2]) if pose is not None else 0.66 * sensor_side(name)


def free_distances(probabilities: np.ndarray, distances: np.ndarray, threshold: float,
                   confidence: np.ndarray | None = None,
                   min_confidence: float = 0.0) -> np.ndarray:
    """
    Return per sensor the distance of its first cell with P ≥ ``threshold``.

    With ``confidence`` (S, D), a cell whose confidence is below ``min_confidence`` counts
    as such a cell whatever its P: unsure is not free. Sensors with no such cell get the
    horizon plus one step: free as far as it can tell. ``probabilities`` is (S, D) over
    increasing ``distances`` (D,).
    """
    likely = probabilities >= threshold
    if confidence is not None and min_confidence > 0.0:
        likely |= confidence < min_confidence
    step = float(distances[-1] - distances[-2]) if len(distances) > 1 else 0.01
    beyond = float(distances[-1]) + step
    first = np.argmax(likely, axis=1)
    return np.where(likely.any(axis=1), distances[first], beyond)


class Avoider:
    """The sight-driven state machine (see the module docstring)."""

    def __init__(self, settings: AvoiderSettings = AvoiderSettings(),
                 sensor_names: Sequence[str] = SENSOR_NAMES,
                 distances: Sequence[float] = DEFAULT_DISTANCES) -> None:
        """Drive by grids over ``sensor_names`` × ``distances`` (increasing, metres)."""
        self.settings = settings
        self.sensor_names = tuple(sensor_names)
        self.distances = np.asarray(distances, dtype=np.float64)
        if self.distances.ndim != 1 or len(self.distances) < 1 or \
                np.any(np.diff(self.distances) <= 0):
            raise ValueError('distances must be a non-empty increasing sequence')
        if not self.sensor_names:
            raise ValueError('sensor_names must name at least one sensor')
        self.shape = (len(self.sensor_names), len(self.distances))
        sides = np.array([sensor_side(n) for n in self.sensor_names])
        angles = np.array([sensor_angle(n) for n in self.sensor_names])
        self._front = np.abs(angles) <= settings.front_half_angle
        if not self._front.any():
            self._front = np.abs(angles) == np.abs(angles).min()
        self._left = sides > 0
        self._right = sides < 0
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        #: 'cruise', 'avoid', 'reflex_backoff', 'reflex_turn' or 'blind'.
        self.state = 'blind'
        #: The free distances (S,) of the newest valid prediction, None before one ...
        self.free: np.ndarray | None = None
        #: ... and with the latest proximity readings put in: what the decisions use.
        self.view: np.ndarray | None = None
        self._prediction_stamp: float | None = None
        self._turn_direction = 0.0
        self._flipped = False  # the current avoidance has reversed its turn once
        self._clear_since: float | None = None
        self._until = 0.0
        self._turn_started = 0.0
        self._avoided_side = 0.0
        self._avoided_until = -math.inf
        self._last_now: float | None = None
        self._last_linear = 0.0
        self._blind_counted = False  # the current blind episode is in stale_stops

    # ------------------------------------------------------------------ inputs
    def set_prediction(self, stamp: float, probabilities: np.ndarray | Sequence[float],
                       confidence: np.ndarray | Sequence[float] | None = None) -> bool:
        """
        Take a prediction stamped ``stamp`` (s); return whether it was accepted.

        ``probabilities`` is (S, D) or flat row-major S·D, ``confidence`` the same or
        None/empty (the model has none); it is read only with ``min_confidence`` > 0, so a
        broken one cannot stop a robot that does not use it. Wrongly sized, non-finite or
        out-of-range grids (or confidences, when read) and non-finite stamps are refused
        and counted; a prediction older than the newest accepted one is ignored (it arrived
        late: not an error).
        """
        grid, trust, stamp = self._checked(stamp, probabilities,
                                           confidence if self.uses_confidence else None)
        if grid is None:
            self.counters['bad_predictions'] += 1
            return False
        if self._prediction_stamp is not None and stamp < self._prediction_stamp and \
                self._prediction_stamp - stamp < 1.0:
            return False  # a late one; a jump back by more than a second is a new clock
        self.counters['predictions'] += 1
        self._prediction_stamp = stamp
        threshold, careful = self.settings.probability_threshold, self.settings.min_confidence
        self.free = free_distances(grid, self.distances, threshold, trust, careful)
        if trust is not None and \
                np.any(self.free < free_distances(grid, self.distances, threshold)):
            self.counters['unsure_predictions'] += 1
        return True

    @property
    def uses_confidence(self) -> bool:
        """Whether predictions' confidences are read (``min_confidence`` > 0)."""
        return self.settings.min_confidence > 0.0

    def _checked(self, stamp: Any, probabilities: Any, confidence: Any
                 ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """Return the (S, D) grid, confidence (None if absent) and stamp; grid None if bad."""
        try:
            grid = np.asarray(probabilities, dtype=np.float64)
            stamp = float(stamp)
            trust = checked_confidence(confidence, self.shape)
        except (TypeError, ValueError):
            return None, None, math.nan
        if grid.size != self.shape[0] * self.shape[1] or not math.isfinite(stamp) or \
                not np.all(np.isfinite(grid)) or grid.min() < 0.0 or grid.max() > 1.0:
            return None, None, stamp
        return grid.reshape(self.shape), trust, stamp

    def prediction_age(self, now: float) -> float:
        """
        Return seconds since the newest valid prediction's stamp (inf without one).

        Negative when the stamp is ahead of ``now``: the camera's and the controller's
        clocks differ a little between machines. Up to ``prediction_timeout`` either way
        counts as fresh.
        """
        if self._prediction_stamp is None:
            return math.inf
        return now - self._prediction_stamp

    # ----------------------------------------------------------------- control
    def update(self, now: float, ranges: Mapping[str, float]) -> tuple[float, float]:
        """Return the twist ``(linear, angular)`` to drive at time ``now`` (seconds)."""
        s = self.settings
        self.counters['updates'] += 1
        if self._last_now is not None and now < self._last_now - 1.0:
            self.reset()
        dt = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now
        closest, side = nearest_reading(ranges, s.reflex_threshold)
        self.view = self._fuse(ranges)
        if self.state in ('reflex_backoff', 'reflex_turn'):
            twist = self._reflex(now, ranges, closest, side)
        elif closest < s.reflex_threshold and self.state != 'blind':
            self._start_reflex(now, side)
            twist = self._reflex(now, ranges, closest, side)
        elif not abs(self.prediction_age(now)) <= s.prediction_timeout:
            twist = self._blind(dt)
        else:
            if self.state == 'blind':
                self.state = 'cruise'
                self._blind_counted = False
            twist = self._by_sight(now)
        self._last_linear = twist[0]
        return twist

    def reset(self) -> None:
        """Forget predictions and manoeuvres (time jumped back): stop until a new grid."""
        self.state = 'blind'
        self.free = None
        self.view = None
        self._prediction_stamp = None
        self._clear_since = None
        self._avoided_until = -math.inf
        self._last_now = None
        self._last_linear = 0.0
        self._blind_counted = False  # the wait for the new clock's first grid counts anew

    # --------------------------------------------------------------- by sight
    def _by_sight(self, now: float) -> tuple[float, float]:
        s = self.settings
        free = self.view
        front = float(free[self._front].min())
        left, right = self._side_free()
        speed = self._speed_limit(front)
        if self.state == 'cruise':
            if front >= s.turn_distance and min(left, right) >= s.side_turn_distance:
                return speed, self._drift(now, left, right)
            self._start_avoid(now, left, right)
        # avoid: turn until clear, then overshoot; turn the other way, once, if the side
        # it turns toward is itself blocked and the other one is freer.
        toward, away = (left, right) if self._turn_direction > 0 else (right, left)
        if s.reverse_blocked_turns and not self._flipped and \
                toward < s.side_turn_distance and away > toward:
            self._turn_direction = -self._turn_direction
            self._flipped = True
        if front >= s.clear_distance and min(left, right) >= s.side_clear_distance:
            if self._clear_since is None:
                self._clear_since = now
            if now - self._clear_since >= s.overshoot_time:
                self._end_avoid(now)
                return speed, 0.0
        else:
            self._clear_since = None
        linear = 0.0 if front < s.stop_distance else speed * s.turn_speed_fraction
        return linear, self._turn_direction * s.turn_speed

    def _drift(self, now: float, left: float, right: float) -> float:
        """
        Return a gentle turn away from a side obstacle the robot is about to pass.

        Proportional to how far the nearer side's free distance is inside
        ``side_steer_distance``; never toward the side avoided within ``memory_time``.
        """
        s = self.settings
        nearer = min(left, right)
        if s.side_steer_gain <= 0.0 or nearer >= s.side_steer_distance or left == right:
            return 0.0
        direction = -1.0 if left < right else 1.0
        if now < self._avoided_until and direction == self._avoided_side:
            return 0.0
        depth = (s.side_steer_distance - nearer) / s.side_steer_distance
        return direction * s.side_steer_gain * depth * s.turn_speed

    def _side_free(self) -> tuple[float, float]:
        """Return the left and right free distances (inf without a prediction or side)."""
        free = self.view if self.view is not None else self.free
        if free is None:
            return math.inf, math.inf
        left = float(free[self._left].min()) if self._left.any() else math.inf
        right = float(free[self._right].min()) if self._right.any() else math.inf
        return left, right

    def _fuse(self, ranges: Mapping[str, float]) -> np.ndarray | None:
        """
        Return the free distances with what the sensors see now put in: 0 where one reads.

        A grid's first column is "would the sensor see something 0 cm ahead", which the
        sensor measures itself; the camera sees ±22°, the side sensors ±38°, so for them
        the measurement is worth more than the prediction.
        """
        if self.free is None or self.settings.proximity_fusion_range <= 0.0:
            return self.free
        view = self.free.copy()
        for index, name in enumerate(self.sensor_names):
            try:
                value = float(ranges.get(name, -1.0))
            except (TypeError, ValueError):
                continue
            if math.isfinite(value) and 0.0 < value < self.settings.proximity_fusion_range:
                view[index] = 0.0
        return view

    def _speed_limit(self, front: float) -> float:
        s = self.settings
        fraction = (front - s.stop_distance) / (s.slow_distance - s.stop_distance)
        fraction = min(1.0, max(0.0, fraction))
        return s.min_speed + fraction * (s.cruise_speed - s.min_speed)

    def _start_avoid(self, now: float, left: float, right: float) -> None:
        self.state = 'avoid'
        self.counters['avoidances'] += 1
        self._clear_since = None
        # Obstacle more on the left (left freer distance smaller) -> turn right (-1).
        direction = -1.0 if left < right else 1.0 if right < left else 0.0
        self._turn_direction = self._allowed_direction(now, direction)
        self._flipped = False

    def _end_avoid(self, now: float) -> None:
        self.state = 'cruise'
        self._remember(now, -self._turn_direction)

    def _allowed_direction(self, now: float, wanted: float) -> float:
        """Never turn back toward the side avoided within ``memory_time``; break ties."""
        if now < self._avoided_until:
            return -self._avoided_side
        if wanted == 0.0:
            return self._turn_direction or 1.0  # keep the last turn's sense: no dithering
        return wanted

    def _remember(self, now: float, obstacle_side: float) -> None:
        self._avoided_side = obstacle_side
        self._avoided_until = now + self.settings.memory_time

    # ------------------------------------------------------------------ blind
    def _blind(self, dt: float) -> tuple[float, float]:
        if self.state != 'blind' or not self._blind_counted:
            self.state = 'blind'
            self.counters['stale_stops'] += 1
            self._blind_counted = True
            self._clear_since = None
        self.counters['blind_updates'] += 1
        linear = max(0.0, self._last_linear - self.settings.stop_deceleration * dt)
        return linear, 0.0

    # ------------------------------------------------------------------ reflex
    def _start_reflex(self, now: float, side: float) -> None:
        self.counters['reflexes'] += 1
        self.state = 'reflex_backoff'
        self._until = now + self.settings.reflex_backoff_time
        # What the sensors touch decides; the memory and the view only break a tie.
        if abs(side) > 1e-3:
            self._turn_direction = -math.copysign(1.0, side)
            return
        left, right = self._side_free()
        self._turn_direction = self._allowed_direction(
            now, -1.0 if left < right else 1.0 if right < left else 0.0)

    def _reflex(self, now: float, ranges: Mapping[str, float], closest: float,
                side: float) -> tuple[float, float]:
        s = self.settings
        if self.state == 'reflex_backoff':
            if now < self._until:
                return -s.reflex_backoff_speed, 0.0
            self.state = 'reflex_turn'
            self._turn_started = now
        turned = (now - self._turn_started) * s.reflex_turn_speed
        done = turned >= s.reflex_min_turn and closest >= s.reflex_clearance
        if done or turned >= s.reflex_max_turn:
            self.state = 'cruise' if self.free is not None else 'blind'
            self._remember(now, -self._turn_direction)
            return 0.0, 0.0
        return 0.0, self._turn_direction * s.reflex_turn_speed
