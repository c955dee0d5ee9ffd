"""The pose-indexed frame buffer (core/frame_buffer.py)."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from ssl_obstacle.core.frame_buffer import PoseIndexedFrameBuffer


def make_buffer(capacity: int = 8, cell_size: float = 0.5,
                scan_limit: int = 256) -> PoseIndexedFrameBuffer:
    return PoseIndexedFrameBuffer(capacity, 2, 3, cell_size, scan_limit=scan_limit)


def test_add_stores_pose_trigonometry_and_zeroed_tallies():
    buffer = make_buffer()
    slot = buffer.add(1000, 1.0, 2.0, 0.5, payload='img')
    assert len(buffer) == 1 and 1000 in buffer and 999 not in buffer
    assert buffer.stamp_of(slot) == 1000 and buffer.stamps[slot] == 1000
    np.testing.assert_array_equal(buffer.poses[slot], [1.0, 2.0, 0.5])
    assert buffer.cos[slot] == math.cos(0.5) and buffer.sin[slot] == math.sin(0.5)
    assert not buffer.tallies[slot].any()
    assert buffer.counts.shape == (8, 2, 3) and buffer.positives.shape == (8, 2, 3)


def test_remove_returns_payload_and_frees_the_slot_with_a_nan_position():
    buffer = make_buffer()
    slot = buffer.add(1000, 1.0, 2.0, 0.5, payload='img')
    buffer.counts[slot, 1, 2] = 7
    assert buffer.remove(slot) == 'img'
    assert len(buffer) == 0 and 1000 not in buffer
    assert np.isnan(buffer.poses[slot, :2]).all()
    again = buffer.add(2000, 0.0, 0.0, 0.0, payload=None)
    assert again == slot  # reused, and its tallies start from zero
    assert not buffer.tallies[again].any()


def test_lowest_free_slot_is_reused_first_and_high_water_tracks_the_prefix():
    buffer = make_buffer()
    slots = [buffer.add(stamp, 0.0, 0.0, 0.0, None) for stamp in range(5)]
    assert slots == [0, 1, 2, 3, 4] and buffer.high_water == 5
    buffer.remove(3)
    buffer.remove(1)
    assert buffer.add(10, 0.0, 0.0, 0.0, None) == 1
    assert buffer.add(11, 0.0, 0.0, 0.0, None) == 3
    assert buffer.high_water == 5
    for slot in buffer.slots_in_order():
        buffer.remove(slot)
    assert buffer.high_water == 0  # empty again: the prefix restarts


def test_full_and_oldest_follow_insertion_order_across_removals():
    buffer = make_buffer(capacity=3)
    for stamp in (10, 20, 30):
        buffer.add(stamp, 0.0, 0.0, 0.0, None)
    assert buffer.full
    assert buffer.oldest_stamp() == 10
    buffer.remove(buffer._slot_of_stamp[20])  # from the middle
    assert buffer.oldest_stamp() == 10
    buffer.remove(buffer.oldest())
    assert buffer.oldest_stamp() == 30 and not buffer.full
    buffer.add(40, 0.0, 0.0, 0.0, None)  # reuses the slot frame 10 had
    assert [buffer.stamp_of(s) for s in buffer.slots_in_order()] == [30, 40]
    assert [buffer.stamp_of(s) for s in buffer.slots_up_to(35)] == [30]
    assert buffer.slots_up_to(29) == []


def test_clear_reports_how_many_were_held():
    buffer = make_buffer()
    for stamp in range(4):
        buffer.add(stamp, float(stamp), 0.0, 0.0, None)
    assert buffer.clear() == 4
    assert len(buffer) == 0 and buffer.oldest() is None and buffer.high_water == 0
    assert buffer.near(0.0, 0.0).size == 0


def test_candidates_scan_the_prefix_while_short_and_ask_the_grid_beyond():
    buffer = make_buffer(scan_limit=2)
    buffer.add(1, 0.0, 0.0, 0.0, None)
    buffer.add(2, 100.0, 0.0, 0.0, None)
    assert buffer.candidates(0.0, 0.0) == slice(0, 2)
    buffer.add(3, 0.1, 0.0, 0.0, None)
    near = buffer.candidates(0.0, 0.0)
    assert sorted(near.tolist()) == [0, 2]  # the frame 100 m away is not a neighbour


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(-3, 3)), min_size=1, max_size=40),
       st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
       st.floats(0.05, 1.0))
def test_near_returns_every_frame_closer_than_one_cell_size(positions, query, cell_size):
    # Closer than, not at: a frame exactly one cell size away can sit two cells over (the
    # labeler makes its cells a micrometre wider than any distance that can match).
    buffer = make_buffer(capacity=64, cell_size=cell_size)
    for stamp, (x, y) in enumerate(positions):
        buffer.add(stamp, x, y, 0.0, None)
    found = set(buffer.near(*query).tolist())
    for slot, (x, y) in enumerate(positions):
        if math.hypot(x - query[0], y - query[1]) < cell_size * (1 - 1e-9):
            assert slot in found


def test_near_follows_removals():
    buffer = make_buffer(cell_size=1.0)
    slot = buffer.add(1, 0.2, 0.2, 0.0, None)
    assert buffer.near(0.0, 0.0).tolist() == [slot]
    buffer.remove(slot)
    assert buffer.near(0.0, 0.0).size == 0
    assert buffer._grid == {}  # empty cells do not linger


def test_cell_size_has_a_floor():
    assert make_buffer(cell_size=0.0).cell_size == pytest.approx(1e-3)
