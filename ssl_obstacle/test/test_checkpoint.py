"""Checkpoints: round trip, safe loading, atomic replacement (core/checkpoint.py)."""

import numpy as np
import pytest

from ssl_obstacle.core import checkpoint as checkpoint_module
from ssl_obstacle.core.checkpoint import (build_model, CheckpointError, load_checkpoint,
                                          save_checkpoint)
from ssl_obstacle.core.model import (masked_bce_loss, ModelConfig, ObstacleNet,
                                     predict_probabilities, preprocess)
import torch

torch.set_num_threads(1)

CONFIG = ModelConfig(num_sensors=3, num_distances=4, image_height=16, image_width=20,
                     filters=(4, 4), dense=16)


def trained_model(steps: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    model = ObstacleNet(CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (8, 16, 20, 3), dtype=np.uint8)
    labels = (rng.random((8, 3, 4)) < 0.5).astype(np.float32)
    for _ in range(steps):
        optimizer.zero_grad()
        masked_bce_loss(model(preprocess(images)), torch.from_numpy(labels)).backward()
        optimizer.step()
    return model, optimizer, images, labels


def test_round_trip_restores_model_optimizer_counters_params(tmp_path):
    model, optimizer, images, labels = trained_model()
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, optimizer, counters={'updates': 3, 'frames': np.int64(24)},
                    params={'lr': 1e-2, 'sensor_names': ('left', 'center', 'right'),
                            'distances': np.array([0.0, 0.1, 0.2, 0.3]), 'nested': {'a': None}},
                    config=CONFIG)
    # weights_only=True: nothing but tensors and plain types inside.
    raw = torch.load(path, weights_only=True)
    assert raw['format'] == 'ssl_obstacle.checkpoint'
    loaded = load_checkpoint(path)
    assert loaded['config'] == CONFIG
    assert loaded['counters'] == {'updates': 3, 'frames': 24}
    assert loaded['params']['sensor_names'] == ['left', 'center', 'right']
    assert loaded['params']['distances'] == [0.0, 0.1, 0.2, 0.3]
    restored = build_model(loaded)
    np.testing.assert_array_equal(predict_probabilities(restored, images),
                                  predict_probabilities(model, images))
    # The optimiser continues exactly where it stopped.
    new_optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2)
    new_optimizer.load_state_dict(loaded['optimizer_state'])
    for optim, net in ((optimizer, model), (new_optimizer, restored)):
        net.eval()  # no dropout: both steps must see the same network
        optim.zero_grad()
        masked_bce_loss(net(preprocess(images)), torch.from_numpy(labels)).backward()
        optim.step()
    np.testing.assert_allclose(predict_probabilities(restored, images),
                               predict_probabilities(model, images), rtol=1e-6, atol=1e-7)
    state = new_optimizer.state_dict()['state']
    assert int(state[0]['step']) == 4


def test_without_optimizer_and_default_config(tmp_path):
    model, _, _, _ = trained_model(steps=0)
    save_checkpoint(tmp_path / 'bare.pt', model)
    loaded = load_checkpoint(tmp_path / 'bare.pt')
    assert loaded['optimizer_state'] is None
    assert loaded['counters'] == {} and loaded['params'] == {}
    assert loaded['config'] == model.config


def test_unsupported_values_fail_before_touching_the_disk(tmp_path):
    model, _, _, _ = trained_model(steps=0)
    with pytest.raises(TypeError, match=r'params\.when'):
        save_checkpoint(tmp_path / 'x.pt', model, params={'when': object()})
    assert list(tmp_path.iterdir()) == []


def test_truncated_or_corrupt_file_raises_a_clear_error(tmp_path):
    model, optimizer, _, _ = trained_model()
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, optimizer)
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'truncated\.pt.*truncated or corrupt'):
        load_checkpoint(truncated)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint at all' * 10)
    with pytest.raises(CheckpointError, match=r'garbage\.pt'):
        load_checkpoint(garbage)
    foreign = tmp_path / 'foreign.pt'
    torch.save({'weights': torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match='not an ssl_obstacle checkpoint'):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / 'missing.pt')


def test_code_in_a_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ('this must not run',))

    path = tmp_path / 'evil.pt'
    torch.save({'format': 'ssl_obstacle.checkpoint', 'x': Payload()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old_model, old_optimizer, images, _ = trained_model(steps=1, seed=1)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, old_model, old_optimizer, counters={'updates': 1})
    before = path.read_bytes()
    new_model, new_optimizer, _, _ = trained_model(steps=5, seed=2)

    real_save = torch.save

    def save_half_then_die(obj, stream):
        real_save(obj, stream)
        stream.truncate(100)  # part of the file is on disk when the process is "killed"
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, 'save', save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, new_model, new_optimizer, counters={'updates': 5})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pt']  # no temp file left
    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    assert loaded['counters'] == {'updates': 1}
    np.testing.assert_array_equal(predict_probabilities(build_model(loaded), images),
                                  predict_probabilities(old_model, images))


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path):
    model, _, _, _ = trained_model(steps=0)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, config=ModelConfig(num_sensors=5, num_distances=4,
                                                    image_height=16, image_width=20,
                                                    filters=(4, 4), dense=16))
    with pytest.raises(CheckpointError, match='do not fit'):
        build_model(load_checkpoint(path))
