"""SE(2) helpers and odometry interpolation (core/geometry.py)."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from ssl_obstacle.core.geometry import (compose, PoseHistory, quaternion_from_yaw,
                                        relative_pose, wrap_angle, yaw_from_quaternion)

coordinate = st.floats(-1e3, 1e3, allow_nan=False)
angle = st.floats(-10.0, 10.0, allow_nan=False)
pose = st.tuples(coordinate, coordinate, angle)


def angle_difference(a: float, b: float) -> float:
    """Smallest absolute difference between two angles, whatever their winding."""
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def test_wrap_angle_maps_pi_to_minus_pi_and_keeps_the_interval_half_open():
    assert wrap_angle(math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(-math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(3 * math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(math.pi - 1e-9) == pytest.approx(math.pi - 1e-9)
    assert wrap_angle(-math.pi + 1e-9) == pytest.approx(-math.pi + 1e-9)
    assert wrap_angle(2 * math.pi + 0.25) == pytest.approx(0.25)
    assert wrap_angle(-0.25 - 4 * math.pi) == pytest.approx(-0.25)


def test_wrap_angle_is_vectorised():
    wrapped = wrap_angle(np.array([0.0, math.pi, 1.5 * math.pi, -1.5 * math.pi]))
    np.testing.assert_allclose(wrapped, [0.0, -math.pi, -0.5 * math.pi, 0.5 * math.pi])


@settings(max_examples=200, deadline=None)
@given(pose, pose)
def test_relative_pose_undoes_compose(origin, delta):
    target = compose(np.array(origin), np.array(delta))
    recovered = relative_pose(np.array(origin), target)
    np.testing.assert_allclose(recovered[:2], delta[:2], atol=1e-9)
    assert angle_difference(recovered[2], delta[2]) < 1e-9


@settings(max_examples=200, deadline=None)
@given(pose, pose)
def test_compose_undoes_relative_pose(origin, target):
    delta = relative_pose(np.array(origin), np.array(target))
    recovered = compose(np.array(origin), delta)
    np.testing.assert_allclose(recovered[:2], target[:2], atol=1e-9)
    assert angle_difference(recovered[2], target[2]) < 1e-9


def test_relative_pose_by_hand():
    # A robot at (1, 2) facing +y sees a point at (1, 3) straight ahead, 1 m away, and a
    # pose facing -x as turned left by 90 degrees.
    rel = relative_pose(np.array([1.0, 2.0, math.pi / 2]), np.array([1.0, 3.0, math.pi]))
    np.testing.assert_allclose(rel, [1.0, 0.0, math.pi / 2], atol=1e-12)
    rel = relative_pose(np.array([1.0, 2.0, math.pi / 2]), np.array([0.0, 2.0, 0.0]))
    np.testing.assert_allclose(rel, [0.0, 1.0, -math.pi / 2], atol=1e-12)


def test_relative_pose_broadcasts_one_target_against_many_origins():
    origins = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, math.pi / 2]])
    rel = relative_pose(origins, np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(rel, [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0],
                                     [1.0, -1.0, -math.pi / 2]], atol=1e-12)


@pytest.mark.parametrize('yaw', [0.0, 0.3, -2.0, math.pi - 1e-6, -math.pi])
def test_quaternion_round_trip(yaw):
    assert angle_difference(yaw_from_quaternion(*quaternion_from_yaw(yaw)), yaw) < 1e-12


def history(*samples: tuple[int, tuple[float, float, float]], capacity: int = 16):
    result = PoseHistory(capacity)
    for stamp, sample in samples:
        assert result.insert(stamp, sample)
    return result


def test_interpolation_is_linear_in_x_and_y():
    poses, valid = history((0, (0.0, 0.0, 0.0)), (100, (1.0, -2.0, 0.0))).interpolate(
        [0, 25, 50, 100])
    assert valid.all()
    np.testing.assert_allclose(poses[:, :2], [[0.0, 0.0], [0.25, -0.5], [0.5, -1.0],
                                              [1.0, -2.0]], atol=1e-12)


def test_interpolation_takes_the_short_arc_across_pi():
    # From just below +pi to just above -pi is a 0.2 rad turn through pi, not 2pi - 0.2.
    samples = history((0, (0.0, 0.0, math.pi - 0.1)), (100, (0.0, 0.0, -math.pi + 0.1)))
    poses, valid = samples.interpolate([25, 50, 75])
    assert valid.all()
    assert angle_difference(poses[0, 2], math.pi - 0.05) < 1e-12
    assert angle_difference(poses[1, 2], math.pi) < 1e-12
    assert angle_difference(poses[2, 2], -math.pi + 0.05) < 1e-12
    assert np.all((poses[:, 2] >= -math.pi) & (poses[:, 2] < math.pi))


def test_interpolation_short_arc_the_other_way():
    samples = history((0, (0.0, 0.0, -math.pi + 0.1)), (100, (0.0, 0.0, math.pi - 0.1)))
    poses, _ = samples.interpolate([50])
    assert angle_difference(poses[0, 2], math.pi) < 1e-12


def test_stamps_outside_the_history_are_invalid_not_extrapolated():
    samples = history((100, (0.0, 0.0, 0.0)), (200, (1.0, 0.0, 0.0)))
    poses, valid = samples.interpolate([99, 100, 200, 201])
    assert valid.tolist() == [False, True, True, False]
    assert np.isnan(poses[[0, 3]]).all()
    np.testing.assert_allclose(poses[[1, 2], 0], [0.0, 1.0])


def test_empty_and_single_sample_histories():
    poses, valid = PoseHistory(4).interpolate([5])
    assert not valid.any() and np.isnan(poses).all()
    samples = history((10, (1.0, 2.0, 0.5)))
    poses, valid = samples.interpolate([9, 10, 11])
    assert valid.tolist() == [False, True, False]
    np.testing.assert_allclose(poses[1], [1.0, 2.0, 0.5])


def test_out_of_order_insert_is_placed_by_stamp():
    samples = history((0, (0.0, 0.0, 0.0)), (200, (2.0, 0.0, 0.0)))
    assert samples.insert(100, (10.0, 0.0, 0.0))  # a detour: must be used at t=100
    assert samples.stamps.tolist() == [0, 100, 200]
    poses, _ = samples.interpolate([50, 100, 150])
    np.testing.assert_allclose(poses[:, 0], [5.0, 10.0, 6.0])
    assert samples.last_stamp == 200 and samples.first_stamp == 0


def test_duplicate_stamp_is_ignored():
    samples = history((0, (0.0, 0.0, 0.0)), (100, (1.0, 0.0, 0.0)))
    assert not samples.insert(100, (5.0, 5.0, 0.0))
    assert not samples.insert(0, (5.0, 5.0, 0.0))
    assert len(samples) == 2
    np.testing.assert_allclose(samples.poses[:, 0], [0.0, 1.0])


def test_capacity_keeps_the_newest_samples():
    samples = PoseHistory(3)
    for stamp in range(10):
        samples.insert(stamp, (float(stamp), 0.0, 0.0))
        assert len(samples) == min(stamp + 1, 3)
    assert samples.stamps.tolist() == [7, 8, 9]
    _, valid = samples.interpolate([6, 7])
    assert valid.tolist() == [False, True]


def test_capacity_survives_many_compactions_with_out_of_order_inserts():
    samples = PoseHistory(4)
    reference: dict[int, float] = {}
    for stamp in range(0, 400, 2):
        samples.insert(stamp, (float(stamp), 0.0, 0.0))
        reference[stamp] = float(stamp)
        if stamp % 6 == 0 and stamp > 2:
            samples.insert(stamp - 1, (float(stamp - 1), 0.0, 0.0))
            reference[stamp - 1] = float(stamp - 1)
        newest = sorted(reference)[-len(samples):]
        assert samples.stamps.tolist() == newest
        assert samples.poses[:, 0].tolist() == [reference[s] for s in newest]


def test_drop_before_keeps_one_bracketing_sample():
    samples = history(*((stamp, (float(stamp), 0.0, 0.0)) for stamp in (0, 10, 20, 30)))
    samples.drop_before(25)
    assert samples.stamps.tolist() == [20, 30]
    _, valid = samples.interpolate([25])
    assert valid.all()
    samples.drop_before(20)  # exactly on a sample: that sample is the bracket
    assert samples.stamps.tolist() == [20, 30]
    samples.drop_before(5)  # nothing older to drop
    assert samples.stamps.tolist() == [20, 30]


def test_clear_forgets_everything():
    samples = history((0, (0.0, 0.0, 0.0)), (10, (1.0, 0.0, 0.0)))
    samples.clear()
    assert len(samples) == 0 and samples.last_stamp is None and samples.first_stamp is None
    assert samples.insert(5, (0.0, 0.0, 0.0))  # older than before the clear: fine now


def test_capacity_must_hold_two_samples():
    with pytest.raises(ValueError):
        PoseHistory(1)


def test_no_interpolation_across_a_gap_longer_than_max_gap():
    samples = history(*((stamp, (float(stamp), 0.0, 0.0)) for stamp in (0, 10, 50, 60)))
    poses, valid = samples.interpolate([5, 10, 30, 50, 55], max_gap=20)
    assert valid.tolist() == [True, True, False, True, True]  # the samples themselves count
    np.testing.assert_allclose(poses[valid][:, 0], [5.0, 10.0, 50.0, 55.0])
    assert np.isnan(poses[2]).all()
    _, valid = samples.interpolate([30], max_gap=40)
    assert valid.all()
    assert [samples.in_gap(s, 20) for s in (5, 10, 30, 50, 70)] == [
        False, False, True, False, False]
