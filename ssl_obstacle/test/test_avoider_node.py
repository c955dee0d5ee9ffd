"""The avoider node over real DDS: predictions and proximity in, cmd_vel and diagnostics out."""

from __future__ import annotations

from dataclasses import fields
import math
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import LaserScan, Range
from ssl_obstacle.core.avoider import AvoiderSettings, COUNTER_NAMES
from ssl_obstacle.core.explorer import ExplorerSettings
from ssl_obstacle.core.params import DEFAULT_DISTANCES
from ssl_obstacle.core.thymio import LASER_ORDER, NOTHING_SEEN, SENSOR_NAMES
from ssl_obstacle.io.conversions import BadInput
from ssl_obstacle.io.learner_messages import prediction_msg
from ssl_obstacle.io.messages import laser_msg, range_msg
from ssl_obstacle.nodes.avoider_node import (AVOIDER_DESCRIPTIONS, AvoiderNode, BY_SIGHT,
                                             EXPLORING, grid_mismatch, laser_ranges)
from ssl_obstacle_msgs.msg import LearnerStatus, ObstaclePrediction
from std_msgs.msg import Header

#: Generous: the machine running the tests may be busy with simulations beside them.
TIMEOUT = 30.0
SETTINGS = AvoiderSettings()
EXPLORER = ExplorerSettings()
GRID_SHAPE = (len(SENSOR_NAMES), len(DEFAULT_DISTANCES))
FREE = np.zeros(GRID_SHAPE)
#: The three centre sensors would see something from 5 cm on: an obstacle dead ahead.
BLOCKED_AHEAD = FREE.copy()
BLOCKED_AHEAD[1:4, 5:] = 1.0


# ------------------------------------------------------------------ without DDS
def test_every_avoider_setting_has_a_description():
    names = {spec.name for spec in fields(AvoiderSettings)}
    missing = names - set(AVOIDER_DESCRIPTIONS)
    assert not missing, f'AvoiderSettings fields without a description: {sorted(missing)}'
    stale = set(AVOIDER_DESCRIPTIONS) - names
    assert not stale, f'descriptions of fields AvoiderSettings no longer has: {sorted(stale)}'
    for name, text in AVOIDER_DESCRIPTIONS.items():
        assert len(text) > 15 and 'see core' not in text, name


def test_the_node_declares_every_setting_with_its_default_and_description():
    with ros_context() as context:
        node = AvoiderNode(context=context)
        try:
            for spec in fields(AvoiderSettings):
                parameter = node.get_parameter(spec.name)
                assert parameter.value == getattr(SETTINGS, spec.name), spec.name
                descriptor = node.describe_parameter(spec.name)
                assert descriptor.description == AVOIDER_DESCRIPTIONS[spec.name]
                assert descriptor.read_only
            for spec in fields(ExplorerSettings):
                name = f'explorer.{spec.name}'
                assert node.get_parameter(name).value == getattr(EXPLORER, spec.name), name
            assert node.get_parameter('switch_after_updates').value == 0
            assert node.get_parameter('switch_min_auc').value == pytest.approx(0.8)
            assert node.mode == BY_SIGHT
        finally:
            node.close()
            node.destroy_node()


def test_grid_mismatch_names_what_differs():
    msg = prediction_msg(Header(), SENSOR_NAMES, DEFAULT_DISTANCES, FREE, 1)
    names, distances = tuple(SENSOR_NAMES), np.asarray(DEFAULT_DISTANCES)
    assert grid_mismatch(msg, names, distances) is None  # float32 distances still match
    msg.sensor_names = list(reversed(SENSOR_NAMES))
    assert grid_mismatch(msg, names, distances)[0] == 'sensor_names'
    msg = prediction_msg(Header(), SENSOR_NAMES, DEFAULT_DISTANCES[:-1], FREE[:, :-1], 1)
    reason, detail = grid_mismatch(msg, names, distances)
    assert reason == 'distances' and '30 distances' in detail and '31' in detail


def test_the_drivers_laser_reads_as_per_sensor_ranges():
    # Beams run right to left; intensities say what was seen, the offset comes off again.
    values = {'right': -1.0, 'center_right': 0.05, 'center': 0.03, 'center_left': -1.0,
              'left': 0.12}
    msg = laser_msg(0, [values[name] for name in LASER_ORDER])
    ranges = laser_ranges(msg, list(LASER_ORDER))
    assert ranges == pytest.approx(values, abs=1e-6)
    with pytest.raises(BadInput):
        laser_ranges(msg, list(LASER_ORDER[:3]))


# ------------------------------------------------------------------ over DDS
class Robot(Node):
    """Plays the robot's driver and the learner; records the avoider's commands and status."""

    def __init__(self, context, laser: bool = False) -> None:
        super().__init__('fake_robot', context=context)
        #: Sent every tick while not None (metres, -1.0 nothing seen).
        self.ranges: dict[str, float] | None = dict.fromkeys(SENSOR_NAMES, NOTHING_SEEN)
        #: Sent every tick, stamped now, while not None.
        self.grid: np.ndarray | None = None
        #: Sent with the grid (None: a model without confidence).
        self.confidence: np.ndarray | None = None
        self.sensor_names = list(SENSOR_NAMES)
        self.distances = list(DEFAULT_DISTANCES)
        #: (updates, auc) of a LearnerStatus sent every tick, while not None.
        self.status: tuple[int, float] | None = None
        self.laser = laser
        self.publishers_ = [self.create_publisher(Range, f'proximity/{name}', 10)
                            for name in SENSOR_NAMES]
        self.laser_publisher = self.create_publisher(LaserScan, 'proximity/laser', 10)
        # As the learner publishes them: reliable, depth 10.
        self.predictions = self.create_publisher(ObstaclePrediction, 'ssl/predictions', 10)
        self.status_publisher = self.create_publisher(LearnerStatus, 'ssl/learner_status', 10)
        self.twists: list[tuple[float, float]] = []
        self.create_subscription(Twist, 'cmd_vel', self._on_twist, 10)
        self.diagnostics: list[DiagnosticStatus] = []
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.create_timer(0.05, self._tick)

    def _on_twist(self, msg: Twist) -> None:
        self.twists.append((msg.linear.x, msg.angular.z))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics += [s for s in msg.status if 'avoider' in s.name]

    def _tick(self) -> None:
        now = self.get_clock().now()
        stamp = now.nanoseconds
        ranges, grid, status = self.ranges, self.grid, self.status
        if ranges is not None:
            if self.laser:
                self.laser_publisher.publish(laser_msg(stamp, [ranges[n] for n in LASER_ORDER]))
            else:
                for name, publisher in zip(SENSOR_NAMES, self.publishers_):
                    publisher.publish(range_msg(name, stamp, ranges[name]))
        if grid is not None:
            self.predictions.publish(prediction_msg(
                Header(stamp=now.to_msg(), frame_id='camera'), self.sensor_names,
                self.distances, grid, 42, self.confidence))
        if status is not None:
            self.status_publisher.publish(LearnerStatus(updates=status[0], auc=status[1]))

    def all_publishers(self) -> list:
        # In laser mode nothing subscribes to the Range topics: waiting for them would fail.
        proximity = [self.laser_publisher] if self.laser else self.publishers_
        return [*proximity, self.predictions, self.status_publisher]

    # --------------------------------------------------------- what the test waits on
    def twists_settle(self, condition: Callable[[float, float], bool], count: int = 3,
                      timeout: float = TIMEOUT) -> bool:
        """Wait until ``count`` commands in a row, after now, satisfy ``condition``."""
        start = len(self.twists)

        def settled() -> bool:
            recent = self.twists[start:][-count:]
            return len(recent) == count and all(condition(*t) for t in recent)
        return wait_for(settled, timeout)

    def status_settles(self, condition: Callable[[dict[str, str], DiagnosticStatus], bool],
                       timeout: float = TIMEOUT) -> dict[str, str]:
        """Wait for a status, after now, that satisfies ``condition``; return its values."""
        start = len(self.diagnostics)
        found: list[dict[str, str]] = []

        def seen() -> bool:
            for status in self.diagnostics[start:]:
                values = {kv.key: kv.value for kv in status.values}
                if condition(values, status):
                    found.append(values | {'level': status.level, 'message': status.message})
                    return True
            return False
        assert wait_for(seen, timeout), self.diagnostics[-1:] or 'no diagnostics'
        return found[0]


def avoider_node(context, **parameters: Any) -> AvoiderNode:
    overrides = {'status_period': 0.2, 'explorer.random_turn_interval': 1e6, **parameters}
    return AvoiderNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in overrides.items()])


def forward(linear: float, angular: float) -> bool:
    return linear > 0.0 and angular == 0.0


def stopped(linear: float, angular: float) -> bool:
    return linear == 0.0 and angular == 0.0


WARN, OK = DiagnosticStatus.WARN, DiagnosticStatus.OK


def test_drives_forward_on_a_free_grid_and_stops_when_the_sensors_go_silent():
    with ros_context() as context:
        node = avoider_node(context, prediction_timeout=1.0)
        robot = Robot(context)
        robot.grid = FREE
        with spinning(context, robot):
            with spinning(context, node):
                wait_for_subscribers(robot.all_publishers(), node=node)
                assert robot.twists_settle(
                    lambda v, w: v == pytest.approx(SETTINGS.cruise_speed) and w == 0.0)
                values = robot.status_settles(lambda v, s: s.level == OK)
                assert values['mode'] == BY_SIGHT and values['state'] == 'cruise'
                assert set(COUNTER_NAMES) <= set(values)
                assert int(values['predictions']) > 0 and values['model_updates'] == '42'
                assert float(values['prediction_age_s']) < 1.0

                robot.ranges = None  # the driver died
                assert robot.twists_settle(stopped)
                values = robot.status_settles(lambda v, s: 'silent' in s.message)
                assert values['level'] == WARN and values['sensor_silent_stops'] == '1'
                robot.ranges = dict.fromkeys(SENSOR_NAMES, NOTHING_SEEN)
                assert robot.twists_settle(forward)
            # Leaving: the last word on cmd_vel is a stop.
            assert robot.twists[-1] != (0.0, 0.0)
            node.close()
            assert wait_for(lambda: robot.twists[-1] == (0.0, 0.0), TIMEOUT)
        node.destroy_node()


def test_without_predictions_it_stays_put_and_counts_a_stale_stop_when_they_end():
    with ros_context() as context:
        node = avoider_node(context)
        robot = Robot(context)
        with spinning(context, robot, node):
            wait_for_subscribers(robot.all_publishers(), node=node)
            # Proximity only: blind from the start, never a move.
            values = robot.status_settles(lambda v, s: int(v['blind_updates']) >= 5)
            assert values['level'] == WARN and 'no prediction yet' in values['message']
            assert values['state'] == 'blind' and values['prediction_age_s'] == 'none'
            assert values['stale_stops'] == '1'  # the wait for a first prediction
            assert robot.twists and all(stopped(*t) for t in robot.twists)
            # Predictions come, and stop again: the core stops the robot, counted once more.
            robot.grid = FREE
            assert robot.twists_settle(forward)
            robot.grid = None
            assert robot.twists_settle(stopped)
            values = robot.status_settles(lambda v, s: v['state'] == 'blind')
            assert values['stale_stops'] == '2' and values['level'] == WARN
            assert 'old' in values['message']


@pytest.mark.parametrize('spoil, reason', [
    (lambda robot: setattr(robot, 'sensor_names', ['a', 'b', 'c', 'd', 'e']), 'sensor_names'),
    (lambda robot: setattr(robot, 'distances', [0.02 * i for i in range(31)]), 'distances'),
    (lambda robot: setattr(robot, 'grid', np.full(GRID_SHAPE, np.nan)), 'nan'),
    (lambda robot: setattr(robot, 'grid', np.zeros((5, 30))), 'size'),
])
def test_a_prediction_of_another_grid_or_broken_is_refused_and_counted(spoil, reason):
    with ros_context() as context:
        node = avoider_node(context, prediction_timeout=1.0)
        robot = Robot(context)
        robot.grid = FREE
        with spinning(context, robot, node):
            wait_for_subscribers(robot.all_publishers(), node=node)
            assert robot.twists_settle(forward)
            spoil(robot)
            assert robot.twists_settle(stopped)  # only the refused ones come: blind
            values = robot.status_settles(
                lambda v, s: int(v.get(f'bad_prediction_{reason}', 0)) >= 3)
            assert values['level'] == WARN and reason in values['message']
            assert values['bad_prediction_messages'] == values[f'bad_prediction_{reason}']
            assert set(node.bad_predictions) == {reason}
            assert values['state'] == 'blind'


def test_with_min_confidence_it_steers_clear_of_a_side_the_model_cannot_tell():
    unsure_right = np.full(GRID_SHAPE, 0.9, dtype=np.float32)
    unsure_right[SENSOR_NAMES.index('right'), :] = 0.05
    with ros_context() as context:
        node = avoider_node(context, min_confidence=0.3, prediction_timeout=1.0)
        robot = Robot(context)
        robot.grid, robot.confidence = FREE, np.full(GRID_SHAPE, 0.9, dtype=np.float32)
        with spinning(context, robot, node):
            wait_for_subscribers(robot.all_publishers(), node=node)
            assert robot.twists_settle(forward)
            robot.confidence = unsure_right
            assert robot.twists_settle(lambda v, w: w > 0.0)  # away from the right, by sight
            values = robot.status_settles(lambda v, s: int(v['unsure_predictions']) > 0)
            assert values['reflexes'] == '0' and values['bad_prediction_messages'] == '0'
            robot.confidence = np.full(GRID_SHAPE[0] * GRID_SHAPE[1] - 1, 0.5)
            values = robot.status_settles(
                lambda v, s: int(v.get('bad_prediction_confidence_size', 0)) >= 3)
            assert values['level'] == WARN and 'confidence_size' in values['message']
            assert robot.twists_settle(stopped)
        node.destroy_node()


def test_explores_until_the_learner_is_good_enough_then_drives_by_sight():
    with ros_context() as context:
        node = avoider_node(context, switch_after_updates=5, prediction_timeout=1.0)
        robot = Robot(context)
        robot.grid = BLOCKED_AHEAD  # ignored while exploring: it drives as the explorer
        with spinning(context, robot, node):
            wait_for_subscribers(robot.all_publishers(), node=node)
            assert robot.twists_settle(
                lambda v, w: v == pytest.approx(EXPLORER.cruise_speed) and w == 0.0)
            values = robot.status_settles(lambda v, s: True)
            assert values['mode'] == EXPLORING and values['learner_updates'] == 'none'
            assert values['state'] == 'cruise' and values['level'] == OK
            # Not yet: too few updates, then no AUC.
            robot.status = (3, 0.95)
            robot.status_settles(lambda v, s: v['learner_updates'] == '3')
            robot.status = (10, math.nan)
            robot.status_settles(lambda v, s: v['learner_updates'] == '10')
            assert node.mode == EXPLORING
            assert robot.twists_settle(forward)
            # Good enough: by sight, for good; the obstacle ahead makes it turn.
            robot.status = (10, 0.9)
            values = robot.status_settles(lambda v, s: v['mode'] == BY_SIGHT)
            assert float(values['learner_auc']) == pytest.approx(0.9)
            assert robot.twists_settle(
                lambda v, w: 0.0 <= v < SETTINGS.cruise_speed and abs(w) == pytest.approx(
                    SETTINGS.turn_speed))
            assert node.avoider.state == 'avoid'
            robot.status = (11, 0.1)  # no hand-back
            robot.status_settles(lambda v, s: v['learner_updates'] == '11')
            assert node.mode == BY_SIGHT


def test_reads_the_drivers_laser_scan_when_told_to():
    with ros_context() as context:
        node = avoider_node(context, proximity_source='laser', prediction_timeout=1.0)
        robot = Robot(context, laser=True)
        robot.grid = FREE
        with spinning(context, robot, node):
            wait_for_subscribers(robot.all_publishers(), node=node)
            assert robot.twists_settle(forward)
            # Something 4 cm ahead of the centre sensor: the safety reflex backs off.
            robot.ranges = dict.fromkeys(SENSOR_NAMES, NOTHING_SEEN) | {'center': 0.04}
            assert wait_for(lambda: any(v == -SETTINGS.reflex_backoff_speed
                                        for v, _ in robot.twists[-5:]), TIMEOUT)
            assert node._ranges['center'] == pytest.approx(0.04, abs=1e-6)
            values = robot.status_settles(lambda v, s: int(v['reflexes']) >= 1)
            assert values['bad_proximity_messages'] == '0'
