"""ROC AUC per cell, per distance and band, and bootstrap intervals (core/metrics.py)."""

import itertools
import math

import numpy as np
import pytest

from ssl_obstacle.core.metrics import (auc_by_band, auc_by_distance, auc_grid, auc_mean,
                                       bootstrap_auc_by_distance_ci, bootstrap_auc_ci,
                                       roc_auc)


def pairwise_auc(scores, targets) -> float:
    """Return AUC by its definition: share of (positive, negative) pairs ordered right."""
    positives = [s for s, t in zip(scores, targets) if t >= 0.5]
    negatives = [s for s, t in zip(scores, targets) if t < 0.5]
    if not positives or not negatives:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0
               for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_roc_auc_hand_computed_cases():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    # Pairs (p, n): (0.4 vs 0.1) win, (0.4 vs 0.4) tie, (0.4 vs 0.7) loss, 0.9 wins all.
    assert roc_auc([0.1, 0.4, 0.4, 0.7, 0.9], [0, 0, 1, 0, 1]) == pytest.approx(4.5 / 6)
    assert math.isnan(roc_auc([0.1, 0.9], [1, 1]))
    assert math.isnan(roc_auc([0.1, 0.9], [0, 0]))
    assert math.isnan(roc_auc([], []))
    # Fractional targets count by majority; NaN targets are skipped.
    assert roc_auc([0.2, 0.3, 0.9, 5.0], [0.4, 0.6, 0.7, np.nan]) == 1.0


def test_roc_auc_matches_the_pairwise_definition_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=40) / 4.0
        targets = rng.random(40) < 0.4
        assert roc_auc(scores, targets) == pytest.approx(pairwise_auc(scores, targets))


def test_auc_grid_and_by_distance_use_known_cells_only():
    probabilities = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.7, 0.3]], [[0.1, 0.6]]])
    labels = np.array([[[1, np.nan]], [[0, 1]], [[np.nan, 1]], [[0, 1]]], dtype=np.float32)
    grid = auc_grid(probabilities, labels)
    assert grid.shape == (1, 2)
    assert grid[0, 0] == 1.0  # frames 0, 1, 3: positive 0.9 above 0.2 and 0.1
    assert math.isnan(grid[0, 1])  # only positives are known
    by_distance = auc_by_distance(probabilities, labels)
    assert by_distance[0] == 1.0 and math.isnan(by_distance[1])
    assert auc_mean(grid) == 1.0
    assert math.isnan(auc_mean(np.full((2, 2), np.nan)))


def test_auc_by_distance_pools_sensors():
    rng = np.random.default_rng(1)
    probabilities = rng.random((50, 3, 4))
    labels = (rng.random((50, 3, 4)) < 0.5).astype(np.float32)
    labels[rng.random(labels.shape) < 0.2] = np.nan
    pooled = auc_by_distance(probabilities, labels)
    for d in range(4):
        assert pooled[d] == pytest.approx(roc_auc(probabilities[:, :, d].ravel(),
                                                  labels[:, :, d].ravel()))


def test_auc_by_band_averages_cells_of_each_band():
    distances = np.round(np.arange(31) * 0.01, 2)
    grid = np.empty((2, 31))
    grid[:, :10], grid[:, 10:20], grid[:, 20:] = 0.9, 0.8, 0.7
    grid[0, 25] = np.nan
    bands = auc_by_band(grid, distances)
    assert bands == pytest.approx({'0-10cm': 0.9, '10-20cm': 0.8, '20-30cm': 0.7})


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(2)

    def data(count):
        labels = (rng.random((count, 2, 3)) < 0.4).astype(np.float32)
        probabilities = np.clip(0.3 * labels + rng.normal(0.4, 0.2, labels.shape), 0, 1)
        labels[rng.random(labels.shape) < 0.25] = np.nan
        return probabilities, labels

    probabilities, labels = data(300)
    grid = auc_grid(probabilities, labels)
    low, high = bootstrap_auc_ci(probabilities, labels, n_boot=300,
                                 rng=np.random.default_rng(3))
    assert low.shape == high.shape == (2, 3)
    assert np.all(low <= grid) and np.all(grid <= high)
    assert np.all(high - low > 0.01)
    big_p, big_l = data(3000)
    big_low, big_high = bootstrap_auc_ci(big_p, big_l, n_boot=100,
                                         rng=np.random.default_rng(3))
    assert np.mean(big_high - big_low) < 0.6 * np.mean(high - low)
    d_low, d_high = bootstrap_auc_by_distance_ci(probabilities, labels, n_boot=200,
                                                 rng=np.random.default_rng(4))
    pooled = auc_by_distance(probabilities, labels)
    assert np.all(d_low <= pooled) and np.all(pooled <= d_high)


def test_bootstrap_with_unit_weights_equals_the_rank_auc():
    """One resample that happens to pick every frame once gives the exact AUC."""
    from ssl_obstacle.core.metrics import _prepare, _weighted_auc

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, size=80) / 5.0
    labels = (rng.random(80) < 0.3).astype(np.float64)
    labels[rng.random(80) < 0.2] = np.nan
    prepared = _prepare(scores, labels)
    weights = np.ones((1, 80))
    assert _weighted_auc(weights, *prepared)[0] == pytest.approx(roc_auc(scores, labels))
    twice = np.ones((1, 80))
    twice[0, 3] = 2
    doubled = np.r_[scores, scores[3]], np.r_[labels, labels[3]]
    assert _weighted_auc(twice, *prepared)[0] == pytest.approx(roc_auc(*doubled))


def test_bootstrap_of_one_class_cells_is_nan():
    probabilities = np.random.default_rng(6).random((30, 1, 2))
    labels = np.zeros((30, 1, 2), dtype=np.float32)
    labels[::2, 0, 1] = 1.0
    low, high = bootstrap_auc_ci(probabilities, labels, n_boot=20,
                                 rng=np.random.default_rng(7))
    assert math.isnan(low[0, 0]) and math.isnan(high[0, 0])
    assert 0.0 <= low[0, 1] <= high[0, 1] <= 1.0
