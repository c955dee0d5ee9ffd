"""
Calibration (core/calibration.py): ECE and reliability by hand, Platt scaling, its folding.

And the trainer's use of it: the published weights predict the calibrated probabilities,
rankings (per-cell AUC) are unchanged, and a checkpoint carries the calibration to every
reader (torch and numpy).
"""

import numpy as np
import pytest
from ssl_obstacle.core.calibration import expected_calibration_error, fit_platt, \
    fit_temperature, logits, MIN_CELLS, PlattScaling, reliability, sigmoid
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.checkpoint_reader import CheckpointError, read_checkpoint_weights
from ssl_obstacle.core.evaluation import build_report
from ssl_obstacle.core.metrics import auc_grid
from ssl_obstacle.core.model import ModelConfig, predict_probabilities
from ssl_obstacle.core.model_config import state_shapes
from ssl_obstacle.core.numpy_model import NumpyObstacleNet
from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings
import torch


def grid(values) -> np.ndarray:
    """Return values as n frames of a 1 x 1 grid."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


# ---------------------------------------------------------------------- measuring


def test_ece_of_hand_made_cases():
    # Ten cells at 0.1 of which one has an obstacle: perfectly calibrated.
    assert expected_calibration_error(grid([0.1] * 10), grid([1] + [0] * 9)) == \
        pytest.approx(0.0)
    # Always 0.9, never an obstacle: off by 0.9.
    assert expected_calibration_error(grid([0.9] * 4), grid([0] * 4)) == pytest.approx(0.9)
    # Two bins: 4 cells at 0.25 (1 obstacle: gap 0) and 6 at 0.85 (3 obstacles: gap 0.35),
    # weighted by their counts: 0.6 * 0.35.
    probabilities = grid([0.25] * 4 + [0.85] * 6)
    labels = grid([1, 0, 0, 0, 1, 1, 1, 0, 0, 0])  # 1 of 4, then 3 of 6
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.6 * 0.35)


def test_reliability_bins_ignore_unknown_cells_and_keep_fractions():
    probabilities = grid([0.0, 0.02, 0.5, 0.97, 1.0, 0.3])
    labels = grid([0.0, 0.5, 1.0, 1.0, 1.0, np.nan])  # a fraction, and an unknown cell
    curve = reliability(probabilities, labels, bins=15)
    assert curve.counts.sum() == 5  # the unknown cell is left out
    assert curve.counts[0] == 2 and curve.counts[7] == 1 and curve.counts[14] == 2
    assert curve.mean_predicted[0] == pytest.approx(0.01)
    assert curve.mean_observed[0] == pytest.approx(0.25)  # mean of the fractions 0 and 0.5
    assert np.isnan(curve.mean_predicted[3])  # empty bin
    assert np.isnan(expected_calibration_error(grid([0.5]), grid([np.nan])))


def test_the_report_gives_the_ece_overall_and_per_band_with_its_reliability_curves():
    rng = np.random.default_rng(7)
    distances = [0.0, 0.05, 0.15, 0.25, 0.3]
    probabilities = rng.random((200, 2, 5))
    labels = (rng.random((200, 2, 5)) < probabilities).astype(np.float64)
    probabilities[:, :, 3:] = 0.9  # the far band says 0.9 where half the cells are obstacles
    labels[:, :, 3:] = np.arange(200)[:, None, None] % 2
    labels[::7] = np.nan
    report = build_report(probabilities, labels, ['a', 'b'], distances, n_boot=2)
    assert report['ece'] == pytest.approx(expected_calibration_error(probabilities, labels))
    assert report['ece_by_band']['20-30cm'] == pytest.approx(0.4, abs=0.02)
    assert report['ece_by_band']['0-10cm'] == pytest.approx(
        expected_calibration_error(probabilities[:, :, :2], labels[:, :, :2]))
    assert report['ece_by_band']['0-10cm'] < 0.1
    curve = report['reliability']['20-30cm']
    assert curve['cells'].sum() == (~np.isnan(labels[:, :, 3:])).sum()
    assert curve['observed_rate'][13] == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------------- fitting


def miscalibrated(rng: np.random.Generator, count: int, sensors: int = 2,
                  distances: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return overconfident predictions: the truth is sigmoid(0.5 z + 1), they say sigmoid(z)."""
    z = rng.normal(0.0, 3.0, size=(count, sensors, distances))
    truth = sigmoid(0.5 * z + 1.0)
    labels = (rng.random(z.shape) < truth).astype(np.float64)
    labels[rng.random(z.shape) < 0.1] = np.nan
    return sigmoid(z), labels, truth


def test_platt_scaling_recovers_a_known_miscalibration_and_keeps_every_ranking():
    rng = np.random.default_rng(0)
    probabilities, labels, _ = miscalibrated(rng, 4000)
    scaling = fit_platt(probabilities, labels, per='distance')
    assert scaling.scale.shape == (2, 3)
    assert np.allclose(scaling.scale, 0.5, atol=0.06)
    assert np.allclose(scaling.bias, 1.0, atol=0.12)
    test, test_labels, _ = miscalibrated(np.random.default_rng(1), 4000)
    before = expected_calibration_error(test, test_labels)
    calibrated = scaling.apply(test)
    assert before > 0.1
    assert expected_calibration_error(calibrated, test_labels) < 0.03
    # Increasing in every cell: each cell's AUC is what it was.
    assert np.allclose(auc_grid(calibrated, test_labels), auc_grid(test, test_labels),
                       atol=1e-6)


def test_per_cell_fits_each_cell_and_too_few_cells_or_one_class_keep_the_identity():
    rng = np.random.default_rng(2)
    probabilities, labels, _ = miscalibrated(rng, 3000)
    labels[:, 1, :] = np.nan
    labels[:MIN_CELLS - 1, 1, :] = 0.0  # known, but too few
    labels[:, 0, 2] = 1.0  # one class only
    scaling = fit_platt(probabilities, labels, per='cell')
    assert np.allclose(scaling.scale[0, :2], 0.5, atol=0.08)
    assert (scaling.scale[1] == 1.0).all() and (scaling.bias[1] == 0.0).all()
    assert scaling.scale[0, 2] == 1.0 and scaling.bias[0, 2] == 0.0
    with pytest.raises(ValueError, match='per must be'):
        fit_platt(probabilities, labels, per='sensor')


def test_a_temperature_recovers_a_known_one_and_shrinking_moves_it_half_way_to_1():
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 3.0, size=(6000, 2, 3))
    z[:, :, 2] *= 0.25  # the farthest distance says little: underconfident, wants a scale 2
    truth = sigmoid(0.5 * z)
    truth[:, :, 2] = sigmoid(2.0 * z[:, :, 2])
    labels = (rng.random(z.shape) < truth).astype(np.float64)
    probabilities = sigmoid(z)
    per_distance = fit_temperature(probabilities, labels, per='distance')
    assert (per_distance.bias == 0).all()  # a temperature has no bias
    assert np.allclose(per_distance.scale[:, :2], 0.5, atol=0.05)
    assert np.allclose(per_distance.scale[:, 2], 2.0, rtol=0.1)
    halved = fit_temperature(probabilities, labels, per='distance', shrink=0.5)
    assert np.allclose(halved.scale, np.sqrt(per_distance.scale), rtol=1e-5)
    whole = fit_temperature(probabilities, labels, per='all')
    assert np.ptp(whole.scale) == 0 and 0.5 < whole.scale[0, 0] < 4.0
    calibrated = per_distance.apply(probabilities)
    assert expected_calibration_error(calibrated, labels) < \
        0.5 * expected_calibration_error(probabilities, labels)
    assert np.allclose(auc_grid(calibrated, labels), auc_grid(probabilities, labels),
                       atol=1e-6)
    assert fit_temperature(probabilities, labels, shrink=0.0).is_identity


def test_a_temperature_keeps_the_identity_where_cells_are_too_few_and_checks_its_options():
    rng = np.random.default_rng(8)
    probabilities, labels, _ = miscalibrated(rng, 3000)
    labels[:, :, 1] = np.nan
    labels[:MIN_CELLS // 2 - 1, :, 1] = 0.0  # 2 sensors: MIN_CELLS - 2 known cells
    scaling = fit_temperature(probabilities, labels, per='distance')
    assert (scaling.scale[:, 1] == 1.0).all() and (scaling.scale[:, 0] < 1.0).all()
    with pytest.raises(ValueError, match='per must be'):
        fit_temperature(probabilities, labels, per='cell')
    with pytest.raises(ValueError, match='shrink'):
        fit_temperature(probabilities, labels, shrink=1.5)


def test_the_scale_stays_positive_even_when_predictions_are_anti_correlated():
    rng = np.random.default_rng(3)
    z = rng.normal(0.0, 2.0, size=(2000, 1, 1))
    labels = (rng.random(z.shape) < sigmoid(-z)).astype(np.float64)
    scaling = fit_platt(sigmoid(z), labels)
    assert scaling.scale.min() > 0  # never reverses a ranking; flattens it instead


def test_folding_into_the_last_layer_equals_calibrating_the_outputs():
    config = ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=40)
    rng = np.random.default_rng(4)
    # Small weights: logits of a few units, where probabilities are not clipped at 1e-6.
    state = {name: rng.normal(0, 0.03, size=shape).astype(np.float32)
             for name, shape in state_shapes(config).items()}
    scaling = PlattScaling(rng.uniform(0.3, 2.0, size=(3, 4)).astype(np.float32),
                           rng.normal(0, 1, size=(3, 4)).astype(np.float32))
    images = rng.integers(0, 255, size=(6, 32, 40, 3)).astype(np.uint8)
    raw = NumpyObstacleNet(config, state).predict(images)
    assert raw.min() > 0.01 and raw.max() < 0.99
    folded = NumpyObstacleNet(config, scaling.fold_into(state)).predict(images)
    assert np.allclose(folded, scaling.apply(raw), atol=1e-5)
    assert not np.allclose(folded, raw, atol=1e-3)
    assert np.allclose(logits(scaling.apply(np.full((3, 4), 0.5))), scaling.bias, atol=1e-5)


def test_a_stored_calibration_is_checked():
    with pytest.raises(ValueError, match='positive'):
        PlattScaling.from_dict({'scale': [[0.0]], 'bias': [[0.0]]})
    with pytest.raises(ValueError, match='one shape'):
        PlattScaling.from_dict({'scale': [[1.0, 1.0]], 'bias': [[0.0]]})
    assert PlattScaling.from_dict(PlattScaling.identity(2, 3).as_dict()).is_identity


# ---------------------------------------------------------------------- in the trainer

CONFIG = ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=40)


def trained_trainer(calibration: str) -> tuple[OnlineTrainer, np.ndarray, np.ndarray]:
    """Return a trainer that has scored 600 frames whose labels its outputs barely predict."""
    rng = np.random.default_rng(5)
    trainer = OnlineTrainer(CONFIG, TrainerSettings(
        batch_size=16, min_buffer=8, buffer_size=1000, auc_window=1000, seed=0,
        calibration=calibration, calibration_frames=600))
    images = rng.integers(0, 255, size=(600, 32, 40, 3)).astype(np.uint8)
    # Mostly free cells, whatever the image: the fresh network's ~0.5 is far too high.
    labels = (rng.random((600, 3, 4)) < 0.1).astype(np.float32)
    trainer.score_and_store(images, labels, list(range(600)))
    trainer.train_steps(3)
    return trainer, images, labels


def test_the_trainer_publishes_calibrated_weights_and_scores_with_its_own():
    trainer, images, labels = trained_trainer('distance')
    raw_before = trainer.predict(images[:50])
    weights = trainer.publish()
    scaling = trainer.calibration
    assert not scaling.is_identity
    assert (scaling.bias < 0).all()  # pulled toward the 10 % base rate
    published = NumpyObstacleNet(CONFIG, weights.state).predict(images[:50])
    raw = trainer.predict(images[:50])  # what the next frames are scored with: uncalibrated
    assert not np.allclose(raw, raw_before)  # publish froze the trained weights
    assert np.allclose(published, scaling.apply(raw), atol=1e-5)
    assert abs(published.mean() - 0.1) < abs(raw.mean() - 0.1)
    assert np.allclose(auc_grid(published, labels[:50]), auc_grid(raw, labels[:50]),
                       atol=1e-6)


def test_the_default_temperature_calibration_publishes_a_scaled_network_without_bias():
    assert TrainerSettings().calibration == 'temperature'
    trainer, images, labels = trained_trainer('temperature')
    weights = trainer.publish()
    scaling = trainer.calibration
    assert not scaling.is_identity and (scaling.bias == 0).all()
    published = NumpyObstacleNet(CONFIG, weights.state).predict(images[:50])
    raw = trainer.predict(images[:50])
    assert np.allclose(published, scaling.apply(raw), atol=1e-5)
    assert np.allclose(auc_grid(published, labels[:50]), auc_grid(raw, labels[:50]),
                       atol=1e-6)


def test_calibration_none_publishes_the_network_as_it_is():
    trainer, images, _ = trained_trainer('none')
    weights = trainer.publish()
    assert trainer.calibration.is_identity
    assert np.allclose(NumpyObstacleNet(CONFIG, weights.state).predict(images[:20]),
                       trainer.predict(images[:20]), atol=1e-5)
    with pytest.raises(ValueError, match='calibration must be'):
        OnlineTrainer(CONFIG, TrainerSettings(calibration='platt'))


def test_a_checkpoint_carries_the_calibration_to_both_readers_and_to_a_resumed_trainer(
        tmp_path):
    trainer, images, _ = trained_trainer('distance')
    weights = trainer.publish()
    path = tmp_path / 'model.pt'
    trainer.save(path)
    expected = NumpyObstacleNet(CONFIG, weights.state).predict(images[:20])
    numpy_reader = read_checkpoint_weights(path)
    assert np.allclose(NumpyObstacleNet(CONFIG, numpy_reader.state).predict(images[:20]),
                       expected, atol=1e-5)
    torch_model = build_model(load_checkpoint(path))
    assert np.allclose(predict_probabilities(torch_model, images[:20]), expected, atol=1e-5)
    # The trained weights, to resume from, are left as they were.
    raw = read_checkpoint_weights(path, averaged=False).state['head.4.bias']
    assert np.allclose(raw, trainer._model.state_dict()['head.4.bias'].numpy())
    resumed = OnlineTrainer(CONFIG, TrainerSettings(calibration='distance'))
    resumed.load(path)
    assert np.allclose(resumed.calibration.scale, trainer.calibration.scale)
    # The cells' confidence travels the same way.
    assert weights.cell_confidence is not None and weights.cell_confidence.shape == (3, 4)
    np.testing.assert_allclose(numpy_reader.cell_confidence, weights.cell_confidence)
    np.testing.assert_allclose(resumed.cell_confidence, weights.cell_confidence)


def test_a_checkpoint_with_a_broken_calibration_is_refused_by_both_readers(tmp_path):
    trainer, _, _ = trained_trainer('distance')
    trainer.publish()
    path = tmp_path / 'model.pt'
    trainer.save(path)
    payload = torch.load(path, weights_only=True)
    payload['calibration'] = {'scale': [[-1.0] * 4] * 3, 'bias': [[0.0] * 4] * 3}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match='calibration'):
        read_checkpoint_weights(path)
    with pytest.raises(CheckpointError, match='calibration'):
        build_model(load_checkpoint(path))
