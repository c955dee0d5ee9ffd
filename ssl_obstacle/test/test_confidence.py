"""Confidence (core/confidence.py): a cell's skill, a prediction's confidence, their checks."""

import numpy as np
import pytest
from ssl_obstacle.core.confidence import cell_confidence, checked_confidence, \
    error_by_confidence, prediction_confidence


def test_a_cell_ranked_perfectly_is_trusted_and_one_ranked_by_chance_or_unknown_is_not():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3, 1)) < 0.3).astype(np.float64)
    probabilities = np.empty_like(labels)
    probabilities[:, 0, 0] = 0.2 + 0.6 * labels[:, 0, 0]  # perfect ranking
    probabilities[:, 1, 0] = rng.random(400)  # chance
    probabilities[:, 2, 0] = 0.5
    labels[:, 2, 0] = 0.0  # one class only: the window cannot tell
    confidence = cell_confidence(probabilities, labels)
    assert confidence.shape == (3, 1) and confidence.dtype == np.float32
    assert confidence[0, 0] == pytest.approx(1.0)
    assert confidence[1, 0] < 0.15
    assert confidence[2, 0] == 0.0
    # A reversed ranking is no skill at all, not a negative one.
    assert cell_confidence(1.0 - probabilities[:, :1], labels[:, :1])[0, 0] == 0.0


def test_a_prediction_is_as_confident_as_it_is_certain_in_a_cell_it_ranks_well():
    skill = np.array([[1.0, 0.5], [0.0, 1.0]], np.float32)
    probabilities = np.array([[[0.9, 0.1], [1.0, 0.5]],
                              [[0.5, 0.0], [0.2, 0.75]]], np.float32)
    confidence = prediction_confidence(probabilities, skill)
    assert confidence.shape == (2, 2, 2) and confidence.dtype == np.float32
    np.testing.assert_allclose(confidence[0], [[0.8, 0.4], [0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(confidence[1], [[0.0, 0.5], [0.0, 0.5]], atol=1e-6)
    # One frame's grid (S, D), as the predictor computes it.
    np.testing.assert_allclose(prediction_confidence(probabilities[0], skill), confidence[0])


def test_stored_confidences_are_checked():
    assert checked_confidence([], (2, 3)) is None and checked_confidence(None, (2, 3)) is None
    np.testing.assert_array_equal(checked_confidence([0.0, 0.5, 1.0] * 2, (2, 3)),
                                  [[0.0, 0.5, 1.0]] * 2)
    with pytest.raises(ValueError, match='grid of 2 x 3'):
        checked_confidence([0.5] * 5, (2, 3))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        checked_confidence([0.5] * 5 + [float('nan')], (2, 3))


def test_error_by_confidence_groups_cells_by_rising_confidence():
    rng = np.random.default_rng(1)
    labels = (rng.random((500, 2, 2)) < 0.5).astype(np.float64)
    labels[::9] = np.nan
    # Trusted cells are nearly right, untrusted ones guess.
    confidence = np.array([[0.9, 0.1], [0.6, 0.0]])
    noise = np.array([[0.05, 0.5], [0.2, 0.5]])
    probabilities = np.clip(labels + rng.normal(0, 1, labels.shape) * noise, 0, 1)
    probabilities = np.where(np.isnan(labels), 0.5, probabilities)
    result = error_by_confidence(probabilities, labels, confidence, groups=4)
    groups = result['groups']
    assert [g['confidence_low'] for g in groups] == [0.0, 0.1, 0.6, 0.9]
    assert sum(g['cells'] for g in groups) == (~np.isnan(labels)).sum()
    errors = [g['mean_abs_error'] for g in groups]
    assert errors[2] < errors[1] and errors[3] < errors[2]
    assert result['rank_correlation'] < -0.1  # clipped guesses are often exactly right
    # The same confidence for every frame or one per frame: the same answer.
    per_frame = np.broadcast_to(confidence, labels.shape)
    assert error_by_confidence(probabilities, labels, per_frame) == result
