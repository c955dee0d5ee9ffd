"""Implied blocking: cells beyond an obstacle the centre sensor saw, filled for training."""

import math

import numpy as np
import pytest
from ssl_obstacle.core.geometry import compose
from ssl_obstacle.core.implied_labels import BlockedCompletion, blocking_gaps, complete_blocked
from ssl_obstacle.core.params import DEFAULT_DISTANCES
from ssl_obstacle.core.thymio import BODY_OFFSET, BODY_RADIUS, SENSOR_NAMES
from ssl_obstacle.sim.ground_truth import label_grid
from ssl_obstacle.sim.proximity import ideal_readings
from ssl_obstacle.sim.world import make_world

CENTER = SENSOR_NAMES.index('center')


def test_only_the_centre_sensor_covers_the_path_and_its_gap_is_the_geometry():
    gaps = blocking_gaps(SENSOR_NAMES)
    assert [math.isfinite(g) for g in gaps] == [False, False, True, False, False]
    # On the axis at full range: the hit is 0.08 + 0.14 ahead of base_link; the body's
    # front (0.03 + 0.06 ahead) reaches it after 0.13. The cone's edge is a little worse:
    x = 0.08 + 0.14 * math.cos(0.15)
    y = 0.14 * math.sin(0.15)
    edge = x - BODY_OFFSET - math.sqrt(BODY_RADIUS ** 2 - y ** 2)
    assert edge > 0.13
    assert gaps[CENTER] == pytest.approx(edge, abs=1e-9)
    assert blocking_gaps(('a', 'b')).tolist() == pytest.approx([np.nan] * 2, nan_ok=True)


def grid(seen_at: dict[int, float] | None = None, known_up_to: int = 31) -> np.ndarray:
    labels = np.full((5, 31), np.nan, np.float32)
    labels[:, :known_up_to] = 0.0
    for column, value in (seen_at or {}).items():
        labels[CENTER, column] = value
    return labels


def test_unknown_cells_from_the_first_sighting_plus_the_gap_become_obstacles():
    distances = np.asarray(DEFAULT_DISTANCES)
    gaps = blocking_gaps(SENSOR_NAMES)
    labels = grid({5: 1.0, 8: 1.0}, known_up_to=9)  # robot turned away after 8 cm
    completed = complete_blocked(labels, distances, gaps)
    first = int(np.argmax(distances >= 0.05 + gaps[CENTER] - 1e-6))
    assert first == 19  # 0.05 + 0.132 -> 0.19
    assert np.all(completed[:, first:] == 1.0)
    assert np.isnan(completed[:, 9:first]).all()  # between: still unknown
    np.testing.assert_array_equal(completed[:, :9], labels[:, :9])  # observed: untouched
    assert np.isnan(labels[:, first:]).all()  # the input was not modified


def test_observed_cells_win_and_weak_or_side_sightings_imply_nothing():
    distances = np.asarray(DEFAULT_DISTANCES)
    gaps = blocking_gaps(SENSOR_NAMES)
    everything_known = grid({3: 1.0})
    np.testing.assert_array_equal(complete_blocked(everything_known, distances, gaps),
                                  everything_known)
    minority = grid({3: 0.4}, known_up_to=5)  # fewer than half the readings saw it
    np.testing.assert_array_equal(complete_blocked(minority, distances, gaps), minority)
    side = grid(known_up_to=5)
    side[SENSOR_NAMES.index('left'), 2] = 1.0  # the robot may drive past it
    np.testing.assert_array_equal(complete_blocked(side, distances, gaps), side)


def test_batches_complete_each_frame_on_its_own():
    distances = np.asarray(DEFAULT_DISTANCES)
    gaps = blocking_gaps(SENSOR_NAMES)
    batch = np.stack([grid({0: 1.0}, known_up_to=1), grid(known_up_to=1)])
    completed = complete_blocked(batch, distances, gaps)
    assert np.all(completed[0, :, 14:] == 1.0) and np.isnan(completed[0, :, 1:14]).all()
    np.testing.assert_array_equal(completed[1], batch[1])
    completion = BlockedCompletion(SENSOR_NAMES, distances)
    assert completion.active and completion.describe() == 'center: +0.132 m'
    np.testing.assert_array_equal(completion(batch), completed)
    inactive = BlockedCompletion(('a', 'b', 'c', 'd', 'e'), distances)
    assert not inactive.active
    np.testing.assert_array_equal(inactive(batch), batch)


def test_every_implied_cell_is_an_obstacle_in_the_simulators_ground_truth():
    # Soundness against the world itself: wherever the centre sensor really sees something
    # from p + d' (and the body is free there), the exact grid of p is 1 for every sensor
    # from d' + gap on. 2,000 random poses in two layouts.
    gap = blocking_gaps(SENSOR_NAMES)[CENTER]
    distances = np.asarray(DEFAULT_DISTANCES)
    rng = np.random.default_rng(3)
    checked = 0
    for name in ('boxes', 'pillars'):
        world = make_world(name)
        for _ in range(1000):
            pose = np.array([*rng.uniform(-0.85, 0.85, 2), rng.uniform(-math.pi, math.pi)])
            truth = label_grid(world, pose)
            for column in range(0, 17, 4):
                ahead = compose(pose, np.array([distances[column], 0.0, 0.0]))
                if truth[:, column].all() or ideal_readings(world, ahead)[CENTER] < 0:
                    continue  # body already blocked there, or nothing seen
                implied = distances >= distances[column] + gap - 1e-6
                assert truth[:, implied].all(), (name, pose, column)
                checked += 1
    assert checked > 200
