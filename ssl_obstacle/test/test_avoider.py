"""The sight-driven controller (core/avoider.py), case by case, with hand-made grids."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from ssl_obstacle.core.avoider import Avoider, AvoiderSettings, free_distances
from ssl_obstacle.core.params import DEFAULT_DISTANCES
from ssl_obstacle.core.thymio import SENSOR_NAMES

DISTANCES = np.asarray(DEFAULT_DISTANCES)
NOTHING = {name: -1.0 for name in SENSOR_NAMES}
DT = 0.1  # the node's 10 Hz


def grid(**first_obstacle: float) -> np.ndarray:
    """Return a (5, 31) grid: P = 0.95 from each named sensor's distance on, 0.03 elsewhere."""
    probabilities = np.full((len(SENSOR_NAMES), len(DISTANCES)), 0.03)
    for name, distance in first_obstacle.items():
        probabilities[SENSOR_NAMES.index(name), distance - 1e-9 <= DISTANCES] = 0.95
    return probabilities


def front(distance: float) -> np.ndarray:
    """Return a grid of an obstacle dead ahead, seen by the front sensors from ``distance``."""
    return grid(center=distance, center_left=distance + 0.02, center_right=distance + 0.02)


def drive(avoider: Avoider, start: float, seconds: float, probabilities: np.ndarray,
          ranges: dict[str, float] = NOTHING) -> list[tuple[float, float]]:
    """Update at 10 Hz with a fresh copy of the same grid every tick; return the twists."""
    twists = []
    for step in range(int(round(seconds / DT))):
        now = start + step * DT
        assert avoider.set_prediction(now, probabilities)
        twists.append(avoider.update(now, ranges))
    return twists


def drive_with(avoider: Avoider, start: float, seconds: float, probabilities: np.ndarray,
               confidence: np.ndarray) -> list[tuple[float, float]]:
    """Like :func:`drive`, each grid sent with its confidence."""
    twists = []
    for step in range(int(round(seconds / DT))):
        now = start + step * DT
        assert avoider.set_prediction(now, probabilities, confidence)
        twists.append(avoider.update(now, NOTHING))
    return twists


def test_free_distance_is_the_first_likely_cell_or_beyond_the_horizon():
    probabilities = grid(left=0.12, center=0.0)
    free = free_distances(probabilities, DISTANCES, 0.5)
    assert free[0] == pytest.approx(0.12) and free[2] == 0.0
    assert free[1] == pytest.approx(0.31)  # nothing likely: free as far as it can tell


def test_all_free_cruises_straight_at_cruise_speed():
    avoider = Avoider()
    twists = drive(avoider, 0.0, 2.0, grid())
    assert twists[-1] == (pytest.approx(avoider.settings.cruise_speed), 0.0)
    assert avoider.state == 'cruise' and avoider.counters['avoidances'] == 0


def test_obstacle_ahead_at_25_cm_slows_it_before_15_cm_and_turns_before_contact():
    """Drive at an obstacle 25 cm ahead: the grid's free distance shrinks as it goes."""
    avoider = Avoider()
    cruise = avoider.settings.cruise_speed
    travelled, now, turned_at = 0.0, 0.0, None
    speeds_at = {}
    while travelled < 0.25 and turned_at is None:
        ahead = 0.25 - travelled
        avoider.set_prediction(now, front(ahead))
        linear, angular = avoider.update(now, NOTHING)
        speeds_at[round(ahead, 3)] = linear
        if angular != 0.0:
            turned_at = ahead
        travelled += linear * DT
        now += DT
    assert turned_at is not None and turned_at > 0.05, 'it must turn well before contact'
    slowed = [speed for ahead, speed in speeds_at.items() if ahead <= 0.15]
    assert slowed and max(slowed) < 0.9 * cruise, 'it must have slowed by 15 cm'


def test_left_side_blocked_turns_right_and_right_side_blocked_turns_left():
    left = Avoider()
    drive(left, 0.0, 0.5, grid())
    _, angular = drive(left, 0.5, 0.2, grid(left=0.0, center_left=0.02))[-1]
    assert angular < 0.0
    right = Avoider()
    drive(right, 0.0, 0.5, grid())
    _, angular = drive(right, 0.5, 0.2, grid(right=0.0, center_right=0.02))[-1]
    assert angular > 0.0


def test_the_turn_goes_on_past_the_point_where_the_view_clears():
    avoider = Avoider()
    drive(avoider, 0.0, 0.5, grid())
    drive(avoider, 0.5, 0.3, grid(left=0.0, center_left=0.0, center=0.05))
    after_clear = drive(avoider, 0.8, 2.0, grid())
    turning = [twist for twist in after_clear if twist[1] != 0.0]
    overshoot = avoider.settings.overshoot_time
    assert len(turning) >= round(overshoot / DT) > 0, 'it stopped turning at the first clear view'
    assert after_clear[-1][1] == 0.0 and avoider.state == 'cruise'


def test_after_a_turn_it_does_not_turn_back_toward_the_side_just_avoided():
    settings = AvoiderSettings()
    avoider = Avoider(settings)
    drive(avoider, 0.0, 0.5, grid())
    drive(avoider, 0.5, 0.5, grid(left=0.0, center_left=0.0))  # obstacle left: turns right
    drive(avoider, 1.0, 1.5, grid())  # clears, overshoots, cruises
    assert avoider.state == 'cruise'
    # An obstacle ahead, a little more on the right: alone, that turns left, back toward
    # the side just avoided. Within the memory it must turn right (away from it) instead.
    mostly_right = grid(center=0.05, center_right=0.07, right=0.09, center_left=0.12)
    _, angular = drive(avoider, 2.5, 0.2, mostly_right)[-1]
    assert angular < 0.0
    # The same situation once the memory has expired turns left: the rule, not chance.
    fresh = Avoider(settings)
    drive(fresh, 0.0, 0.5, grid())
    _, angular = drive(fresh, 0.5, 0.2, mostly_right)[-1]
    assert angular > 0.0
    later = 2.7 + settings.memory_time + 1.0
    drive(avoider, 2.7, later - 2.7, grid())
    _, angular = drive(avoider, later, 0.2, mostly_right)[-1]
    assert angular > 0.0


@pytest.mark.parametrize('bad', [
    np.full((5, 31), np.nan), np.full((5, 30), 0.1), np.full(5 * 31 + 1, 0.1),
    np.full((5, 31), 1.5), 'not a grid'])
def test_nan_wrongly_sized_or_out_of_range_grids_are_refused_and_it_stops(bad):
    avoider = Avoider()
    drive(avoider, 0.0, 1.0, grid())
    assert avoider.update(1.0, NOTHING)[0] > 0.0
    for step in range(10):
        now = 1.0 + DT * (step + 1)
        assert not avoider.set_prediction(now, bad)
        linear, angular = avoider.update(now, NOTHING)
    assert (linear, angular) == (0.0, 0.0)
    assert avoider.counters['bad_predictions'] == 10
    assert avoider.counters['stale_stops'] == 1 and avoider.state == 'blind'


def test_stale_predictions_slow_it_smoothly_to_a_stop_and_count_once():
    avoider = Avoider()
    drive(avoider, 0.0, 1.0, grid())
    timeout = avoider.settings.prediction_timeout
    speeds = [avoider.update(0.9 + DT * step, NOTHING)[0] for step in range(1, 20)]
    fresh_enough = int(timeout / DT)
    assert all(speed == pytest.approx(avoider.settings.cruise_speed)
               for speed in speeds[:fresh_enough - 1])
    stopping = speeds[fresh_enough + 1:]
    assert stopping[-1] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(stopping)), 'slows down, never jumps up'
    assert avoider.counters['stale_stops'] == 1
    # A fresh prediction drives it again.
    assert drive(avoider, 3.0, 0.3, grid())[-1][0] > 0.0


def test_no_prediction_at_all_never_drives_and_counts_as_a_stale_stop():
    avoider = Avoider()
    twists = [avoider.update(DT * step, NOTHING) for step in range(20)]
    assert all(twist == (0.0, 0.0) for twist in twists)
    assert avoider.counters['stale_stops'] == 1 and avoider.counters['blind_updates'] == 20


def test_a_stamp_slightly_ahead_of_the_clock_is_fresh_one_far_ahead_is_not():
    avoider = Avoider()
    timeout = avoider.settings.prediction_timeout
    assert avoider.set_prediction(10.0 + 0.5 * timeout, grid())  # camera clock a bit ahead
    assert avoider.update(10.0, NOTHING)[0] > 0.0
    ahead = Avoider()
    assert ahead.set_prediction(10.0 + 3 * timeout, grid())
    assert ahead.update(10.0, NOTHING) == (0.0, 0.0) and ahead.state == 'blind'


def test_a_late_prediction_does_not_replace_a_newer_one():
    avoider = Avoider()
    assert avoider.set_prediction(1.0, grid())
    assert not avoider.set_prediction(0.9, front(0.0))
    assert avoider.free.min() > 0.3


def test_ir_reflex_backs_off_then_turns_away_and_counts():
    avoider = Avoider()
    drive(avoider, 0.0, 0.5, grid())
    close_left = {**NOTHING, 'left': 0.04}
    twists = drive(avoider, 0.5, 0.3, grid(), close_left)
    assert avoider.counters['reflexes'] == 1
    assert twists[0][0] < 0.0 and twists[0][1] == 0.0  # back off first
    turning = drive(avoider, 0.8, 1.0, grid(), close_left)
    assert any(angular < 0.0 for _, angular in turning)  # then away from the left
    assert all(angular <= 0.0 for _, angular in turning)
    assert avoider.counters['reflexes'] == 1  # one firing, however long it lasts


def test_time_jumping_back_forgets_everything():
    avoider = Avoider()
    drive(avoider, 100.0, 1.0, grid())
    assert avoider.update(5.0, NOTHING) == (0.0, 0.0)  # the old prediction means nothing now
    assert drive(avoider, 5.1, 0.3, grid())[-1][0] > 0.0


@pytest.mark.parametrize('changes', [
    {'cruise_speed': 0.0}, {'probability_threshold': 1.0}, {'stop_distance': 0.3},
    {'min_confidence': 1.0}, {'min_confidence': -0.1},
    {'clear_distance': 0.01}, {'min_speed': 1.0}, {'prediction_timeout': math.nan},
    {'turn_speed_fraction': 2.0}])
def test_settings_that_cannot_work_are_refused(changes):
    with pytest.raises(ValueError):
        AvoiderSettings(**changes)


def test_with_reversal_the_memory_gives_way_when_the_side_it_turns_to_is_blocked():
    """An obstacle beside the robot now is nearer than the one it turned from seconds ago."""
    avoider = Avoider(AvoiderSettings(reverse_blocked_turns=True))
    drive(avoider, 0.0, 0.5, grid())
    drive(avoider, 0.5, 0.5, grid(left=0.0, center_left=0.0))  # obstacle left: turns right
    drive(avoider, 1.0, 1.5, grid())
    right_blocked = grid(right=0.0, center_right=0.02, center=0.06)
    assert right_blocked[4, 0] > 0.5 and avoider.settings.side_turn_distance > 0.0
    _, angular = drive(avoider, 2.5, 0.2, right_blocked)[-1]
    assert angular > 0.0  # left, toward the side avoided before, away from the one beside
    # Without the reversal (the default) the memory holds: right, as the rule says.
    plain = Avoider()
    drive(plain, 0.0, 0.5, grid())
    drive(plain, 0.5, 0.5, grid(left=0.0, center_left=0.0))
    drive(plain, 1.0, 1.5, grid())
    assert drive(plain, 2.5, 0.2, right_blocked)[-1][1] < 0.0


def test_with_reversal_a_turn_into_a_newly_blocked_side_reverses_once():
    avoider = Avoider(AvoiderSettings(reverse_blocked_turns=True))
    drive(avoider, 0.0, 0.5, grid())
    _, angular = drive(avoider, 0.5, 0.2, grid(right=0.03, center=0.06))[-1]
    assert angular > 0.0  # obstacle right: turns left
    # Turning left, an obstacle appears on the left, the right being freer: turn right.
    _, angular = drive(avoider, 0.7, 0.2, grid(left=0.0, center_left=0.03, center=0.06,
                                               right=0.08))[-1]
    assert angular < 0.0
    # Only once: blocked on the right again, it keeps turning right rather than dither.
    _, angular = drive(avoider, 0.9, 0.2, grid(right=0.03, center_right=0.04, center=0.06,
                                               left=0.09))[-1]
    assert angular < 0.0


def test_what_a_side_sensor_sees_now_outweighs_a_free_prediction():
    """The grid's first column is what the sensor measures: out of the camera's view."""
    seen_right = {**NOTHING, 'right': 0.11}  # seen, but farther than the reflex's 7 cm
    fused = Avoider(AvoiderSettings(proximity_fusion_range=0.14))
    drive(fused, 0.0, 0.5, grid())
    _, angular = drive(fused, 0.5, 0.2, grid(), seen_right)[-1]
    assert angular > 0.0 and fused.counters['reflexes'] == 0  # turns left, by sight
    assert fused.view[SENSOR_NAMES.index('right')] == 0.0 and fused.free.min() > 0.3
    alone = Avoider()  # the default: by sight, the sensors only fire the reflex
    drive(alone, 0.0, 0.5, grid())
    assert drive(alone, 0.5, 0.2, grid(), seen_right)[-1] == (
        pytest.approx(alone.settings.cruise_speed), 0.0)


def test_an_unsure_free_cell_counts_as_an_obstacle_with_min_confidence():
    probabilities = grid(left=0.2)
    confidence = np.full(probabilities.shape, 0.9)
    confidence[SENSOR_NAMES.index('right'), DISTANCES >= 0.04 - 1e-9] = 0.1  # can't tell
    free = free_distances(probabilities, DISTANCES, 0.5, confidence, 0.3)
    assert free[SENSOR_NAMES.index('right')] == pytest.approx(0.04)
    assert free[SENSOR_NAMES.index('left')] == pytest.approx(0.2)  # a sure obstacle stays
    assert free[SENSOR_NAMES.index('center')] == pytest.approx(0.31)
    assert np.array_equal(free_distances(probabilities, DISTANCES, 0.5, confidence, 0.0),
                          free_distances(probabilities, DISTANCES, 0.5))


def test_with_min_confidence_it_turns_away_from_where_it_cannot_tell():
    """A right side the model cannot see into: the careful avoider turns left, counted."""
    confidence = np.full((len(SENSOR_NAMES), len(DISTANCES)), 0.9)
    confidence[SENSOR_NAMES.index('right'), :] = 0.05
    careful = Avoider(AvoiderSettings(min_confidence=0.3))
    drive_with(careful, 0.0, 0.5, grid(), np.full_like(confidence, 0.9))
    assert careful.counters['unsure_predictions'] == 0
    _, angular = drive_with(careful, 0.5, 0.2, grid(), confidence)[-1]
    assert angular > 0.0 and careful.counters['unsure_predictions'] == 2
    trusting = Avoider()  # the default takes the probabilities at their word
    drive_with(trusting, 0.0, 0.5, grid(), confidence)
    assert trusting.update(0.5, NOTHING) == (pytest.approx(trusting.settings.cruise_speed), 0.0)
    assert trusting.counters['unsure_predictions'] == 0


def test_a_prediction_without_confidence_is_taken_at_its_word_a_broken_one_refused():
    careful = Avoider(AvoiderSettings(min_confidence=0.3))
    for empty in (None, [], np.empty(0)):
        assert careful.set_prediction(0.0, grid(), empty)
        assert careful.free.min() > 0.3
    trusting = Avoider()  # does not read the confidence: a broken one cannot stop it
    for bad in (np.full(5 * 31 - 1, 0.5), np.full((5, 31), np.nan), np.full((5, 31), 1.2)):
        assert not careful.set_prediction(0.1, grid(), bad)
        assert trusting.set_prediction(0.1, grid(), bad)
    assert careful.counters['bad_predictions'] == 3 and careful.counters['predictions'] == 3
    assert trusting.counters['bad_predictions'] == 0
