"""The network, preprocessing, masked loss and augmentation (core/model.py)."""

import numpy as np
import pytest

from ssl_obstacle.core.model import (augment, Augmentation, masked_bce_loss, ModelConfig,
                                     ObstacleNet, PAPER_AUGMENTATION, predict_probabilities,
                                     preprocess)
import torch

torch.set_num_threads(1)


def test_default_model_is_the_papers_network():
    model = ObstacleNet(ModelConfig())
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == [10, 10, 8]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convolutions)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(8 * 8 * 10, 256),
                                                                        (256, 5 * 31)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.2 for m in model.modules())
    assert model(torch.zeros(2, 3, 64, 80)).shape == (2, 5, 31)


def test_model_is_sized_from_its_config():
    config = ModelConfig(num_sensors=3, num_distances=7, image_height=48, image_width=64,
                         filters=(4, 6), dense=32)
    model = ObstacleNet(config)
    assert model(torch.zeros(4, 3, 48, 64)).shape == (4, 3, 7)
    odd = ObstacleNet(ModelConfig(num_sensors=2, num_distances=3, image_height=50,
                                  image_width=37))
    assert odd(torch.zeros(1, 3, 50, 37)).shape == (1, 2, 3)
    with pytest.raises(ValueError, match='too small'):
        ModelConfig(image_height=4, image_width=4)


def test_preprocess_standardises_each_image_on_its_own():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 16, 20, 3), dtype=np.uint8)
    images[1] = images[1] // 4 + 100  # different exposure and contrast
    images[2] = 77  # flat: no contrast at all
    x = preprocess(images)
    assert x.shape == (3, 3, 16, 20) and x.dtype == torch.float32
    for i in range(2):
        assert float(x[i].mean()) == pytest.approx(0.0, abs=1e-5)
        assert float(x[i].std(correction=0)) == pytest.approx(1.0, abs=1e-4)
    assert torch.all(x[2] == 0)
    # Channels come first, in rgb order, and one image works without a batch axis.
    single = preprocess(images[0])
    assert single.shape == (1, 3, 16, 20)
    torch.testing.assert_close(single[0], x[0])
    red = images[0, :, :, 0].astype(np.float64)
    flat = images[0].astype(np.float64)
    expected = (red - flat.mean()) / flat.std()
    np.testing.assert_allclose(x[0, 0].numpy(), expected, rtol=1e-4, atol=1e-4)


def manual_bce(logits: np.ndarray, labels: np.ndarray) -> float:
    known = ~np.isnan(labels)
    p = 1.0 / (1.0 + np.exp(-logits[known].astype(np.float64)))
    y = labels[known].astype(np.float64)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_masked_loss_ignores_unknown_cells_exactly():
    rng = np.random.default_rng(1)
    labels = rng.random((6, 5, 31)).astype(np.float32)  # fractional labels
    labels[rng.random(labels.shape) < 0.6] = np.nan
    logits = torch.tensor(rng.normal(0, 3, size=labels.shape), dtype=torch.float32,
                          requires_grad=True)
    loss = masked_bce_loss(logits, torch.from_numpy(labels))
    loss.backward()
    assert loss.item() == pytest.approx(manual_bce(logits.detach().numpy(), labels), rel=1e-5)
    unknown = np.isnan(labels)
    grad = logits.grad.numpy()
    assert np.all(grad[unknown] == 0.0)  # exactly zero, not just small
    assert np.all(np.isfinite(grad))
    # Known cells: d loss / d logit = (sigmoid - y) / known count.
    sigmoid = 1.0 / (1.0 + np.exp(-logits.detach().numpy()))
    expected = (sigmoid - np.nan_to_num(labels)) / (~unknown).sum()
    np.testing.assert_allclose(grad[~unknown], expected[~unknown], rtol=1e-4, atol=1e-8)


def test_masked_loss_of_fractional_labels_is_minimal_at_the_label():
    labels = torch.full((1, 1, 1), 0.3)
    logit = torch.zeros((1, 1, 1), requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=5.0)
    for _ in range(200):
        optimizer.zero_grad()
        masked_bce_loss(logit, labels).backward()
        optimizer.step()
    assert torch.sigmoid(logit).item() == pytest.approx(0.3, abs=1e-3)


def test_masked_loss_of_an_all_unknown_batch_is_zero_with_a_graph():
    logits = torch.randn(3, 2, 4, requires_grad=True)
    loss = masked_bce_loss(logits, torch.full((3, 2, 4), float('nan')))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_masked_loss_gives_no_nan_even_for_extreme_logits():
    logits = torch.tensor([[[1e4, -1e4, 0.0]]], requires_grad=True)
    labels = torch.tensor([[[0.0, float('nan'), 1.0]]])
    loss = masked_bce_loss(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))
    assert float(logits.grad[0, 0, 1]) == 0.0


def obstacle_on_the_left(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a dark block in their left third; the 'left' sensor (index 0) sees it."""
    images = np.full((count, 24, 30, 3), 128, dtype=np.uint8)
    images[:, 8:20, 0:8] = 20
    labels = np.full((count, 5, 4), np.nan, dtype=np.float32)
    labels[:, 0, :] = [1.0, 1.0, 0.0, 0.5]
    labels[:, 2, :2] = 0.0  # center sensor: nothing
    return images, labels


def test_augment_flip_mirrors_image_and_sensor_order():
    images, labels = obstacle_on_the_left(64)
    out_images, out_labels = augment(images, labels, np.random.default_rng(3))
    assert out_images.dtype == np.uint8 and out_images.shape == images.shape
    assert out_labels.shape == labels.shape
    left_dark = out_images[:, 8:20, 0:8].mean(axis=(1, 2, 3)) < 60
    right_dark = out_images[:, 8:20, -8:].mean(axis=(1, 2, 3)) < 60
    assert np.all(left_dark ^ right_dark)  # every image is either flipped or not
    flipped = right_dark
    assert 10 < flipped.sum() < 54  # p = 0.5
    np.testing.assert_array_equal(out_labels[~flipped], labels[~flipped])  # NaN equal too
    np.testing.assert_array_equal(out_labels[flipped], labels[flipped][:, ::-1])
    assert np.all(out_labels[flipped, 4] == [1.0, 1.0, 0.0, 0.5])  # now the 'right' sensor
    assert np.all(np.isnan(out_labels[flipped, 0]))
    # Inputs are not modified.
    np.testing.assert_array_equal(images, obstacle_on_the_left(64)[0])


def test_augment_changes_photometry_only_a_little():
    images = np.full((200, 24, 30, 3), 128, dtype=np.uint8)
    labels = np.zeros((200, 5, 4), dtype=np.float32)
    out, _ = augment(images, labels, np.random.default_rng(4), PAPER_AUGMENTATION)
    means = out.reshape(200, -1).mean(axis=1)
    assert 0.75 * 128 < means.min() < 0.9 * 128 and 1.1 * 128 < means.max() < 1.25 * 128
    # The default adds a gain per channel: a channel's mean stays within gain × channel gain.
    jittered, _ = augment(images, labels, np.random.default_rng(4))
    channel_means = jittered.mean(axis=(1, 2))
    assert channel_means.min() > 0.67 * 128 and channel_means.max() < 1.39 * 128
    assert np.std(out.astype(float) - means[:, None, None, None]) > 1.0  # gradient and noise
    different = augment(images, labels, np.random.default_rng(5))[0]
    assert not np.array_equal(out, different)


def coloured_scene(count: int) -> np.ndarray:
    """Return frames of a red block on the left over a grey-green floor, (count, 24, 30, 3)."""
    images = np.empty((count, 24, 30, 3), dtype=np.uint8)
    images[:] = (90, 120, 100)
    images[:, 8:20, 2:10] = (200, 30, 20)
    return images


def test_colour_jitter_changes_colours_per_channel_but_moves_no_pixel():
    images = coloured_scene(128)
    labels = obstacle_on_the_left(128)[1]
    jitter = Augmentation(gain=0.0, gradient=0.0, noise=0.0, flip=False, channel_gain=0.3)
    out, out_labels = augment(images, labels, np.random.default_rng(7), jitter)
    np.testing.assert_array_equal(out_labels, labels)  # nothing moved: labels stay true
    block = np.zeros((24, 30), bool)
    block[8:20, 2:10] = True
    # Each region stays one flat colour exactly where it was...
    for region in (block, ~block):
        assert np.all(out[:, region].std(axis=1) == 0)
    # ...the block still stands out from the floor in every frame...
    contrast = np.abs(out[:, 10, 5].astype(int) - out[:, 10, 20].astype(int)).sum(axis=1)
    assert contrast.min() > 60
    # ...and the channels were scaled independently, within the configured ±30 %.
    ratio = out[:, 10, 20].astype(float) / np.array([90, 120, 100])
    assert ratio.min() >= 0.69 and ratio.max() <= 1.31
    assert np.abs(ratio[:, 0] - ratio[:, 1]).max() > 0.2
    assert np.abs(ratio[:, 1] - ratio[:, 2]).max() > 0.2


def test_channel_shuffle_permutes_channels_and_the_flip_still_mirrors_the_sensors():
    images = coloured_scene(300)
    labels = obstacle_on_the_left(300)[1]
    shuffle = Augmentation(gain=0.0, gradient=0.0, noise=0.0, channel_gain=0.0,
                           channel_shuffle=1.0)
    out, out_labels = augment(images, labels, np.random.default_rng(8), shuffle)
    flipped = out[:, 10, 5].sum(axis=1) != 250  # the block's pixel shows floor instead
    assert 100 < flipped.sum() < 200
    # Mirror the flipped frames back: every frame then has its block on the left again.
    unmirrored = np.where(flipped[:, None, None, None], out[:, :, ::-1], out)
    block = unmirrored[:, 10, 5]
    assert all(sorted(colour) == [20, 30, 200] for colour in block.tolist())
    assert len({tuple(colour) for colour in block.tolist()}) == 6  # all six permutations
    channel_of = {200: 0, 30: 1, 20: 2}
    for frame, colour in zip(unmirrored, block.tolist()):
        order = [channel_of[value] for value in colour]
        assert np.all(frame[8:20, 2:10] == colour)  # the block is whole and in place
        assert np.all(frame[:8] == np.array([90, 120, 100])[order])  # the same permutation
    np.testing.assert_array_equal(out_labels[flipped], labels[flipped][:, ::-1])
    np.testing.assert_array_equal(out_labels[~flipped], labels[~flipped])
    # Without colour jitter (the paper's augmentation) colours are untouched.
    paper, _ = augment(images, labels, np.random.default_rng(8),
                       replace_settings(PAPER_AUGMENTATION, gain=0.0, gradient=0.0, noise=0.0))
    assert {tuple(c) for c in paper[:, 10, 5].tolist()} <= {(200, 30, 20), (90, 120, 100)}


def replace_settings(settings: Augmentation, **changes) -> Augmentation:
    """Return ``settings`` with some fields changed."""
    from dataclasses import replace
    return replace(settings, **changes)


@pytest.mark.parametrize('changes', [{'gain': 1.0}, {'gradient': -0.1}, {'noise': -1.0},
                                     {'channel_gain': 1.5}, {'channel_shuffle': 2.0}])
def test_augmentation_rejects_amounts_that_make_no_sense(changes):
    with pytest.raises(ValueError):
        Augmentation(**changes)


def test_predict_probabilities_is_deterministic_and_restores_the_mode():
    torch.manual_seed(0)
    model = ObstacleNet(ModelConfig(num_sensors=2, num_distances=3, image_height=16,
                                    image_width=16))
    model.train()
    images = np.random.default_rng(6).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    first = predict_probabilities(model, images, batch_size=3)
    second = predict_probabilities(model, images, batch_size=10)
    assert first.shape == (10, 2, 3) and first.dtype == np.float32
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)  # dropout is off
    assert np.all((first >= 0) & (first <= 1))
    assert model.training
    assert predict_probabilities(model, images[:0]).shape == (0, 2, 3)
