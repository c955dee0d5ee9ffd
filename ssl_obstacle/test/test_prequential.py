"""The prequential window (core/prequential.py): a ring of scored frames and its AUCs."""

import math

import numpy as np
import pytest
from ssl_obstacle.core.metrics import auc_by_distance, roc_auc
from ssl_obstacle.core.prequential import PrequentialWindow


def frames(first: int, count: int, sensors: int = 2, distances: int = 3
           ) -> tuple[np.ndarray, np.ndarray]:
    """Return frames numbered ``first`` … whose every cell holds the frame's number."""
    numbers = np.arange(first, first + count, dtype=np.float32)
    probabilities = np.broadcast_to(numbers[:, None, None] / 100.0,
                                    (count, sensors, distances)).copy()
    labels = np.broadcast_to((numbers % 2)[:, None, None], (count, sensors, distances)).copy()
    return probabilities, labels


def numbers(window: PrequentialWindow) -> list[int]:
    """Return the numbers of the frames held, in the order the window returns them."""
    probabilities, labels = window.arrays()
    assert probabilities.shape == labels.shape
    np.testing.assert_array_equal(labels[:, 0, 0], np.round(probabilities[:, 0, 0] * 100) % 2)
    return [int(round(p * 100)) for p in probabilities[:, 0, 0]]


def test_an_empty_window_holds_nothing_and_scores_nan():
    window = PrequentialWindow(4, 2, 3)
    probabilities, labels = window.arrays()
    assert probabilities.shape == labels.shape == (0, 2, 3)
    assert window.count == 0 and window.scored == 0
    by_distance, overall = window.aucs()
    assert by_distance.shape == (3,) and np.isnan(by_distance).all() and math.isnan(overall)
    with pytest.raises(ValueError):
        PrequentialWindow(0, 2, 3)


def test_frames_are_held_oldest_first_before_and_after_the_ring_wraps():
    window = PrequentialWindow(5, 2, 3)
    for number in range(3):  # one frame (S, D) at a time
        probabilities, labels = frames(number, 1)
        window.add(probabilities[0], labels[0])
    assert numbers(window) == [0, 1, 2]
    assert (window.count, window.scored) == (3, 3)
    window.add(*frames(3, 4))  # wraps: 0 and 1 give way
    assert numbers(window) == [2, 3, 4, 5, 6]
    assert (window.count, window.scored) == (5, 7)
    window.add(*frames(7, 2))
    assert numbers(window) == [4, 5, 6, 7, 8]
    assert (window.count, window.scored) == (5, 9)


@pytest.mark.parametrize('before', [0, 1, 3])
def test_a_batch_bigger_than_the_ring_leaves_its_newest_frames_in_order(before):
    window = PrequentialWindow(4, 2, 3)
    if before:
        window.add(*frames(100, before))
    window.add(*frames(0, 10))
    assert numbers(window) == [6, 7, 8, 9]
    assert (window.count, window.scored) == (4, before + 10)
    window.add(*frames(10, 1))  # and the ring goes on from there
    assert numbers(window) == [7, 8, 9, 10]


def test_a_batch_exactly_the_ring_size_replaces_every_frame():
    window = PrequentialWindow(3, 2, 3)
    window.add(*frames(0, 2))
    window.add(*frames(10, 3))
    assert numbers(window) == [10, 11, 12]
    window.add(*frames(20, 0))  # an empty batch changes nothing
    assert numbers(window) == [10, 11, 12] and window.scored == 5


def test_arrays_are_copies():
    window = PrequentialWindow(4, 2, 3)
    window.add(*frames(0, 3))
    for held in ([0, 1, 2], [1, 2, 3, 4]):  # before the ring wraps, then after
        probabilities, labels = window.arrays()
        probabilities[:] = 0.5
        labels[:] = np.nan
        assert numbers(window) == held
        window.add(*frames(3, 2))


def test_clear_forgets_every_frame_and_starts_the_ring_again():
    window = PrequentialWindow(3, 2, 3)
    window.add(*frames(0, 5))
    window.clear()
    assert (window.count, window.scored) == (0, 0)
    assert window.arrays()[0].shape == (0, 2, 3)
    assert math.isnan(window.aucs()[1])
    window.add(*frames(40, 2))
    assert numbers(window) == [40, 41] and (window.count, window.scored) == (2, 2)


def test_aucs_on_hand_made_cases():
    window = PrequentialWindow(4, 2, 3)
    probabilities = np.zeros((4, 2, 3), np.float32)
    labels = np.full((4, 2, 3), np.nan, np.float32)
    # Distance 0: perfectly ranked (AUC 1). Distance 1: reversed (AUC 0). Distance 2: one
    # class only (NaN). Unknown cells carry high scores that would spoil the ranks.
    probabilities[:, 0, 0] = [0.9, 0.8, 0.1, 0.2]
    labels[:, 0, 0] = [1, 1, 0, 0]
    probabilities[:, 1, 1] = [0.9, 0.1, 0.95, 0.99]
    labels[:, 1, 1] = [0, 1, np.nan, np.nan]
    probabilities[:, :, 2] = 0.3
    labels[:, 0, 2] = 0.0
    window.add(probabilities, labels)
    by_distance, overall = window.aucs()
    np.testing.assert_array_equal(by_distance[:2], [1.0, 0.0])
    assert np.isnan(by_distance[2])
    np.testing.assert_allclose(by_distance, auc_by_distance(probabilities, labels))
    assert overall == pytest.approx(roc_auc(probabilities, labels))
    # Known cells pooled: positives 0.9, 0.8, 0.1 against negatives 0.1, 0.2, 0.9 and 0.3
    # four times (distance 2 of sensor 0), counted pair by pair (ties half): 13 / 21.
    positives = np.array([0.9, 0.8, 0.1])
    negatives = np.array([0.1, 0.2, 0.9] + [0.3] * 4)
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    assert wins == 13.0
    assert overall == pytest.approx(wins / (len(positives) * len(negatives)))


def test_aucs_count_only_the_frames_held():
    window = PrequentialWindow(4, 1, 1)
    # Four reversed frames, then four perfectly ranked ones push them all out.
    window.add(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1]))
    assert window.aucs()[1] == 0.0
    window.add(np.array([0.9, 0.1, 0.8]), np.array([1, 0, 1]))
    held = window.arrays()
    assert window.aucs()[1] == pytest.approx(roc_auc(*held))  # 0.1 (label 1) still held
    np.testing.assert_array_equal(held[1].ravel(), [1, 1, 0, 1])
    window.add(np.array([0.2]), np.array([0]))
    assert window.aucs()[1] == 1.0
    np.testing.assert_array_equal(window.aucs()[0], [1.0])
