"""Reading checkpoints without torch (core/checkpoint_reader.py) against torch's own reader."""

import collections
import io
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import ssl_obstacle
from ssl_obstacle.core import checkpoint
from ssl_obstacle.core.checkpoint import (build_model, load_checkpoint, save_checkpoint)
from ssl_obstacle.core.checkpoint_reader import (CheckpointError, CheckpointWeights,
                                                 read_checkpoint_weights)
from ssl_obstacle.core.model import (masked_bce_loss, ModelConfig, ObstacleNet,
                                     predict_probabilities, preprocess)
from ssl_obstacle.core.numpy_model import NumpyObstacleNet
import torch

torch.set_num_threads(1)

CONFIG = ModelConfig(num_sensors=3, num_distances=4, image_height=17, image_width=21,
                     filters=(4, 5), dense=16)


def trained(steps: int = 5, seed: int = 0):
    """Return a model, its optimiser and a moving average of its weights after ``steps``."""
    torch.manual_seed(seed)
    model = ObstacleNet(CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    average = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (8, 17, 21, 3), dtype=np.uint8)
    labels = (rng.random((8, 3, 4)) < 0.5).astype(np.float32)
    for _ in range(steps):
        optimizer.zero_grad()
        masked_bce_loss(model(preprocess(images)), torch.from_numpy(labels)).backward()
        optimizer.step()
        with torch.no_grad():
            for name, value in model.state_dict().items():
                average[name] += (value - average[name]) * 0.3
    return model, optimizer, average, images


def assert_same_tensors(state: dict, expected: dict) -> None:
    assert list(state) == list(expected)
    for name, value in expected.items():
        assert isinstance(state[name], np.ndarray)
        assert state[name].dtype == value.numpy().dtype, name
        np.testing.assert_array_equal(state[name], value.numpy(), err_msg=name)


def test_reads_exactly_torchs_tensors_config_and_counters(tmp_path):
    model, optimizer, average, images = trained()
    path = tmp_path / 'model.pt'
    counters = {'updates': 5, 'frames': np.int64(40), 'loss': 0.25, 'robots': ['a', 'b']}
    save_checkpoint(path, model, optimizer, counters=counters, params={'lr': 1e-2},
                    average_state=average)
    loaded = load_checkpoint(path)
    weights = read_checkpoint_weights(path)
    assert isinstance(weights, CheckpointWeights)
    assert weights.config == loaded['config'] == CONFIG
    assert weights.counters == loaded['counters'] == {'updates': 5, 'frames': 40,
                                                      'loss': 0.25, 'robots': ['a', 'b']}
    assert weights.averaged
    assert_same_tensors(weights.state, loaded['average_state'])
    trained_weights = read_checkpoint_weights(path, averaged=False)
    assert not trained_weights.averaged
    assert_same_tensors(trained_weights.state, loaded['model_state'])
    # The two differ, so the test above tells which one was read.
    assert not np.array_equal(weights.state['head.2.weight'],
                              trained_weights.state['head.2.weight'])
    # What the robot predicts is what torch predicts with the same checkpoint.
    for averaged in (True, False):
        read = read_checkpoint_weights(path, averaged=averaged)
        got = NumpyObstacleNet(read.config, read.state).predict(images)
        expected = predict_probabilities(build_model(loaded, averaged=averaged), images)
        assert np.abs(got - expected).max() <= 1e-5


def test_without_an_average_the_trained_weights_are_read(tmp_path):
    model, _, _, _ = trained(steps=2)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, counters={'updates': 2})
    for averaged in (True, False):
        weights = read_checkpoint_weights(path, averaged=averaged)
        assert not weights.averaged
        assert_same_tensors(weights.state, model.state_dict())
        assert weights.counters == {'updates': 2}


def test_the_grid_comes_from_the_params_and_must_fit_the_config(tmp_path):
    model, _, _, _ = trained(steps=0)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, params={'lr': 0.1, 'sensor_names': ('l', 'c', 'r'),
                                         'distances': np.array([0.0, 0.1, 0.2, 0.3])})
    assert read_checkpoint_weights(path).grid == (['l', 'c', 'r'], [0.0, 0.1, 0.2, 0.3])
    save_checkpoint(path, model, params={'lr': 0.1})
    assert read_checkpoint_weights(path).grid is None
    save_checkpoint(path, model, params={'sensor_names': ['l', 'r'], 'distances': [0.0] * 4})
    with pytest.raises(CheckpointError, match=r'model\.pt: params name 2 sensors and 4 '
                                              r'distances, the model config 3 and 4'):
        read_checkpoint_weights(path)
    save_checkpoint(path, model, params={'sensor_names': 'lcr', 'distances': [0.0] * 4})
    with pytest.raises(CheckpointError, match='not a list of names'):
        read_checkpoint_weights(path)


def test_float16_and_shared_storages_are_read_as_torch_has_them(tmp_path):
    model, _, average, _ = trained(steps=1)
    # float16, as a trainer may publish; a slice of a bigger tensor (saved as an offset into
    # its storage) and a transposed layout (saved with strides (1, 16)).
    half = {k: v.half() for k, v in average.items()}
    big = torch.randn(2 * 16 + 3).half()
    half['head.2.bias'] = big[3:19]
    half['head.4.weight'] = half['head.4.weight'].t().contiguous().t()
    assert half['head.2.bias'].storage_offset() == 3
    assert half['head.4.weight'].stride() == (1, 12)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, average_state=half)
    state = read_checkpoint_weights(path).state
    assert_same_tensors(state, half)
    assert state['head.4.weight'].flags.c_contiguous and state['head.4.weight'].flags.writeable


def test_missing_truncated_corrupt_foreign_and_other_version_files(tmp_path):
    model, optimizer, average, _ = trained(steps=1)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, optimizer, average_state=average)
    data = path.read_bytes()
    with pytest.raises(FileNotFoundError):
        read_checkpoint_weights(tmp_path / 'missing.pt')
    for size in (len(data) // 2, len(data) - 30, 100):
        truncated = tmp_path / f'truncated{size}.pt'
        truncated.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=rf'truncated{size}\.pt.*truncated or corrupt'):
            read_checkpoint_weights(truncated)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match=r'garbage\.pt'):
        read_checkpoint_weights(garbage)
    # One flipped byte inside a weight record (data/0: model_state's first tensor, read with
    # averaged=False; the average's records are others): the zip's checksum catches it.
    flipped = bytearray(data)
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo('archive/data/0').header_offset
    name_length, extra_length = struct.unpack('<HH', data[offset + 26:offset + 30])
    start = offset + 30 + name_length + extra_length  # the record's first byte
    flipped[start + 5] ^= 0xFF
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r'corrupt\.pt.*(CRC|Bad)'):
        read_checkpoint_weights(corrupt, averaged=False)
    foreign = tmp_path / 'foreign.pt'
    torch.save({'weights': torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r'foreign\.pt: not an ssl_obstacle checkpoint'):
        read_checkpoint_weights(foreign)
    newer = tmp_path / 'newer.pt'
    torch.save({'format': checkpoint.FORMAT, 'version': 2, 'model_state': {}}, newer)
    with pytest.raises(CheckpointError, match=r'newer\.pt: checkpoint version 2 is not '
                                              r'supported \(expected 1\)'):
        read_checkpoint_weights(newer)
    for config in ({'num_sensors': 0}, {'pixels': 3}, 'paper'):
        bad = tmp_path / 'bad_config.pt'
        torch.save({'format': checkpoint.FORMAT, 'version': 1, 'config': config,
                    'model_state': {}}, bad)
        with pytest.raises(CheckpointError, match=r'bad_config\.pt: bad model config'):
            read_checkpoint_weights(bad)
        with pytest.raises(CheckpointError, match=r'bad_config\.pt: bad model config'):
            load_checkpoint(bad)  # the same check, the same error class


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path):
    model, _, _, _ = trained(steps=0)
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, config=ModelConfig(
        num_sensors=5, num_distances=4, image_height=17, image_width=21, filters=(4, 5),
        dense=16))
    with pytest.raises(CheckpointError, match=r'model\.pt: checkpoint weights \(model_state\) '
                                              r'do not fit its config: head\.4\.weight has '
                                              r'shape \(12, 16\), expected \(20, 16\)'):
        read_checkpoint_weights(path)


def test_one_error_class_for_both_readers():
    assert checkpoint.CheckpointError is CheckpointError
    assert issubclass(CheckpointError, ValueError)


class _Storage:
    """A storage for :func:`write_archive`: its bytes are written as one record."""

    def __init__(self, key: str, dtype: str, values: np.ndarray, numel: int | None = None):
        self.key, self.dtype, self.values = key, dtype, values
        self.numel = len(values) if numel is None else numel


class _Tensor:
    """Pickles as torch pickles a tensor: a call of _rebuild_tensor_v2 on a storage."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple,
                 state: dict | None = None):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.state = state

    def __reduce__(self):
        if self.state is not None:  # a BUILD after the call
            return torch._utils._rebuild_tensor_v2, self.args, self.state
        return torch._utils._rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ('storage', getattr(torch, obj.dtype), obj.key, 'cpu', obj.numel)
        return None


def write_archive(path: pathlib.Path, payload, storages=(), byteorder: str = 'little',
                  pickled: bytes | None = None) -> None:
    """Write a file laid out as torch.save's zip format, from hand-made parts."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(payload)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/data.pkl', buffer.getvalue() if pickled is None else pickled)
        archive.writestr('archive/byteorder', byteorder)
        for storage in storages:
            order = '<' if byteorder == 'little' else '>'
            archive.writestr(f'archive/data/{storage.key}',
                             storage.values.astype(storage.values.dtype.newbyteorder(order))
                             .tobytes())
        archive.writestr('archive/version', '3\n')


def minimal_payload(state: dict) -> dict:
    config = ModelConfig(num_sensors=1, num_distances=1, image_height=2, image_width=2,
                         filters=(1,), dense=1)
    return {'format': checkpoint.FORMAT, 'version': 1, 'model_state': state,
            'config': {'num_sensors': 1, 'num_distances': 1, 'image_height': 2,
                       'image_width': 2, 'filters': [1], 'dense': 1}}, config


def minimal_state(storage: _Storage) -> dict:
    """Tensors for the one-block 2x2 config, all views of ``storage`` (32 values)."""
    shapes = {'features.0.weight': ((1, 3, 3, 3), (27, 9, 3, 1)), 'features.0.bias': ((1,), (1,)),
              'head.2.weight': ((1, 1), (1, 1)), 'head.2.bias': ((1,), (1,)),
              'head.4.weight': ((1, 1), (1, 1)), 'head.4.bias': ((1,), (1,))}
    state, offset = {}, 0
    for name, (size, stride) in shapes.items():
        state[name] = _Tensor(storage, offset, size, stride)
        offset += int(np.prod(size))
    return state


@pytest.mark.parametrize('byteorder', ['little', 'big'])
def test_a_hand_made_archive_in_either_byte_order(tmp_path, byteorder):
    values = np.arange(32, dtype=np.float32) / 8
    storage = _Storage('0', 'FloatStorage', values)
    payload, config = minimal_payload(minimal_state(storage))
    path = tmp_path / 'hand.pt'
    write_archive(path, payload, [storage], byteorder=byteorder)
    weights = read_checkpoint_weights(path)
    assert weights.config == config and weights.counters == {}
    np.testing.assert_array_equal(weights.state['features.0.weight'].ravel(), values[:27])
    assert weights.state['head.4.bias'][0] == values[31]
    assert all(v.dtype == np.float32 and v.dtype.isnative for v in weights.state.values())


def test_views_outside_their_storage_and_bad_records_are_refused(tmp_path):
    path = tmp_path / 'hand.pt'

    def refused(state, storages, match):
        payload, _ = minimal_payload(state)
        write_archive(path, payload, storages)
        with pytest.raises(CheckpointError, match=match):
            read_checkpoint_weights(path)

    storage = _Storage('0', 'FloatStorage', np.zeros(32, np.float32))
    past_end = minimal_state(storage)
    past_end['head.4.bias'] = _Tensor(storage, 40, (1,), (1,))
    refused(past_end, [storage], 'does not fit its storage')
    repeated = minimal_state(storage)  # a billion elements from one value, stride 0
    repeated['head.2.bias'] = _Tensor(storage, 0, (10 ** 9,), (0,))
    refused(repeated, [storage], 'does not fit its storage')
    # The record holds fewer bytes than the pickle says.
    short = _Storage('0', 'FloatStorage', np.zeros(32, np.float32), numel=64)
    refused(minimal_state(short), [short], r'data/0 has 128 bytes, expected 256')
    refused(minimal_state(storage), [], r'storage archive/data/0 is missing')
    # A pickle that rewrites a checked view after the fact (BUILD) is refused too.
    rebuilt = minimal_state(storage)
    rebuilt['head.2.bias'] = _Tensor(storage, 0, (1,), (1,), state={'size': (10 ** 9,)})
    refused(rebuilt, [storage], 'tries to change')
    integer = _Storage('0', 'LongStorage', np.zeros(32, np.int64))
    refused(minimal_state(integer), [integer], r'features\.0\.weight is int64, not floating')


class _RunsCode:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_a_pickle_that_names_another_global_cannot_run_code(tmp_path):
    marker = tmp_path / 'ran'
    payload, _ = minimal_payload({})
    payload['counters'] = {'x': _RunsCode(marker)}
    path = tmp_path / 'evil.pt'
    write_archive(path, payload)
    with pytest.raises(CheckpointError, match=r'evil\.pt: refused: its pickle refers to '
                                              r'(posix|os|nt)\.system'):
        read_checkpoint_weights(path)
    assert not marker.exists()
    # The same through torch.save itself, and a class of ours with a custom __reduce__.
    torch.save({'format': checkpoint.FORMAT, 'x': _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match='refused'):
        read_checkpoint_weights(path)
    assert not marker.exists()
    torch.save({'format': checkpoint.FORMAT, 'version': 1, 'x': collections.Counter()}, path)
    with pytest.raises(CheckpointError, match=r'refers to collections\.Counter'):
        read_checkpoint_weights(path)
    # A storage type is data, not a function: calling it is refused.
    pickled = (b'\x80\x02ctorch\nFloatStorage\nq\x00)R.')
    write_archive(path, None, pickled=pickled)
    with pytest.raises(CheckpointError, match='not a readable checkpoint'):
        read_checkpoint_weights(path)


_CHILD = """
import importlib.abc
import sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch was imported')

sys.meta_path.insert(0, NoTorch())
import numpy as np
from ssl_obstacle.core.checkpoint_reader import read_checkpoint_weights
from ssl_obstacle.core.numpy_model import NumpyObstacleNet

weights = read_checkpoint_weights(sys.argv[1])
net = NumpyObstacleNet(weights.config, weights.state)
np.save(sys.argv[3], net.predict(np.load(sys.argv[2])))
assert 'torch' not in sys.modules, 'torch was imported'
print('ok', weights.counters['updates'])
"""


def test_a_process_without_torch_reads_and_predicts(tmp_path):
    model, optimizer, average, images = trained()
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, optimizer, counters={'updates': 5}, average_state=average)
    np.save(tmp_path / 'images.npy', images)
    source = str(pathlib.Path(ssl_obstacle.__file__).parents[1])  # the package tested here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [source, *filter(None, [os.environ.get('PYTHONPATH')])]))
    result = subprocess.run(
        [sys.executable, '-c', _CHILD, str(path), str(tmp_path / 'images.npy'),
         str(tmp_path / 'out.npy')], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['ok', '5']
    expected = predict_probabilities(build_model(load_checkpoint(path)), images)
    assert np.abs(np.load(tmp_path / 'out.npy') - expected).max() <= 1e-5
