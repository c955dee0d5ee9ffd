"""The replay buffer of the online learner (core/replay_buffer.py)."""

import threading

import numpy as np
import pytest

from ssl_obstacle.core.replay_buffer import ReplayBuffer

SENSORS, DISTANCES = 5, 31
SHAPE = (8, 10, 3)


def frame(value: int, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    image = np.full(SHAPE, value % 256, dtype=np.uint8)
    labels = np.full((SENSORS, DISTANCES), np.nan, dtype=np.float32)
    labels[:, :5] = 0.0
    if positive:
        labels[2, 3] = 1.0
    return image, labels


def make(capacity: int = 10, **kwargs) -> ReplayBuffer:
    return ReplayBuffer(capacity, SHAPE, SENSORS, DISTANCES, seed=1, **kwargs)


def test_add_stores_copies_and_sample_returns_them():
    buffer = make()
    image, labels = frame(7, True)
    slot = buffer.add(image, labels, 1234)
    image[:] = 0  # the caller reuses its array
    assert len(buffer) == 1 and buffer.positive_frames == 1
    images, sampled, slots = buffer.sample(4)
    assert images.shape == (4, *SHAPE) and images.dtype == np.uint8
    assert sampled.shape == (4, SENSORS, DISTANCES) and sampled.dtype == np.float32
    assert (images == 7).all() and (slots == slot).all() and buffer.stamps[slot] == 1234
    np.testing.assert_array_equal(sampled[0], labels)  # NaN in the same places


def test_shapes_are_checked_and_empty_buffer_cannot_sample():
    buffer = make()
    with pytest.raises(ValueError):
        buffer.sample(1)
    with pytest.raises(ValueError):
        buffer.add(np.zeros((8, 10, 3), dtype=np.float32), frame(0, False)[1], 0)
    with pytest.raises(ValueError):
        buffer.add(frame(0, False)[0], np.zeros((5, 30)), 0)


def test_fractional_and_unknown_labels_decide_positive_bearing():
    buffer = make()
    labels = np.full((SENSORS, DISTANCES), np.nan, dtype=np.float32)
    assert not buffer.is_positive(labels)
    labels[0, 0] = 0.4
    assert not buffer.is_positive(labels)
    labels[1, 1] = 0.5
    assert buffer.is_positive(labels)


def test_capacity_is_a_hard_bound_and_fifo_when_balanced():
    buffer = make(capacity=10, min_pool_fraction=0.0)
    for i in range(35):
        buffer.add(*frame(i, i % 2 == 0), i)
        assert len(buffer) == min(i + 1, 10)
    counters = buffer.counters()
    assert counters == {'added': 35, 'evicted': 25, 'held': 10,
                        'positive_frames': buffer.positive_frames}
    assert sorted(buffer.stamps.tolist()) == list(range(25, 35))  # the newest ten


def test_rare_positives_survive_a_flood_of_negatives():
    """10 000 negatives and 100 positives into 1000 slots: every positive is kept."""
    buffer = ReplayBuffer(1000, (2, 2, 3), SENSORS, DISTANCES, seed=0)
    rng = np.random.default_rng(0)
    positive_at = set(rng.choice(10_100, size=100, replace=False).tolist())
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    for i in range(10_100):
        buffer.add(image, frame(i, i in positive_at)[1], i)
    assert len(buffer) == 1000 and buffer.evicted == 9_100
    assert buffer.positive_frames == 100  # 10 % of the slots against a 1 % share of the flow
    held = set(buffer.stamps[buffer.positive].tolist())
    assert held == positive_at
    # The negatives held are the newest ones.
    negatives = np.sort(buffer.stamps[~buffer.positive])
    assert negatives.min() > 10_100 - 1000 - 100


def test_positives_are_capped_at_their_quota_then_age_out():
    buffer = make(capacity=100, min_pool_fraction=0.3)
    for i in range(100):
        buffer.add(*frame(i, False), i)
    for i in range(100, 1100):  # only positives now: negatives are protected at 30 %
        buffer.add(*frame(i, True), i)
    assert len(buffer) == 100
    assert 100 - buffer.positive_frames >= 29
    assert buffer.positive_frames >= 69
    # The positives held are the newest.
    assert buffer.stamps[buffer.positive].min() >= 1100 - 71


def test_sampling_balances_positive_and_negative_frames():
    buffer = make(capacity=1000)
    for i in range(1000):
        buffer.add(*frame(i, i % 20 == 0), i)  # 5 % positive-bearing
    _, labels, slots = buffer.sample(20_000, np.random.default_rng(3))
    positive_share = buffer.positive[slots].mean()
    assert 0.47 < positive_share < 0.53
    assert (np.nanmax(labels, axis=(1, 2)) >= 0.5).mean() == pytest.approx(positive_share)
    # Within each pool the draw is uniform: every positive frame is drawn.
    assert set(slots[buffer.positive[slots]].tolist()) == set(np.flatnonzero(buffer.positive))


def test_sampling_keeps_the_natural_share_when_positives_are_common():
    buffer = make(capacity=100, min_pool_fraction=0.0)
    for i in range(100):
        buffer.add(*frame(i, i % 10 != 0), i)  # 90 % positive-bearing
    _, _, slots = buffer.sample(20_000, np.random.default_rng(4))
    assert 0.88 < buffer.positive[slots].mean() < 0.92


def test_single_pool_buffers_sample_it():
    buffer = make()
    for i in range(5):
        buffer.add(*frame(i, False), i)
    _, _, slots = buffer.sample(50)
    assert not buffer.positive[slots].any()


def test_concurrent_add_and_sample_never_tear_frames():
    """Each frame's image and labels agree (both encode one value) under contention."""
    buffer = make(capacity=64)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(offset: int) -> None:
        try:
            for i in range(3000):
                value = (offset + i) % 200
                image = np.full(SHAPE, value, dtype=np.uint8)
                labels = np.full((SENSORS, DISTANCES), value / 1000, dtype=np.float32)
                labels[0, 0] = 1.0 if value % 7 == 0 else 0.0
                buffer.add(image, labels, value)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    def reader() -> None:
        try:
            while not stop.is_set():
                if len(buffer) == 0:
                    continue
                images, labels, _ = buffer.sample(32)
                values = images[:, 0, 0, 0]
                assert (images == values[:, None, None, None]).all()
                np.testing.assert_allclose(labels[:, 1, 1], values / 1000, rtol=1e-6)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k * 50,)) for k in range(2)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    counters = buffer.counters()
    assert counters['added'] == 6000 and counters['held'] == 64
    assert counters['evicted'] == 6000 - 64


def grow_and_train(buffer: ReplayBuffer, rng: np.random.Generator) -> np.ndarray:
    """Add 20 frames at a time and draw 10 batches of 16 after each: a run in miniature."""
    for step in range(10):
        for index in range(20):
            buffer.add(*frame(step * 20 + index, positive=index % 4 == 0), step * 20 + index)
        for _ in range(10):
            buffer.sample(16, rng)
    return buffer.draws[:200].copy()


@pytest.mark.parametrize('even', [False, True])
def test_even_exposure_trains_late_frames_about_as_often_as_early_ones(even):
    draws = grow_and_train(make(capacity=400, even_exposure=even), np.random.default_rng(0))
    assert draws.sum() == 10 * 10 * 16
    first, last = draws[:40].mean(), draws[-40:].mean()
    if even:  # 8 draws per frame on average; the last 40 had only 2 rounds to catch up
        assert 0.6 < last / first <= 1.5
    else:  # uniform: the first frames were drawn >10x as often as the last ones
        assert first / last > 10.0


def test_a_reused_slot_starts_with_no_draws_and_pools_keep_their_shares():
    buffer = make(capacity=4, even_exposure=True, positive_sample_fraction=0.5)
    for index in range(4):
        buffer.add(*frame(index, positive=index == 0), index)
    _, labels, _ = buffer.sample(400, np.random.default_rng(1))
    positives = np.nanmax(labels, axis=(1, 2)) >= 0.5
    assert 0.4 < positives.mean() < 0.6  # the positive share still holds
    assert buffer.draws[:4].min() > 0
    slot = buffer.add(*frame(9, positive=False), 9)  # evicts a negative, slot reused
    assert buffer.draws[slot] == 0
