"""
Read a model checkpoint's weights without torch, for the robot's torch-free predictor.

The robot computer (32-bit ARM) has no PyTorch, yet it must load the checkpoints the trainer
writes with ``torch.save``. No library reads that format without torch, so this module does
it by hand with the standard library and numpy: the file is a zip archive whose
``<archive>/data.pkl`` is a pickle of the payload, in which each tensor is a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`` and each storage a
persistent id ``('storage', <storage type>, key, location, numel)`` whose bytes are the
record ``<archive>/data/<key>`` (in the byte order named by ``<archive>/byteorder``).

The pickle is read by an unpickler that resolves only the few globals our checkpoints
contain, to stand-ins defined here; any other (``os.system``, a class with a custom
``__reduce__``) is refused, so a shared file cannot execute code here either, as
``torch.load(weights_only=True)`` guarantees on the trainer's side. Tensors are read lazily:
only the weights asked for (and any tensor among the counters) are taken from the archive,
not the optimiser's state.

:class:`CheckpointError`, the format's name and version, and the config check live here
(torch-free) and are shared by :mod:`.checkpoint`, so both readers fail alike.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, fields
import io
import math
import os
import pathlib
import pickle
from typing import Any
import zipfile

import numpy as np

from .calibration import PlattScaling
from .confidence import checked_confidence
from .model_config import ModelConfig, state_mismatch

FORMAT = 'ssl_obstacle.checkpoint'
VERSION = 1

#: numpy dtypes of the torch storage types a checkpoint may hold (typed, legacy names).
_STORAGE_DTYPES = {
    'DoubleStorage': 'f8', 'FloatStorage': 'f4', 'HalfStorage': 'f2', 'LongStorage': 'i8',
    'IntStorage': 'i4', 'ShortStorage': 'i2', 'CharStorage': 'i1', 'ByteStorage': 'u1',
    'BoolStorage': 'b1',
}


class CheckpointError(ValueError):
    """A file is not a usable checkpoint; the message names the file and the problem."""


def checkpoint_config(path: str | os.PathLike[str], raw: Any) -> ModelConfig:
    """Return the :class:`ModelConfig` of a payload's ``config`` entry, or raise for it."""
    names = {f.name for f in fields(ModelConfig)}
    if not isinstance(raw, dict) or set(raw) - names:
        raise CheckpointError(f'{path}: bad model config {raw!r}')
    try:
        return ModelConfig(**raw)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: bad model config: {error}') from error


def checked_payload_config(path: str | os.PathLike[str], payload: Any) -> ModelConfig:
    """Return a loaded payload's config if it is one of our checkpoints in this version."""
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise CheckpointError(f'{path}: not an ssl_obstacle checkpoint')
    if payload.get('version') != VERSION:
        raise CheckpointError(f'{path}: checkpoint version {payload.get("version")} is not '
                              f'supported (expected {VERSION})')
    return checkpoint_config(path, payload.get('config'))


@dataclass(frozen=True)
class CheckpointWeights:
    """What a predictor needs from a checkpoint: the network's sizes and its weights."""

    config: ModelConfig
    #: Tensor name → array, in the checkpoint's order and dtype (as torch would load them).
    state: dict[str, np.ndarray]
    counters: dict[str, Any]
    #: True when ``state`` is the weights' moving average, False for the trained weights.
    averaged: bool
    #: (sensor names, distances in metres) of the output grid, where the checkpoint's
    #: params name them (the trainer and ``ssl-obstacle train`` save them); else None.
    grid: tuple[list[str], list[float]] | None = None
    #: The settings the checkpoint was trained with (plain values; the trainer node's
    #: parameters), for provenance.
    params: dict[str, Any] = field(default_factory=dict)
    #: (S, D) in [0, 1]: how far each cell can be trusted; None when the file has none.
    cell_confidence: np.ndarray | None = None


class _Refused(pickle.UnpicklingError):
    """The pickle names a global that a checkpoint never contains."""


def _no_setstate(self: Any, state: Any) -> None:
    """Refuse a pickle's BUILD on a stand-in: its checked fields must stay as they are."""
    raise pickle.UnpicklingError(f'the pickle tries to change a {type(self).__name__}')


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and its kind: names a dtype, cannot be called."""

    __slots__ = ('name',)
    __setstate__ = _no_setstate

    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage record of the archive, not read yet."""

    key: str
    dtype: np.dtype
    numel: int
    __setstate__ = _no_setstate


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor as the pickle describes it (a strided view of a storage), not read yet."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    __setstate__ = _no_setstate


def _ints(value: Any, what: str) -> tuple[int, ...]:
    """Return ``value`` as a tuple of non-negative ints, or raise naming ``what``."""
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f'tensor {what} {value!r} is not a tuple of sizes')
    return value


def _check_view(storage: Any, offset: Any, size: Any, stride: Any) -> _TensorRef:
    """
    Return a lazy tensor after checking that it lies within its storage.

    Within the storage: no read past it. No more elements than it holds: no tensor of a
    billion elements made of one, repeated with stride 0.
    """
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError('tensor without a storage')
    offset = _ints((offset,), 'offset')[0]
    size, stride = _ints(size, 'size'), _ints(stride, 'stride')
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f'tensor size {size} and stride {stride} differ in rank')
    count = math.prod(size)
    if count and (offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel
                  or count > storage.numel):
        raise pickle.UnpicklingError(f'tensor {size} at {offset} does not fit its storage '
                                     f'of {storage.numel} elements')
    return _TensorRef(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _TensorRef:
    """Stand in for ``torch._utils._rebuild_tensor_v2``: return a checked lazy tensor."""
    return _check_view(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False,
                       backward_hooks: Any = None) -> _TensorRef:
    """Unwrap ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError('parameter without a tensor')
    return data


#: The only globals a checkpoint's pickle may name, and what stands in for each.
_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """An unpickler that knows tensors, storages and OrderedDict, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the stand-in for an allowed global; refuse any other."""
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        if module == 'torch' and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f'{module}.{name}')

    def persistent_load(self, pid: Any) -> _Storage:
        """Return the storage a persistent id names (its bytes are read later)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
        return _Storage(pid[2], np.dtype(_STORAGE_DTYPES[pid[1].name]), pid[4])


class _Archive:
    """The records of an opened checkpoint archive; reads and checks storages."""

    def __init__(self, path: pathlib.Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.zip = archive
        pickles = [n for n in archive.namelist()
                   if n.endswith('/data.pkl') and n.count('/') == 1]
        if not pickles:
            raise CheckpointError(f'{path}: not a torch checkpoint (no data.pkl in the archive)')
        self.prefix = pickles[0][:-len('data.pkl')]
        try:
            order = archive.read(self.prefix + 'byteorder').decode('ascii')
        except KeyError:
            order = 'little'  # torch before 1.10 wrote no byte order: little-endian then
        if order not in ('little', 'big'):
            raise CheckpointError(f'{path}: unknown byte order {order!r}')
        self.order = '<' if order == 'little' else '>'
        self._storages: dict[str, np.ndarray] = {}

    def payload(self) -> Any:
        """Return the unpickled payload, tensors still lazy."""
        data = self.zip.read(self.prefix + 'data.pkl')
        return _Unpickler(io.BytesIO(data)).load()

    def storage(self, storage: _Storage) -> np.ndarray:
        """Return a storage's elements (1-D, native byte order), read once per key."""
        if storage.key not in self._storages:
            name = f'{self.prefix}data/{storage.key}'
            try:
                info = self.zip.getinfo(name)
            except KeyError:
                raise CheckpointError(f'{self.path}: storage {name} is missing') from None
            expected = storage.numel * storage.dtype.itemsize
            if info.file_size != expected:
                raise CheckpointError(f'{self.path}: storage {name} has {info.file_size} '
                                      f'bytes, expected {expected}')
            raw = np.frombuffer(self.zip.read(name),
                                dtype=storage.dtype.newbyteorder(self.order))
            self._storages[storage.key] = raw.astype(storage.dtype.newbyteorder('='))
        return self._storages[storage.key]

    def tensor(self, ref: _TensorRef) -> np.ndarray:
        """Return a lazy tensor as a new contiguous array."""
        # Checked again here, where a bad view would read outside the storage.
        ref = _check_view(ref.storage, ref.offset, ref.size, ref.stride)
        elements = self.storage(ref.storage)
        item = elements.itemsize
        view = np.lib.stride_tricks.as_strided(
            elements[ref.offset:], shape=ref.size, strides=[s * item for s in ref.stride],
            writeable=False)
        return np.array(view, order='C')

    def materialize(self, value: Any) -> Any:
        """Return ``value`` with every lazy tensor in it read (dicts, lists, tuples)."""
        if isinstance(value, _TensorRef):
            return self.tensor(value)
        if isinstance(value, dict):
            return {k: self.materialize(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.materialize(v) for v in value)
        if isinstance(value, (_Storage, _StorageType)):
            raise CheckpointError(f'{self.path}: a bare storage where a value should be')
        return value


def read_checkpoint_weights(path: str | os.PathLike[str],
                            averaged: bool = True) -> CheckpointWeights:
    """
    Read the config, weights and counters of a checkpoint written by ``save_checkpoint``.

    With ``averaged`` (the default) and a checkpoint that has them, the weights are the
    moving average (what the online learner predicts with), with the checkpoint's
    calibration folded in, else the trained weights;
    their names and shapes are checked against the config. A truncated, corrupt, foreign
    or other-version file, or one whose pickle names anything but tensors and plain values,
    raises :class:`CheckpointError`; a missing one ``FileNotFoundError``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {str(path)!r} does not exist')
    try:
        with zipfile.ZipFile(path) as archive:
            return _read(_Archive(path, archive), averaged)
    except CheckpointError:
        raise
    except _Refused as error:
        raise CheckpointError(f'{path}: refused: its pickle refers to {error}, which no '
                              'checkpoint contains (loading it could run code)') from error
    except Exception as error:  # zipfile and pickle raise many kinds (BadZipFile, EOF…)
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated or corrupt?): '
                              f'{type(error).__name__}: '
                              f'{" ".join(str(error).split())[:300]}') from error


def _read(archive: _Archive, averaged: bool) -> CheckpointWeights:
    """Return the weights of an opened archive (see :func:`read_checkpoint_weights`)."""
    path = archive.path
    payload = archive.payload()
    config = checked_payload_config(path, payload)
    use_average = averaged and payload.get('average_state') is not None
    which = 'average_state' if use_average else 'model_state'
    raw = payload.get(which)
    if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, _TensorRef) for k, v in raw.items()):
        raise CheckpointError(f'{path}: {which} is not a dict of named tensors')
    state = {name: archive.tensor(ref) for name, ref in raw.items()}
    problem = state_mismatch(config, {name: value.shape for name, value in state.items()})
    if problem is not None:
        raise CheckpointError(f'{path}: checkpoint weights ({which}) do not fit its config: '
                              f'{problem}')
    for name, value in state.items():
        if value.dtype.kind != 'f':
            raise CheckpointError(f'{path}: {which} {name} is {value.dtype}, not floating')
    counters = archive.materialize(payload.get('counters') or {})
    if not isinstance(counters, dict):
        raise CheckpointError(f'{path}: counters are a {type(counters).__name__}, not a dict')
    if averaged and payload.get('calibration'):
        state = _calibrated(path, state, archive.materialize(payload['calibration']))
    params = archive.materialize(payload.get('params') or {})
    try:
        confidence = checked_confidence(archive.materialize(payload.get('cell_confidence')),
                                        (config.num_sensors, config.num_distances))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: its cell_confidence is unusable: {error}') from error
    return CheckpointWeights(config=config, state=state, counters=counters,
                             averaged=use_average, grid=_grid(path, config, payload),
                             params=params if isinstance(params, dict) else {},
                             cell_confidence=confidence)


def _calibrated(path: pathlib.Path, state: dict[str, np.ndarray],
                calibration: Any) -> dict[str, np.ndarray]:
    """Return ``state`` with the checkpoint's calibration folded into its last layer."""
    try:
        return PlattScaling.from_dict(calibration).fold_into(state)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: its calibration is unusable: {error}') from error


def _grid(path: pathlib.Path, config: ModelConfig,
          payload: dict) -> tuple[list[str], list[float]] | None:
    """Return the (sensor names, distances) the params name, checked against the config."""
    params = payload.get('params')
    if not isinstance(params, dict) or 'sensor_names' not in params \
            or 'distances' not in params:
        return None
    names, distances = params['sensor_names'], params['distances']
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and isinstance(distances, list)
            and all(isinstance(d, (int, float)) and not isinstance(d, bool)
                    for d in distances)):
        raise CheckpointError(f'{path}: params sensor_names {names!r} and distances '
                              f'{distances!r} are not a list of names and one of numbers')
    if (len(names), len(distances)) != (config.num_sensors, config.num_distances):
        raise CheckpointError(f'{path}: params name {len(names)} sensors and {len(distances)} '
                              f'distances, the model config {config.num_sensors} and '
                              f'{config.num_distances}')
    return list(names), [float(d) for d in distances]
