"""
The label rule (DESIGN.md §5) on hand-computed cases.

Every expected array below was worked out by hand from the scenario in the test (robot
positions, reading stamps, tolerances), not recomputed with the labeler's formula.
Stamps are given in seconds from an epoch like a real ROS clock (so that nanosecond
arithmetic is exercised at realistic magnitudes) and converted exactly to nanoseconds.
"""

import math

import numpy as np
import pytest

from ssl_obstacle.core.labeler import LabeledResult, Labeler, Outcome
from ssl_obstacle.core.params import LabelParams

EPOCH = 1_700_000_000 * 1_000_000_000
NAN = np.nan
ODOM, FRAME, READING = 0, 1, 2  # same-stamp messages arrive in this order


def ns(seconds: float) -> int:
    """Nanoseconds since the epoch; exact for the millisecond values used here."""
    return EPOCH + round(seconds * 1_000_000) * 1000


def straight(speed: float, until: float, period: float = 0.05, start: float = 0.0,
             y: float = 0.0, yaw: float = 0.0) -> list[tuple]:
    """Odometry of a robot driving along x (backwards if ``speed`` < 0)."""
    steps = round((until - start) / period)
    return [(start + k * period, ODOM, (speed * (start + k * period), y, yaw))
            for k in range(steps + 1)]


def stationary(until: float, pose=(0.0, 0.0, 0.0), period: float = 0.05,
               start: float = 0.0) -> list[tuple]:
    steps = round((until - start) / period)
    return [(start + k * period, ODOM, pose) for k in range(steps + 1)]


def frame(t: float) -> tuple:
    return (t, FRAME, f'frame@{t}')


def reading(t: float, sensor: str, hit: bool) -> tuple:
    return (t, READING, sensor, hit)


def feed(labeler: Labeler, events: list[tuple], poll_every: int = 1,
         final_poll: bool = True) -> tuple[list, list]:
    """Feed events in stamp order, polling every ``poll_every``; return (results, outcomes)."""
    results: list[LabeledResult] = []
    outcomes = []
    for count, event in enumerate(sorted(events, key=lambda e: (ns(e[0]), e[1])), 1):
        t, kind = event[0], event[1]
        if kind == ODOM:
            outcomes.append(labeler.add_odometry(ns(t), *event[2]))
        elif kind == FRAME:
            outcomes.append(labeler.add_frame(ns(t), event[2]))
        else:
            outcomes.append(labeler.add_reading(ns(t), event[2], event[3]))
        if poll_every and count % poll_every == 0:
            results.extend(labeler.poll())
    if final_poll:
        results.extend(labeler.poll())
    return results, outcomes


def run(params: LabelParams, events: list[tuple], poll_every: int = 1,
        flush: bool = True) -> tuple[Labeler, dict[float, LabeledResult], list]:
    """Label a scenario; results keyed by frame time in seconds."""
    labeler = Labeler(params)
    results, outcomes = feed(labeler, events, poll_every)
    if flush:
        results.extend(labeler.flush())
    by_time = {}
    for result in results:
        t = round((result.stamp - EPOCH) / 1e9, 6)
        assert t not in by_time, 'a frame was returned twice'
        by_time[t] = result
    return labeler, by_time, outcomes


def grid(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def counts(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def assert_labels(result: LabeledResult, expected_labels: np.ndarray,
                  expected_counts: np.ndarray) -> None:
    assert result.labels.dtype == np.float32 and result.counts.dtype == np.uint8
    np.testing.assert_array_equal(result.counts, expected_counts)
    np.testing.assert_array_equal(result.labels, expected_labels)  # NaN == NaN here


THREE = ('left', 'center', 'right')
SMALL = LabelParams(sensor_names=THREE, distances=(0.0, 0.02, 0.04, 0.06))


# ---------------------------------------------------------------- a straight approach
def straight_approach_events() -> list[tuple]:
    """
    Drive at 0.1 m/s along x; take frames at t=0 (x=0) and t=0.3 (x=0.03).

    Reading → robot x → dx from frame 0 / frame 0.3 (distances 0, .02, .04, .06, tol .01):
      0.05 center miss  x=.005  dx .005 → d=0     | before 0.3 - past: ignored
      0.15 center hit   x=.015  dx .015 → d=.02   | ignored
      0.25 center hit   x=.025  dx .025 → d=.02   | dx -.005 → d=0 (t' == t - past)
      0.25 left miss            dx .025 → d=.02   | dx -.005 → d=0
      0.35 center hit   x=.035  dx .035 → d=.04   | dx .005 → d=0
      0.45 center miss  x=.045  dx .045 → d=.04   | dx .015 → d=.02
      0.55 right hit    x=.055  dx .055 → d=.06   | dx .025 → d=.02
      0.55 center miss          dx .055 → d=.06   | dx .025 → d=.02
      0.75 center hit   x=.075  dx .075 → none    | dx .045 → d=.04
      0.95 center miss  x=.095  (frame 0 done)    | dx .065 → d=.06
    Frame 0 leaves by reach once the robot is .08 m away (u - past >= 0.8 s), frame 0.3
    once it is .08 m beyond x=.03 (u >= 1.2 s).
    """
    return [
        *straight(0.1, 2.0), frame(0.0), frame(0.3),
        reading(0.05, 'center', False), reading(0.15, 'center', True),
        reading(0.25, 'center', True), reading(0.25, 'left', False),
        reading(0.35, 'center', True), reading(0.45, 'center', False),
        reading(0.55, 'right', True), reading(0.55, 'center', False),
        reading(0.75, 'center', True), reading(0.95, 'center', False)]


@pytest.mark.parametrize('poll_every', [1, 7, 0])
def test_straight_approach_labels_exactly_the_hand_computed_cells(poll_every):
    labeler, results, outcomes = run(SMALL, straight_approach_events(), poll_every,
                                     flush=False)
    assert all(outcome is Outcome.ACCEPTED for outcome in outcomes)
    assert sorted(results) == [0.0, 0.3]
    first, second = results[0.0], results[0.3]
    assert_labels(first,
                  grid([NAN, 0, NAN, NAN],
                       [0, 1, 0.5, 0],
                       [NAN, NAN, NAN, 1]),
                  counts([0, 1, 0, 0],
                         [1, 2, 2, 1],
                         [0, 0, 0, 1]))
    assert_labels(second,
                  grid([0, NAN, NAN, NAN],
                       [1, 0, 1, 0],
                       [NAN, 1, NAN, NAN]),
                  counts([1, 0, 0, 0],
                         [2, 2, 1, 1],
                         [0, 1, 0, 0]))
    assert first.reason == second.reason == 'reach'
    assert first.payload == 'frame@0.0' and second.payload == 'frame@0.3'
    np.testing.assert_allclose(second.pose, [0.03, 0.0, 0.0], atol=1e-12)
    assert first.known_cells == 6 and second.known_cells == 6
    c = labeler.counters
    assert (c.frames_in, c.readings_in, c.frames_labeled, c.final_reach) == (2, 10, 2, 2)


# ---------------------------------------------------------------- tolerances
def single_reading_events(reading_pose, frame_pose=(0.0, 0.0, 0.0)) -> list[tuple]:
    """Take a frame at t=0 and one center hit at t=0.1, each at a pose of our choosing."""
    return [(0.0, ODOM, frame_pose), *stationary(0.5, reading_pose, start=0.1),
            frame(0.0), reading(0.1, 'center', True)]


def center_cells(*distances: float) -> np.ndarray:
    """Return counts of the default grid (5 sensors × 0..0.30 m), given center cells set."""
    expected = np.zeros((5, 31), dtype=np.uint8)
    for d in distances:
        expected[2, round(d * 100)] = 1
    return expected


@pytest.mark.parametrize('dy, dtheta, labeled', [
    (0.0, 0.0, True),
    (0.0095, 0.0, True), (-0.0095, 0.0, True),  # just inside tol_y = 0.01
    (0.0105, 0.0, False), (-0.0105, 0.0, False),  # just outside
    (0.0, 0.049, True), (0.0, -0.049, True),  # just inside tol_theta = 0.05
    (0.0, 0.051, False), (0.0, -0.051, False),  # just outside
])
def test_lateral_and_heading_tolerances(dy, dtheta, labeled):
    # dx = 0.025 matches d = 0.02 and 0.03 (0.005 away) and no other distance.
    labeler, results, _ = run(LabelParams(), single_reading_events((0.025, dy, dtheta)))
    if labeled:
        assert list(results) == [0.0]
        np.testing.assert_array_equal(results[0.0].counts, center_cells(0.02, 0.03))
        assert results[0.0].reason == 'flush'
    else:
        assert results == {}
        assert labeler.counters.frames_unlabeled == 1


def test_tolerances_are_inclusive():
    # Binary-exact numbers: |dx - d| = tol_x, |dy| = tol_y, |dθ| = tol_theta exactly.
    params = LabelParams(sensor_names=('center',), distances=(0.0, 0.25), tol_x=0.125,
                         tol_y=0.125, tol_theta=0.0625)
    _, results, _ = run(params, single_reading_events((0.375, 0.125, 0.0625)))
    np.testing.assert_array_equal(results[0.0].counts, [[0, 1]])
    _, results, _ = run(params, single_reading_events((0.375, -0.125, -0.0625)))
    np.testing.assert_array_equal(results[0.0].counts, [[0, 1]])
    for beyond in [(0.375 + 1e-6, 0.0, 0.0), (0.25, 0.125 + 1e-6, 0.0),
                   (0.25, 0.0, 0.0625 + 1e-6), (0.25, 0.0, -0.0625 - 1e-6)]:
        _, results, _ = run(params, single_reading_events(beyond))
        assert results == {}, f'{beyond} is outside a tolerance'


def test_decimal_boundaries_are_not_decided_by_rounding():
    # Frame at x = 0.1, reading at x = 0.13: dx = 0.03 by hand, 0.030000000000000013 in
    # floating point. d = 0.02 is exactly tol_x away by hand and must match, like d = 0.04.
    _, results, _ = run(LabelParams(), single_reading_events(
        (0.13, 0.0, 0.0), frame_pose=(0.1, 0.0, 0.0)))
    np.testing.assert_array_equal(results[0.0].counts, center_cells(0.02, 0.03, 0.04))


def test_headings_either_side_of_pi_are_close():
    # Frame facing pi - 0.01, reading facing -pi + 0.01: dθ wraps to 0.02 < tol_theta.
    yaw = math.pi - 0.01
    ahead = (0.025 * math.cos(yaw), 0.025 * math.sin(yaw))
    _, results, _ = run(LabelParams(), single_reading_events(
        (*ahead, -math.pi + 0.01), frame_pose=(0.0, 0.0, yaw)))
    np.testing.assert_array_equal(results[0.0].counts, center_cells(0.02, 0.03))
    # -pi + 0.07 is 0.08 rad from pi - 0.01 the short way: outside tol_theta.
    _, results, _ = run(LabelParams(), single_reading_events(
        (*ahead, -math.pi + 0.07), frame_pose=(0.0, 0.0, yaw)))
    assert results == {}


def test_distance_is_measured_along_the_frame_heading():
    # Frame facing +y at (1, 1): a reading 0.025 m further along +y is straight ahead.
    _, results, _ = run(LabelParams(), single_reading_events(
        (1.0, 1.025, math.pi / 2), frame_pose=(1.0, 1.0, math.pi / 2)))
    np.testing.assert_array_equal(results[0.0].counts, center_cells(0.02, 0.03))
    # The same displacement for a frame facing +x is 2.5 cm to the left: no label.
    _, results, _ = run(LabelParams(), single_reading_events(
        (1.0, 1.025, 0.0), frame_pose=(1.0, 1.0, 0.0)))
    assert results == {}


# ---------------------------------------------------------------- driving backwards
def backwards_events() -> list[tuple]:
    """Reversing at 0.1 m/s (heading +x, moving -x): the reading at 0.25 s is 2.5 cm behind."""
    return [*straight(-0.1, 1.0), frame(0.0), reading(0.25, 'center', True)]


def test_driving_backwards_labels_nothing_at_positive_distances():
    labeler, results, _ = run(LabelParams(), backwards_events())
    assert results == {}
    assert labeler.counters.frames_unlabeled == 1


def test_negative_distances_label_what_is_behind():
    params = LabelParams(sensor_names=('center',), distances=(-0.02, 0.0, 0.02))
    _, results, _ = run(params, backwards_events())
    assert_labels(results[0.0], grid([1, NAN, NAN]), counts([1, 0, 0]))


# ---------------------------------------------------------------- several readings per cell
@pytest.mark.parametrize('how', ['one_call', 'three_calls', 'three_stamps'])
def test_several_readings_in_one_cell_give_the_fraction(how):
    params = LabelParams(sensor_names=THREE, distances=(0.0, 0.02, 0.04))
    # Frame at x=0; the robot then stands at x=0.02 (dx 0.02: d=0.02 only, 0.02 from 0/.04).
    events = [(0.0, ODOM, (0.0, 0.0, 0.0)), *stationary(1.0, (0.02, 0.0, 0.0), start=0.1),
              frame(0.0)]
    hits = [True, True, False]
    labeler = Labeler(params)
    results, _ = feed(labeler, [e for e in events if e[0] <= 0.2])
    if how == 'one_call':
        assert labeler.add_readings(ns(0.2), [1, 1, 1], hits) is Outcome.ACCEPTED
    elif how == 'three_calls':
        for hit in hits:
            assert labeler.add_reading(ns(0.2), 'center', hit) is Outcome.ACCEPTED
    else:
        for t, hit in zip((0.2, 0.25, 0.3), hits):
            assert labeler.add_reading(ns(t), 1, hit) is Outcome.ACCEPTED
    results += feed(labeler, [e for e in events if e[0] > 0.2])[0]
    results += labeler.flush()
    assert len(results) == 1
    assert_labels(results[0],
                  grid([NAN, NAN, NAN], [NAN, 2 / 3, NAN], [NAN, NAN, NAN]),
                  counts([0, 0, 0], [0, 3, 0], [0, 0, 0]))
    assert labeler.counters.readings_in == 3


def test_readings_of_several_sensors_at_one_stamp():
    params = LabelParams(sensor_names=THREE, distances=(0.0, 0.02, 0.04))
    events = [(0.0, ODOM, (0.0, 0.0, 0.0)), *stationary(1.0, (0.02, 0.0, 0.0), start=0.1)]
    labeler = Labeler(params)
    feed(labeler, [*(e for e in events if e[0] <= 0.2), frame(0.0)])
    labeler.add_readings(ns(0.2), np.array([0, 2]), np.array([True, False]))
    labeler.add_readings(ns(0.2), [1], [True])
    feed(labeler, [e for e in events if e[0] > 0.2])
    (result,) = labeler.flush()
    assert_labels(result,
                  grid([NAN, 1, NAN], [NAN, 1, NAN], [NAN, 0, NAN]),
                  counts([0, 1, 0], [0, 1, 0], [0, 1, 0]))


# ---------------------------------------------------------------- time windows
def test_reading_windows_are_inclusive_and_exclude_beyond():
    # Stationary robot: every reading is at dx = 0 (d = 0 only, with distances 0 and .05).
    # Frame at t=1: readings count from t - past = 0.95 s to t + future = 7 s inclusive.
    params = LabelParams(distances=(0.0, 0.05))
    events = [
        *stationary(8.0), frame(1.0),
        reading(0.94, 'left', True), reading(0.95, 'center', True),
        reading(7.0, 'right', True), reading(7.01, 'center_left', True)]
    labeler, results, _ = run(params, events, flush=False)
    assert list(results) == [1.0]
    assert_labels(results[1.0],
                  grid([NAN, NAN], [NAN, NAN], [1, NAN], [NAN, NAN], [1, NAN]),
                  counts([0, 0], [0, 0], [1, 0], [0, 0], [1, 0]))
    assert results[1.0].reason == 'window'
    assert labeler.counters.final_window == 1


# ---------------------------------------------------------------- finalisation
def test_complete_frame_is_final_as_soon_as_every_cell_is_known():
    params = LabelParams(sensor_names=('center',), distances=(0.0, 0.02))
    # x = .005 at 0.05 s (d=0 only), x = .02 at 0.2 s (d=.02 only): both cells known.
    events = [*straight(0.1, 0.6), frame(0.0), reading(0.05, 'center', False),
              reading(0.2, 'center', True)]
    labeler, results, _ = run(params, events, flush=False)
    assert_labels(results[0.0], grid([0, 1]), counts([1, 1]))
    assert results[0.0].reason == 'complete'
    assert labeler.counters.final_complete == 1 and labeler.pending_frames == 0


def test_flush_finalises_pending_frames_and_drops_unlabeled_ones():
    events = [*straight(0.1, 0.5), frame(0.0), frame(0.2), reading(0.05, 'center', True)]
    labeler, results, _ = run(LabelParams(), events, flush=False)
    assert results == {} and labeler.pending_frames == 2
    flushed = labeler.flush()
    assert [r.reason for r in flushed] == ['flush']  # frame 0.2 has no known cell
    assert flushed[0].stamp == ns(0.0)
    np.testing.assert_array_equal(flushed[0].counts, center_cells(0.0, 0.01))
    c = labeler.counters
    assert (c.final_flush, c.frames_labeled, c.frames_unlabeled) == (2, 1, 1)
    assert labeler.pending_frames == 0 and labeler.flush() == []


def test_unlabeled_frames_leaving_by_reach_or_window_are_counted_not_returned():
    # Frame 0 is left behind by the robot (reach); frame 3 is taken while standing still
    # and outlives its window. Neither ever sees a reading.
    events = (straight(0.1, 4.0) + stationary(11.0, (0.4, 0.0, 0.0), start=4.05)
              + [frame(0.0), frame(4.1)])
    labeler, results, _ = run(LabelParams(), events, flush=False)
    assert results == {}
    c = labeler.counters
    assert (c.final_reach, c.final_window, c.frames_unlabeled, c.frames_labeled) == (1, 1, 2, 0)


def test_reach_spares_frames_newer_than_the_robot_position_in_time():
    # Odometry jumps from x=0 to x=1 at 1.05 s; the frame is taken there. At u = 1.05 s the
    # robot's position is taken at u - past = 1.0 s, 1 m from the frame, but the frame is
    # newer than that: it stays, and the reading at 1.2 s labels it.
    events = (stationary(1.0) + stationary(2.0, (1.0, 0.0, 0.0), start=1.05)
              + [frame(1.05), reading(1.2, 'center', True)])
    labeler, results, _ = run(LabelParams(), events)
    assert results[1.05].reason == 'flush'
    np.testing.assert_array_equal(results[1.05].counts, center_cells(0.0, 0.01))
    assert labeler.counters.final_reach == 0


def test_reading_at_the_last_odometry_sample_still_labels_on_flush():
    # The reading's key (t' + past) lies beyond the last odometry sample, but its pose is
    # known: flush applies it instead of counting it as without odometry.
    events = [*straight(0.1, 0.25), frame(0.0), reading(0.25, 'center', True)]
    labeler, results, _ = run(LabelParams(), events)
    np.testing.assert_array_equal(results[0.0].counts, center_cells(0.02, 0.03))
    assert labeler.counters.no_odometry == 0


# ---------------------------------------------------------------- bounds
def test_pending_frames_bounded_by_count():
    params = LabelParams(max_pending_frames=3)
    events = stationary(1.0) + [frame(t) for t in (0.1, 0.2, 0.3, 0.4, 0.5)]
    events.append(reading(0.6, 'center', True))  # labels every frame still held
    labeler, results, _ = run(params, events)
    assert sorted(results) == [0.3, 0.4, 0.5]
    assert labeler.counters.frames_evicted == 2


def test_pending_frames_bounded_by_age():
    params = LabelParams(max_age=1.0)
    events = [*stationary(3.0), frame(0.0), reading(0.5, 'center', True)]
    labeler, results, _ = run(params, events)
    assert results == {}
    assert labeler.counters.frames_evicted == 1 and labeler.counters.frames_labeled == 0


def test_waiting_items_bounded_by_age_when_odometry_stops():
    params = LabelParams(max_age=1.0)
    events = stationary(1.0) + [frame(round(0.1 * k, 1)) for k in range(31)]
    labeler, _, _ = run(params, events, flush=False)
    # Odometry ends at 1 s; frames from 1.1 s on wait for it. At newest = 3 s those older
    # than 2 s (1.1 … 1.9) are evicted, 2.0 … 3.0 still wait.
    assert labeler.counters.frames_evicted == 9
    assert labeler.waiting_items == 11


def test_waiting_items_bounded_by_count_without_any_odometry():
    labeler = Labeler(LabelParams(max_waiting=5))
    for k in range(8):
        labeler.add_frame(ns(0.01 * k))
        labeler.poll()
    assert labeler.waiting_items == 5 and labeler.counters.frames_evicted == 3


# ---------------------------------------------------------------- stream problems
@pytest.mark.parametrize('poll_every', [1, 0])
def test_late_inputs_beyond_the_reorder_window_are_rejected(poll_every):
    labeler = Labeler(LabelParams())
    feed(labeler, straight(0.1, 2.0), poll_every, final_poll=bool(poll_every))
    # newest = 2.0 s, watermark 1.8 s: odometry up to 1.8 s has settled.
    assert labeler.add_frame(ns(1.5)) is Outcome.LATE
    assert labeler.add_frame(ns(1.8)) is Outcome.LATE
    assert labeler.add_frame(ns(1.85)) is Outcome.ACCEPTED
    assert labeler.add_reading(ns(1.7), 'center', True) is Outcome.LATE  # key 1.75 s
    assert labeler.add_reading(ns(1.76), 'center', True) is Outcome.ACCEPTED  # key 1.81 s
    assert labeler.add_odometry(ns(1.72), 0.172, 0.0, 0.0) is Outcome.LATE
    assert labeler.add_odometry(ns(1.81), 0.181, 0.0, 0.0) is Outcome.ACCEPTED
    c = labeler.counters
    assert (c.frames_late, c.readings_late, c.odometry_late) == (2, 1, 1)
    assert (c.frames_in, c.readings_in) == (1, 1)


def test_duplicates_are_rejected():
    labeler = Labeler(LabelParams())
    assert labeler.add_odometry(ns(0.0), 0.0, 0.0, 0.0) is Outcome.ACCEPTED
    assert labeler.add_odometry(ns(0.0), 1.0, 0.0, 0.0) is Outcome.DUPLICATE
    assert labeler.add_frame(ns(0.0)) is Outcome.ACCEPTED
    assert labeler.add_frame(ns(0.0)) is Outcome.DUPLICATE
    assert labeler.counters.duplicates == 2 and labeler.odometry_samples == 1


@pytest.mark.parametrize('poll_every', [1, 0])
def test_time_jump_backwards_finishes_the_old_run_and_labeling_resumes(poll_every):
    labeler = Labeler(LabelParams(sensor_names=('center',), distances=(0.0, 0.02)))
    # First pass: standing still until 10 s. Frame 3 is labeled and leaves by its window
    # at 9.05 s, before the jump. Frame 9.5 has a known cell but is still pending when the
    # bag restarts; 9.7 and 9.9 never see a reading. Batched polling does not poll before
    # the jump: what had settled must still come out.
    first = [*stationary(10.0), frame(3.0), reading(3.0, 'center', True),
             frame(9.5), reading(9.5, 'center', True), frame(9.7), frame(9.9)]
    results, _ = feed(labeler, first, poll_every, final_poll=bool(poll_every))
    # The bag restarts at 1 s (9 s back, beyond time_jump_threshold = 2 s).
    assert labeler.add_odometry(ns(1.0), 0.0, 0.0, 0.0) is Outcome.RESET
    c = labeler.counters
    # The old run ends as a stream ends: its pending frames are finalised, not dropped.
    assert (c.resets, c.flushed_on_reset, c.dropped_on_reset) == (1, 1, 0)
    assert c.frames_unlabeled == 2
    assert labeler.pending_frames == 0 and labeler.newest_stamp == ns(1.0)
    # Second pass: drive and complete a frame, as in a fresh labeler.
    second = [(1.0 + t, kind, pose) for t, kind, pose in straight(0.1, 0.6)][1:]
    second += [frame(1.0), reading(1.05, 'center', False), reading(1.2, 'center', True)]
    results += feed(labeler, second, poll_every)[0]
    results += labeler.flush()
    assert [(r.stamp, r.reason) for r in results] == [
        (ns(3.0), 'window'), (ns(9.5), 'flush'), (ns(1.0), 'complete')]
    assert_labels(results[0], grid([1, NAN]), counts([1, 0]))
    assert_labels(results[1], grid([1, NAN]), counts([1, 0]))
    assert_labels(results[2], grid([0, 1]), counts([1, 1]))


def test_stragglers_of_the_old_run_do_not_restart_the_new_one_again():
    # A bag starts over; messages of the old run on other topics are still in flight and
    # arrive after the first message of the new run. They are late, not a second restart.
    labeler = Labeler(LabelParams())
    feed(labeler, [*stationary(10.0), frame(9.5)])
    assert labeler.add_frame(ns(1.0)) is Outcome.RESET
    assert labeler.add_reading(ns(9.9), 'right', False) is Outcome.LATE
    assert labeler.add_frame(ns(9.95)) is Outcome.LATE
    assert labeler.add_odometry(ns(9.97), 0.0, 0.0, 0.0) is Outcome.LATE
    assert labeler.newest_stamp == ns(1.0)
    assert labeler.add_reading(ns(1.05), 'right', False) is Outcome.ACCEPTED
    assert labeler.add_odometry(ns(1.0), 0.0, 0.0, 0.0) is Outcome.ACCEPTED
    assert labeler.add_frame(ns(1.1)) is Outcome.ACCEPTED
    assert labeler.counters.resets == 1
    assert (labeler.counters.frames_late, labeler.counters.readings_late,
            labeler.counters.odometry_late) == (1, 1, 1)


def test_a_lagging_stream_is_late_not_a_restart():
    # The camera runs 3 s behind odometry (a slow driver or a skewed clock): its frames are
    # late, but it never goes back within itself, so nobody's work is wiped.
    labeler = Labeler(LabelParams())
    feed(labeler, stationary(10.0))
    assert labeler.add_frame(ns(7.0)) is Outcome.LATE
    assert labeler.add_frame(ns(7.1)) is Outcome.LATE
    assert labeler.add_reading(ns(6.0), 'center', True) is Outcome.LATE
    assert labeler.counters.resets == 0
    assert labeler.odometry_samples > 0 and labeler.newest_stamp == ns(10.0)


def test_one_stream_going_back_within_itself_is_a_restart():
    labeler = Labeler(LabelParams())
    feed(labeler, [*stationary(10.0), frame(9.0)])
    assert labeler.add_frame(ns(0.5)) is Outcome.RESET  # the camera itself went back 8.5 s
    assert labeler.counters.resets == 1
    assert labeler.add_odometry(ns(0.4), 0.0, 0.0, 0.0) is Outcome.ACCEPTED  # not a 2nd reset
    assert labeler.counters.resets == 1


def test_small_step_back_is_not_a_reset():
    labeler = Labeler(LabelParams())
    labeler.add_odometry(ns(10.0), 0.0, 0.0, 0.0)
    assert labeler.add_frame(ns(8.5)) is Outcome.ACCEPTED  # 1.5 s back: within 2 s
    assert labeler.counters.resets == 0 and labeler.newest_stamp == ns(10.0)


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_non_finite_odometry_is_a_bad_value(value):
    labeler = Labeler(LabelParams())
    assert labeler.add_odometry(ns(0.0), value, 0.0, 0.0) is Outcome.BAD_VALUE
    assert labeler.add_odometry(ns(0.0), 0.0, value, 0.0) is Outcome.BAD_VALUE
    assert labeler.add_odometry(ns(0.0), 0.0, 0.0, value) is Outcome.BAD_VALUE
    assert labeler.counters.bad_values == 3
    assert labeler.odometry_samples == 0 and labeler.newest_stamp is None


def test_malformed_readings_are_bad_values():
    labeler = Labeler(LabelParams())
    assert labeler.add_readings(ns(0.0), [5], [True]) is Outcome.BAD_VALUE  # 5 sensors
    assert labeler.add_readings(ns(0.0), [-1], [True]) is Outcome.BAD_VALUE
    assert labeler.add_readings(ns(0.0), [0, 1], [True]) is Outcome.BAD_VALUE
    assert labeler.add_readings(ns(0.0), [], []) is Outcome.BAD_VALUE
    assert labeler.add_reading(ns(0.0), 'no_such_sensor', True) is Outcome.BAD_VALUE
    assert labeler.counters.bad_values == 5 and labeler.counters.readings_in == 0


def test_inputs_before_the_first_odometry_sample_have_no_odometry():
    events = [*straight(0.1, 1.0, start=0.1), frame(0.0), reading(0.02, 'center', True),
              frame(0.5)]
    labeler, results, _ = run(LabelParams(), events)
    assert labeler.counters.no_odometry == 2  # frame 0.0 and the reading
    assert labeler.counters.frames_in == 2 and results == {}
    assert labeler.counters.frames_unlabeled == 1  # frame 0.5 got a pose, no reading


def test_reset_clears_everything():
    labeler = Labeler(LabelParams())
    feed(labeler, [*stationary(1.0), frame(0.5), frame(0.95)])
    assert labeler.reset() == 2
    assert (labeler.pending_frames, labeler.waiting_items, labeler.odometry_samples) == (0, 0, 0)
    assert labeler.newest_stamp is None
    assert labeler.add_frame(ns(0.0)) is Outcome.ACCEPTED  # nothing is late any more


# ---------------------------------------------------------------- parameters
def test_parameters_round_trip_through_a_mapping():
    params = LabelParams(sensor_names=('a', 'b'), distances=(0.0, 0.1), tol_x=0.02,
                         max_pending_frames=10, future_window=3.0)
    data = params.to_dict()
    assert data['sensor_names'] == ['a', 'b'] and data['distances'] == [0.0, 0.1]
    assert LabelParams.from_mapping({**data, 'image_width': 80}) == params  # others ignored
    assert params.out_of_reach == pytest.approx(0.14)
    assert params.reach == pytest.approx(math.hypot(0.12, 0.01))


@pytest.mark.parametrize('values', [
    {'sensor_names': []}, {'sensor_names': ['a', 'a']}, {'distances': []},
    {'distances': [0.0, math.nan]}, {'tol_x': -0.01}, {'future_window': math.inf},
    {'time_jump_threshold': 0.1}, {'max_pending_frames': 1},
    {'sensor_names': 'left'},
])
def test_meaningless_parameters_are_rejected(values):
    with pytest.raises(ValueError):
        LabelParams.from_mapping(values)


@pytest.mark.parametrize('poll_every', [1, 0])
def test_no_pose_is_interpolated_across_an_odometry_gap(poll_every):
    # Odometry stops from 2.0 s to 5.5 s (a driver hiccup). A straight line between the
    # samples would put the reading at 3.0 s at x = 0.3, 0.2 m ahead of frame 1.0, and give
    # that cell a label nobody measured; the frame and the reading inside the gap are
    # dropped and counted instead, the gap is counted once, and labeling goes on after it.
    params = LabelParams(sensor_names=('center',), distances=(0.0, 0.2))
    events = [*straight(0.1, 2.0), *straight(0.1, 9.0, start=5.5),
              frame(1.0), reading(1.0, 'center', False), reading(3.0, 'center', True),
              frame(3.5), frame(6.0), reading(6.0, 'center', True)]
    labeler, results, _ = run(params, events, poll_every)
    assert sorted(results) == [1.0, 6.0]
    assert_labels(results[1.0], grid([0, NAN]), counts([1, 0]))
    assert_labels(results[6.0], grid([1, NAN]), counts([1, 0]))
    c = labeler.counters
    assert (c.odometry_gaps, c.frames_in_gap, c.readings_in_gap) == (1, 1, 1)
    assert c.no_odometry == 0
    assert labeler.last_gap == (ns(2.0), ns(5.5))


def test_gaps_within_max_odometry_gap_are_interpolated():
    params = LabelParams(sensor_names=('center',), distances=(0.0, 0.2), max_odometry_gap=4.0)
    events = [*straight(0.1, 2.0), *straight(0.1, 9.0, start=5.5),
              frame(1.0), reading(1.0, 'center', False), reading(3.0, 'center', True)]
    labeler, results, _ = run(params, events)
    assert_labels(results[1.0], grid([0, 1]), counts([1, 1]))
    assert labeler.counters.odometry_gaps == 0
