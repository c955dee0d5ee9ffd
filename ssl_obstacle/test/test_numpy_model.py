"""The torch-free forward pass against torch's (core/numpy_model.py, core/model_config.py)."""

import warnings

import numpy as np
import pytest

from ssl_obstacle.core import model_config
from ssl_obstacle.core.model import (masked_bce_loss, ModelConfig, ObstacleNet,
                                     predict_probabilities, preprocess)
from ssl_obstacle.core.model_config import state_mismatch, state_shapes
from ssl_obstacle.core.numpy_model import BATCH_SIZE, NumpyObstacleNet
import torch

torch.set_num_threads(1)

#: The paper's sizes, odd image sizes (floor pooling drops rows and columns), one block, and
#: four blocks with other sensor and distance counts.
CONFIGS = [
    ModelConfig(),
    ModelConfig(image_height=63, image_width=81, filters=(4, 6), dense=17),
    ModelConfig(num_sensors=3, num_distances=7, image_height=9, image_width=13, filters=(5,),
                dense=8),
    ModelConfig(num_sensors=2, num_distances=11, image_height=35, image_width=47,
                filters=(3, 7, 2, 6), dense=40, dropout=0.0),
]
IDS = ['paper', 'odd-63x81', 'one-block', 'four-blocks']
TOLERANCE = 1e-5


def numpy_state(model: ObstacleNet) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}


def spread_weights(model: ObstacleNet, seed: int) -> ObstacleNet:
    """Give ``model`` random weights large enough that probabilities span (0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.parameters():
            fan_in = value[0].numel() if value.ndim > 1 else 1
            scale = 2.0 / fan_in ** 0.5 if value.ndim > 1 else 0.3
            value.copy_(torch.randn(value.shape, generator=generator) * scale)
    return model.eval()


def make_images(config: ModelConfig, count: int, seed: int) -> np.ndarray:
    """Random images, a flat one (deviation 0: the clamp) and a smooth one."""
    rng = np.random.default_rng(seed)
    shape = (config.image_height, config.image_width, 3)
    images = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
    images[0] = 77
    ramp = np.linspace(0, 255, shape[0] * shape[1] * 3).reshape(shape)
    images[1] = np.rint(ramp).astype(np.uint8)
    return images


@pytest.mark.parametrize('config', CONFIGS, ids=IDS)
def test_state_shapes_are_torch_state_dict_names_shapes_and_order(config):
    state = ObstacleNet(config).state_dict()
    shapes = state_shapes(config)
    assert list(shapes) == list(state)
    assert shapes == {name: tuple(value.shape) for name, value in state.items()}
    assert state_mismatch(config, shapes) is None


def test_model_config_is_torch_free_and_still_exported_by_model():
    from ssl_obstacle.core import model
    assert model.ModelConfig is model_config.ModelConfig
    assert model._STD_EPS == model_config._STD_EPS


@pytest.mark.parametrize('config', CONFIGS, ids=IDS)
def test_forward_equals_torch_on_random_weights(config):
    model = spread_weights(ObstacleNet(config), seed=3)
    images = make_images(config, count=6, seed=4)
    expected = predict_probabilities(model, images)
    got = NumpyObstacleNet(config, numpy_state(model)).predict(images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE
    # The comparison means something: the probabilities are far from constant.
    assert expected.std() > 0.1 and expected.min() < 0.05 and expected.max() > 0.95


def test_forward_equals_torch_on_trained_weights():
    config = ModelConfig(image_height=32, image_width=40, filters=(6, 8), dense=32)
    torch.manual_seed(5)
    model = ObstacleNet(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (16, 32, 40, 3), dtype=np.uint8)
    labels = (rng.random((16, 5, 31)) < 0.3).astype(np.float32)
    labels[rng.random(labels.shape) < 0.4] = np.nan  # unknown cells, as the labeler leaves
    initial = numpy_state(model)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        masked_bce_loss(model(preprocess(images)), torch.from_numpy(labels)).backward()
        optimizer.step()
    trained = numpy_state(model)
    assert max(np.abs(trained[k] - initial[k]).max() for k in trained) > 0.05  # it moved
    test = make_images(config, count=10, seed=7)
    expected = predict_probabilities(model, np.concatenate([images, test]))
    got = NumpyObstacleNet(config, trained).predict(np.concatenate([images, test]))
    assert np.abs(got - expected).max() <= TOLERANCE


def test_one_image_batches_and_empty_input():
    config = CONFIGS[2]
    net = NumpyObstacleNet(config, numpy_state(spread_weights(ObstacleNet(config), seed=8)))
    images = make_images(config, count=BATCH_SIZE + 7, seed=9)  # more than one batch
    batch = net.predict(images)
    assert batch.shape == (BATCH_SIZE + 7, 3, 7)
    one = net.predict(images[BATCH_SIZE + 3])
    assert one.shape == (1, 3, 7)
    np.testing.assert_allclose(one[0], batch[BATCH_SIZE + 3], rtol=0, atol=1e-6)
    readonly = images[:4].copy()
    readonly.flags.writeable = False  # e.g. a view of a message buffer
    np.testing.assert_allclose(net.predict(readonly), batch[:4], rtol=0, atol=1e-6)
    assert net.predict(images[:0]).shape == (0, 3, 7)


def test_large_logits_give_0_and_1_without_overflow():
    config = CONFIGS[2]
    state = numpy_state(ObstacleNet(config))
    state['head.4.weight'][:] = 0.0
    state['head.4.bias'][:] = np.tile([-1000.0, -90.0, 0.0, 90.0, 1000.0, -30.0, 30.0],
                                      3).astype(np.float32)
    net = NumpyObstacleNet(config, state)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # an overflow in exp would warn
        probabilities = net.predict(make_images(config, count=2, seed=10))
    row = probabilities[0, 0]
    assert row[0] == 0.0 and row[4] == 1.0 and row[2] == 0.5
    # exp(-90) is a subnormal float32, and 0 where an earlier in-process training set
    # flush-to-zero (core/training.py): compare with a normal float.
    assert 0.0 <= row[1] < 1e-30 and row[3] == 1.0
    np.testing.assert_allclose(row[5:], [1 / (1 + np.exp(30)), 1 / (1 + np.exp(-30))],
                               rtol=1e-6)


def test_float16_weights_are_accepted_as_their_float32_values():
    config = CONFIGS[1]
    model = spread_weights(ObstacleNet(config), seed=11)
    half = {name: value.astype(np.float16) for name, value in numpy_state(model).items()}
    model.load_state_dict({name: torch.from_numpy(value.astype(np.float32))
                           for name, value in half.items()})
    images = make_images(config, count=4, seed=12)
    got = NumpyObstacleNet(config, half).predict(images)
    assert np.abs(got - predict_probabilities(model, images)).max() <= TOLERANCE


def test_weights_are_copied():
    config = CONFIGS[2]
    state = numpy_state(spread_weights(ObstacleNet(config), seed=13))
    net = NumpyObstacleNet(config, state)
    images = make_images(config, count=3, seed=14)
    before = net.predict(images)
    for value in state.values():
        value[...] = 0.0
    np.testing.assert_array_equal(net.predict(images), before)


def test_weights_that_do_not_fit_are_refused_by_name_and_shapes():
    config = CONFIGS[0]
    good = numpy_state(ObstacleNet(config))
    wrong_shape = dict(good, **{'head.2.weight': np.zeros((256, 641), np.float32)})
    with pytest.raises(ValueError, match=r'head\.2\.weight has shape \(256, 641\), '
                                         r'expected \(256, 640\)'):
        NumpyObstacleNet(config, wrong_shape)
    missing = {k: v for k, v in good.items() if k != 'features.3.bias'}
    with pytest.raises(ValueError, match=r'features\.3\.bias is missing \(expected shape '
                                         r'\(10,\)\)'):
        NumpyObstacleNet(config, missing)
    extra = dict(good, **{'head.6.weight': np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected tensor 'head\.6\.weight' \(shape \(3,\)"):
        NumpyObstacleNet(config, extra)
    # Another config's weights: the first layer that differs is named.
    other = numpy_state(ObstacleNet(ModelConfig(filters=(10, 12, 8))))
    with pytest.raises(ValueError, match=r'features\.3\.weight has shape \(12, 10, 3, 3\), '
                                         r'expected \(10, 10, 3, 3\)'):
        NumpyObstacleNet(config, other)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(bad):
    config = CONFIGS[2]
    state = numpy_state(ObstacleNet(config))
    state['features.0.weight'][2, 1, 0, 2] = bad
    with pytest.raises(ValueError, match=r'features\.0\.weight has NaN or infinite'):
        NumpyObstacleNet(config, state)


def test_integer_weights_are_refused():
    config = CONFIGS[2]
    state = numpy_state(ObstacleNet(config))
    state['head.4.bias'] = np.zeros(21, np.int64)
    with pytest.raises(ValueError, match=r'head\.4\.bias is int64, not floating point'):
        NumpyObstacleNet(config, state)


@pytest.mark.parametrize('images', [
    np.zeros((9, 13, 3), np.float32),  # not uint8
    np.zeros((2, 9, 13, 3), np.int16),
    np.zeros((9, 14, 3), np.uint8),  # another size
    np.zeros((2, 9, 13, 4), np.uint8),  # rgba
    np.zeros((9, 13), np.uint8),
    np.zeros((1, 2, 9, 13, 3), np.uint8),
], ids=['float', 'int16', 'width', 'rgba', 'grey', '5d'])
def test_images_of_another_shape_or_type_are_refused(images):
    config = CONFIGS[2]
    net = NumpyObstacleNet(config, numpy_state(ObstacleNet(config)))
    with pytest.raises(ValueError, match=r'expected uint8 images \(N, 9, 13, 3\) or one '
                                         r'\(9, 13, 3\), got '):
        net.predict(images)
