"""
The avoider node: the robot drives by sight, with the proximity sensors as a safety reflex.

``ssl/predictions`` (the learner's grids) and the front proximity sensors in, ``cmd_vel``
out; the behaviour itself is :class:`~ssl_obstacle.core.avoider.Avoider`. Proximity comes
as one ``proximity/<name>`` ``Range`` per sensor or, with ``proximity_source: laser``, as
the Thymio driver's ``proximity/laser`` scan, read per beam the way the labeler reads it.

A prediction is driven on only when its grid is this node's grid (``sensor_names`` and
``distances``); any other grid, a wrong size, NaN or probabilities outside [0, 1] (or, with
``min_confidence`` > 0, such a ``confidence``; an empty one is a model without it) are
refused, counted by reason and logged (rate-limited): a grid over other sensors or
distances would be read as the wrong rays, and a broken one must never move the robot.
Without a fresh prediction (``prediction_timeout``) the core stops the robot; so does the
node when the proximity sensors go silent for ``sensor_timeout``, and on ``close()``.

**Handover.** With ``switch_after_updates`` N > 0 the node first drives as the explorer
(:class:`~ssl_obstacle.core.explorer.Explorer`, settings ``explorer.*``), so that the
learner gets labeled frames, and hands over to the avoider, for good, once a
``ssl/learner_status`` reports at least N updates and a finite AUC of at least
``switch_min_auc``. Predictions are taken all along, so the avoider starts with a fresh one.

Times are the node clock's (``/clock`` with ``use_sim_time``) against the predictions'
header stamps, i.e. the camera's: the camera, the predictor and this node should share a
clock, as they do on one robot or in a simulation.

**Concurrency.** Every callback and both timers run on the node's one executor thread
(``run_nodes`` spins each node on its own single-threaded executor, as the explorer's), so
the avoider, the explorer and the node's counters have a single owner and need no lock.
"""

from __future__ import annotations

from dataclasses import fields
import math
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
import numpy as np
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import LaserScan, Range
from ssl_obstacle_msgs.msg import LearnerStatus, ObstaclePrediction

from .diagnostics import diagnostic_array
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, run_nodes, wall_timer
from ..core.avoider import Avoider, AvoiderSettings, COUNTER_NAMES
from ..core.explorer import Explorer, ExplorerSettings
from ..core.params import DEFAULT_DISTANCES
from ..core.thymio import LASER_ORDER, LASER_SHIFT, NOTHING_SEEN, SENSOR_NAMES
from ..io.conversions import BadInput, laser_saw_obstacle, sensor_order_for_laser

#: Drives as the explorer until the handover ...
EXPLORING = 'exploring'
#: ... then by the learner's predictions, for good.
BY_SIGHT = 'by_sight'

#: One line per :class:`AvoiderSettings` field, for ``ros2 param describe`` (from the core
#: module's docstring; test_avoider_node.py fails when a field has none).
AVOIDER_DESCRIPTIONS: dict[str, str] = {
    'cruise_speed': 'm/s: speed with a clear view ahead',
    'probability_threshold': 'P(obstacle) at which a cell counts as the first likely '
                             "obstacle along a sensor's ray (its free distance)",
    'min_confidence': "a cell said free with a confidence (the prediction's confidence "
                      'field) below this counts as a likely obstacle too: careful where the '
                      'model cannot tell; 0 = off, and predictions without confidence are '
                      'taken at their word',
    'front_half_angle': "rad: sensors within this angle of the robot's axis make up the front",
    'slow_distance': 'm: front free distance below which the speed limit starts to fall',
    'stop_distance': 'm: front free distance at which the speed limit reaches min_speed '
                     'and turns are on the spot',
    'min_speed': 'm/s: lowest speed limit (reached at stop_distance)',
    'turn_distance': 'm: front free distance below which the robot turns away',
    'side_turn_distance': "m: a side sensor's free distance below which the robot turns away "
                          'from that side',
    'clear_distance': "m: the front's free distance above this (and the sides' above "
                      'side_clear_distance): the view is clear, the turn may end',
    'side_clear_distance': "m: the sides' free distance above this (and the front's above "
                           'clear_distance): the view is clear, the turn may end',
    'turn_speed': 'rad/s: turn rate when avoiding by sight',
    'turn_speed_fraction': 'while turning away, drive at this fraction of the speed limit '
                           '(an arc, not a spin; on the spot inside stop_distance)',
    'side_steer_distance': "m: while cruising, a side's free distance below this steers the "
                           'robot gently away from that side',
    'side_steer_gain': 'the gentle steer reaches this fraction of turn_speed at a side free '
                       'distance of 0 (0: cruise straight)',
    'reverse_blocked_turns': 'reverse a turn (once) when the side it turns toward is blocked '
                             'and the other freer (good with exact grids, worse with learned '
                             'ones: see docs/architecture.md)',
    'overshoot_time': 's: the turn goes on this long after the view cleared (the side '
                      'sensors see wider than the camera)',
    'memory_time': 's: after an avoidance no turn goes back toward its side for this long',
    'prediction_timeout': 's, by stamps: older predictions are not driven on (the robot '
                          'stops)',
    'stop_deceleration': 'm/s^2: deceleration to a stop without a valid prediction',
    'reflex_threshold': 'm: a proximity reading closer than this fires the safety reflex',
    'reflex_backoff_speed': 'm/s: reverse speed of the reflex',
    'reflex_backoff_time': 's: how long the reflex reverses',
    'reflex_turn_speed': 'rad/s: turn rate of the reflex',
    'reflex_min_turn': 'rad: the reflex turns at least this far, away from the side that saw',
    'reflex_clearance': 'm: the reflex turn ends once no sensor reads closer than this',
    'proximity_fusion_range': "m: a proximity reading closer than this sets its sensor's "
                              "free distance to 0 (the grid's first column, measured); 0 = "
                              'decide by the predictions alone',
    'reflex_max_turn': 'rad: the reflex turn gives up after this angle even if a sensor '
                       'still reads close',
}

#: Prefix of the explorer's settings (``explorer.cruise_speed``): used before the handover.
EXPLORER_PREFIX = 'explorer.'

NODE_PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(SENSOR_NAMES), 'front proximity sensors (proximity/<name>), in '
                                         "grid row order: must be the predictions' sensors"),
    'distances': ([float(d) for d in DEFAULT_DISTANCES],
                  "metres ahead, one grid column each: must be the predictions' distances"),
    'proximity_source': ('range', "'range' (proximity/<name> Range) or 'laser' "
                                  "(the driver's proximity/laser)"),
    'laser_sensor_order': (list(LASER_ORDER),
                           'sensor of each proximity/laser beam, in beam order (right to left)'),
    'too_close_is_obstacle': (True, 'a Range of -inf (REP 117 too close) is an obstacle at '
                                    'min_range, not nothing seen: the most urgent reading'),
    'control_rate': (10.0, 'Hz: how often cmd_vel is computed and published'),
    'sensor_timeout': (0.5, 'seconds without proximity data before stopping'),
    'status_period': (1.0, 'seconds between /diagnostics messages'),
    'seed': (0, "seed of the explorer's random turns (before the handover)"),
    'switch_after_updates': (0, 'explore until ssl/learner_status reports this many updates '
                                '(and switch_min_auc), then drive by sight; 0 = by sight '
                                'from the start'),
    'switch_min_auc': (0.8, 'the handover also needs a finite learner AUC at least this'),
}

#: Best effort, keep last 5: only the newest prediction is driven on, so a lost one is
#: replaced by the next frame's (15-30 Hz) rather than resent behind it, as a reliable
#: subscription would, delaying every newer grid. Best effort matches the learner's reliable
#: depth-10 publisher; the depth covers a burst that arrives while the timer runs, so every
#: message is still seen and counted (a refused one too), at about 1 kB each.
PREDICTIONS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                             reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.VOLATILE)
#: The status decides the one-way handover and comes about once a second: reliable.
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.RELIABLE)

#: Metres a ``-inf`` Range reads as when the message declares no positive ``min_range``.
TOUCHING = 0.001


def avoider_parameter_spec() -> dict[str, tuple[Any, str]]:
    """Return ``{name: (default, description)}`` of every :class:`AvoiderSettings` field."""
    defaults = AvoiderSettings()
    return {spec.name: (_parameter_value(getattr(defaults, spec.name)),
                        AVOIDER_DESCRIPTIONS.get(spec.name, 'see core/avoider.py'))
            for spec in fields(AvoiderSettings)}


def explorer_parameter_spec() -> dict[str, tuple[Any, str]]:
    """Return the ``explorer.*`` parameters: the explore phase's settings."""
    defaults = ExplorerSettings()
    return {EXPLORER_PREFIX + spec.name: (
        _parameter_value(getattr(defaults, spec.name)),
        f"before the handover: the explorer's {spec.name} (see core/explorer.py)")
        for spec in fields(ExplorerSettings)}


def _parameter_value(value: Any) -> Any:
    """Declare floats as doubles even where a default happens to be whole."""
    return float(value) if isinstance(value, float) else value


def stamp_seconds(stamp: Any) -> float:
    """Return a ``builtin_interfaces/Time`` in seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def grid_mismatch(msg: ObstaclePrediction, sensor_names: tuple[str, ...],
                  distances: np.ndarray) -> tuple[str, str] | None:
    """
    Say how a prediction's grid differs from ours: ``(reason, detail)``, None if it does not.

    Distances travel as float32, so they are compared to within a micrometre.
    """
    names = tuple(msg.sensor_names)
    if names != sensor_names:
        return 'sensor_names', (f"its sensor_names {list(names)} are not this node's "
                                f'{list(sensor_names)}')
    theirs = np.asarray(msg.distances, dtype=np.float64)
    if theirs.shape != distances.shape or not np.allclose(theirs, distances, rtol=0.0,
                                                          atol=1e-6):
        return 'distances', (f'its {theirs.size} distances {_short(theirs)} are not this '
                             f"node's {distances.size} {_short(distances)}")
    return None


def grid_fault(probabilities: np.ndarray, cells: int,
               confidence: np.ndarray | None = None) -> tuple[str, str]:
    """Name why the core refused a grid: wrong size, NaN/inf, outside [0, 1], its confidence."""
    fault = _values_fault(probabilities, cells, 'probabilities')
    if fault is not None:
        return fault
    if confidence is not None and confidence.size:
        fault = _values_fault(confidence, cells, 'confidences')
        if fault is not None:
            return f'confidence_{fault[0]}', fault[1]
    return 'stamp', 'its stamp is not a finite time'


def _values_fault(values: np.ndarray, cells: int, what: str) -> tuple[str, str] | None:
    if values.size != cells:
        return 'size', f'{values.size} {what} for a grid of {cells} cells'
    if not np.all(np.isfinite(values)):
        return 'nan', f'{int(np.sum(~np.isfinite(values)))} NaN or infinite {what}'
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        return 'out_of_range', (f'{what} from {values.min():g} to {values.max():g}, '
                                'outside [0, 1]')
    return None


def _short(values: np.ndarray) -> str:
    if values.size <= 4:
        return '[' + ', '.join(f'{v:g}' for v in values) + ']'
    return f'[{values[0]:g}, {values[1]:g}, ..., {values[-1]:g}]'


def laser_ranges(msg: Any, beam_sensors: list[str]) -> dict[str, float]:
    """
    Read the Thymio driver's ``proximity/laser`` as per-sensor ranges (m, -1.0 = nothing).

    Whether a beam saw something is decided as the labeler decides it
    (:func:`~ssl_obstacle.io.conversions.laser_saw_obstacle`: intensities when present);
    a beam that saw has its driver offset (:data:`LASER_SHIFT`) taken off again. Raises
    :class:`BadInput` for a scan of the wrong size or with NaN.
    """
    hits = laser_saw_obstacle(msg, len(beam_sensors))
    ranges = np.asarray(msg.ranges, dtype=np.float64) - LASER_SHIFT
    return {name: max(float(value), TOUCHING) if hit else NOTHING_SEEN
            for name, hit, value in zip(beam_sensors, hits, ranges)}


class AvoiderNode(Node):
    """Drives by the learner's predictions (after exploring, if asked), IR as a reflex."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('avoider', **kwargs)
        settings = declare_parameters(self, avoider_parameter_spec())
        explorer_settings = declare_parameters(self, explorer_parameter_spec())
        values = declare_parameters(self, NODE_PARAMETERS)
        self.sensor_names = tuple(str(name) for name in values['sensor_names'])
        if len(set(self.sensor_names)) != len(self.sensor_names):
            raise ValueError(f'sensor_names must be distinct: {list(self.sensor_names)}')
        self.avoider = Avoider(AvoiderSettings(**settings), self.sensor_names,
                               [float(d) for d in values['distances']])
        self.explorer = Explorer(ExplorerSettings(**{
            name[len(EXPLORER_PREFIX):]: value for name, value in explorer_settings.items()}),
            seed=int(values['seed']))
        self._switch_after = int(values['switch_after_updates'])
        # The learner's AUC travels as float32: 0.9 arrives as 0.8999999762.
        self._switch_min_auc = float(np.float32(values['switch_min_auc']))
        self.mode = EXPLORING if self._switch_after > 0 else BY_SIGHT
        self._timeout_ns = int(float(values['sensor_timeout']) * 1e9)
        self._too_close_is_obstacle = bool(values['too_close_is_obstacle'])
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self._ranges: dict[str, float] = {}
        self._last_reading_ns: int | None = None
        self._stopped_for_silence = False
        self._blind = False
        self._learner: dict[str, Any] = {'updates': None, 'auc': math.nan}
        self._model_updates: int | None = None
        self.counters: dict[str, int] = {'bad_prediction_messages': 0, 'late_predictions': 0,
                                         'sensor_silent_stops': 0, 'bad_proximity_messages': 0}
        self.bad_predictions: dict[str, int] = {}
        self._bad_reported = 0
        self._cmd = self.create_publisher(Twist, 'cmd_vel', 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subscribe(str(values['proximity_source']),
                        [str(name) for name in values['laser_sensor_order']])
        self.create_timer(1.0 / float(values['control_rate']), self._control)
        wall_timer(self, float(values['status_period']), self._publish_status)
        self.get_logger().info(self._start_message())

    def _subscribe(self, source: str, laser_order: list[str]) -> None:
        if source == 'laser':
            indices = sensor_order_for_laser(self.sensor_names, laser_order)
            beams = [self.sensor_names[i] for i in indices]
            self.create_subscription(LaserScan, 'proximity/laser', self._on_laser(beams),
                                     qos_profile_sensor_data)
        elif source == 'range':
            for name in self.sensor_names:
                self.create_subscription(Range, f'proximity/{name}', self._on_range(name),
                                         qos_profile_sensor_data)
        else:
            raise ValueError(f"proximity_source must be 'range' or 'laser', not {source!r}")
        self.create_subscription(ObstaclePrediction, 'ssl/predictions', self._on_prediction,
                                 PREDICTIONS_QOS)
        self.create_subscription(LearnerStatus, 'ssl/learner_status', self._on_status,
                                 STATUS_QOS)

    def _start_message(self) -> str:
        grid = f'{len(self.sensor_names)} sensors x {len(self.avoider.distances)} distances'
        if self.mode == EXPLORING:
            return (f'exploring until the learner reports {self._switch_after} updates and an '
                    f'AUC of at least {self._switch_min_auc:.2f}, then driving by sight on '
                    f'{grid}')
        return (f'driving by sight on {grid} at up to '
                f'{self.avoider.settings.cruise_speed:g} m/s')

    # ------------------------------------------------------------------ inputs
    def _on_range(self, name: str) -> Callable[[Range], None]:
        def callback(msg: Range) -> None:
            value = float(msg.range)
            if math.isnan(value):
                value = NOTHING_SEEN
            elif value == -math.inf and self._too_close_is_obstacle:
                value = float(msg.min_range) if msg.min_range > 0.0 else TOUCHING
            self._ranges[name] = value
            self._last_reading_ns = self.get_clock().now().nanoseconds
        return callback

    def _on_laser(self, beams: list[str]) -> Callable[[LaserScan], None]:
        def callback(msg: LaserScan) -> None:
            try:
                self._ranges.update(laser_ranges(msg, beams))
            except BadInput as error:
                self.counters['bad_proximity_messages'] += 1
                self._log_bad(f'laser:{error.kind}',
                              f'ignored a proximity/laser scan ({error.kind}): {error.detail}')
                return
            self._last_reading_ns = self.get_clock().now().nanoseconds
        return callback

    def _on_prediction(self, msg: ObstaclePrediction) -> None:
        mismatch = grid_mismatch(msg, self.sensor_names, self.avoider.distances)
        if mismatch is not None:
            self._refuse(*mismatch, hint="set sensor_names and distances to the learner's")
            return
        probabilities = np.asarray(msg.probabilities, dtype=np.float64)
        confidence = np.asarray(msg.confidence, dtype=np.float64)
        bad_before = self.avoider.counters['bad_predictions']
        if self.avoider.set_prediction(stamp_seconds(msg.header.stamp), probabilities,
                                       confidence):
            self._model_updates = int(msg.model_updates)
        elif self.avoider.counters['bad_predictions'] > bad_before:
            read = confidence if self.avoider.uses_confidence else None
            self._refuse(*grid_fault(probabilities, self.avoider.shape[0] *
                                     self.avoider.shape[1], read),
                         hint='the learner is broken?')
        else:
            self.counters['late_predictions'] += 1  # older than the newest: not an error

    def _refuse(self, reason: str, detail: str, hint: str) -> None:
        self.counters['bad_prediction_messages'] += 1
        self.bad_predictions[reason] = self.bad_predictions.get(reason, 0) + 1
        self._log_bad(f'prediction:{reason}',
                      f'refused a prediction ({reason}): {detail}; it does not drive the '
                      f'robot ({hint})')

    def _on_status(self, msg: LearnerStatus) -> None:
        updates, auc = int(msg.updates), float(msg.auc)
        self._learner = {'updates': updates, 'auc': auc}
        if self.mode == EXPLORING and updates >= self._switch_after and \
                math.isfinite(auc) and auc >= self._switch_min_auc:
            self.mode = BY_SIGHT
            self.get_logger().info(
                f'handing over from exploring to driving by sight: the learner reports '
                f'{updates} updates (>= {self._switch_after}) and AUC {auc:.3f} '
                f'(>= {self._switch_min_auc:.2f})')

    # ------------------------------------------------------------------ control
    def _control(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if self._sensors_silent(now_ns):
            self._publish(0.0, 0.0)
            return
        now = now_ns / 1e9
        ranges = dict(self._ranges)
        if self.mode == EXPLORING:
            self._publish(*self.explorer.update(now, ranges))
            return
        self._publish(*self.avoider.update(now, ranges))
        self._report_blindness(now)

    def _sensors_silent(self, now_ns: int) -> bool:
        """Tell whether to stop for lack of proximity data; log and count each episode."""
        silent = self._last_reading_ns is None or now_ns - self._last_reading_ns > \
            self._timeout_ns
        if silent and not self._stopped_for_silence and self._last_reading_ns is not None:
            self.counters['sensor_silent_stops'] += 1
            self.get_logger().warning('proximity sensors silent: stopping')
        self._stopped_for_silence = silent and self._last_reading_ns is not None
        return silent

    def _report_blindness(self, now: float) -> None:
        """Log once per episode that the robot stopped for want of a fresh prediction."""
        blind = self.avoider.state == 'blind'
        if blind and not self._blind:
            self._log_bad('blind', f'{self._prediction_problem(now)}: stopping until a fresh '
                                   'prediction arrives')
        elif self._blind and not blind:
            self.get_logger().info('fresh predictions again: driving by sight')
        self._blind = blind

    def _prediction_problem(self, now: float) -> str:
        age = self.avoider.prediction_age(now)
        timeout = self.avoider.settings.prediction_timeout
        if math.isinf(age):
            return 'no prediction yet'
        if age < 0.0:
            return (f'the newest prediction is stamped {-age:.2f} s in the future (camera and '
                    'node clocks differ?)')
        return f'the newest prediction is {age:.2f} s old (prediction_timeout {timeout:g} s)'

    def _publish(self, linear: float, angular: float) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(linear), float(angular)
        self._cmd.publish(msg)

    # ------------------------------------------------------------------ status
    def status_values(self) -> dict[str, Any]:
        """Every counter and state of the node, as reported on ``/diagnostics``."""
        now = self.get_clock().now().nanoseconds / 1e9
        age = self.avoider.prediction_age(now)
        active = self.explorer.state if self.mode == EXPLORING else self.avoider.state
        values: dict[str, Any] = {
            'mode': self.mode, 'state': active, 'avoider_state': self.avoider.state,
            'explorer_state': self.explorer.state,
            'prediction_age_s': 'none' if math.isinf(age) else round(age, 3),
            **{name: self.avoider.counters[name] for name in COUNTER_NAMES},
            **self.counters,
            'model_updates': 'none' if self._model_updates is None else self._model_updates,
            'learner_updates': 'none' if self._learner['updates'] is None
            else self._learner['updates'],
            'learner_auc': self._learner['auc'],
            'switch_after_updates': self._switch_after, 'switch_min_auc': self._switch_min_auc,
        }
        for reason, count in sorted(self.bad_predictions.items()):
            values[f'bad_prediction_{reason}'] = count
        return values

    def status_problems(self, values: dict[str, Any]) -> list[str]:
        """Name what keeps the robot from driving well right now (WARN when any)."""
        problems = []
        now_ns = self.get_clock().now().nanoseconds
        if self._last_reading_ns is None:
            problems.append('no proximity reading yet: stopped')
        elif now_ns - self._last_reading_ns > self._timeout_ns:
            problems.append('proximity sensors silent: stopped')
        if self.mode == BY_SIGHT and self.avoider.state == 'blind':
            problems.append(f'{self._prediction_problem(now_ns / 1e9)}: stopped')
        new_bad = values['bad_prediction_messages'] - self._bad_reported
        if new_bad > 0:
            reasons = ', '.join(sorted(self.bad_predictions))
            problems.append(f'{new_bad} prediction(s) refused since the last status '
                            f'({reasons})')
        return problems

    def _publish_status(self) -> None:
        values = self.status_values()
        problems = self.status_problems(values)
        self._bad_reported = values['bad_prediction_messages']
        summary = f'{self.mode}, {values["state"]}'
        if self.mode == EXPLORING:
            summary += (f'; by sight after {self._switch_after} updates with AUC >= '
                        f'{self._switch_min_auc:.2f} (learner: {values["learner_updates"]} '
                        f'updates, AUC {values["learner_auc"]:.3f})')
        self._diagnostics.publish(diagnostic_array(self, 'avoiding obstacles', values,
                                                   problems, summary))

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the robot before going away."""
        self._publish(0.0, 0.0)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle avoider``."""
    run_nodes([AvoiderNode], args)


if __name__ == '__main__':
    main()
