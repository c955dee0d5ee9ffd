"""
The model on the wire: ``ModelWeights`` messages to and from numpy weights.

Built by the trainer, read by the predictor, which must not import torch: everything here
is numpy and message fields. A message is checked whole before it is used, so a predictor
never runs on weights of another shape, another grid or with NaNs in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .conversions import BadInput, stamp_to_ns
from ..core.confidence import checked_confidence
from ..core.model_config import ModelConfig, state_shapes

#: Encodings of the weights' bytes on the wire (little-endian).
ENCODINGS = {'float32': np.dtype('<f4'), 'float16': np.dtype('<f2')}

#: What to fix, by kind of refused model message, for the log line that reports it.
MODEL_FIXES = {
    'model_grid': 'Give the trainer and the predictor the same sensor_names and distances.',
    'model_config': 'Give the trainer and the predictor the same image_width and '
                    'image_height.',
    'model_layout': 'The trainer and the predictor run different versions of the network.',
    'model_encoding': f'Publish weights as one of {", ".join(ENCODINGS)}.',
    'model_values': 'The trainer diverged: reset it (ssl/reset_model).',
}


@dataclass(frozen=True)
class ReceivedModel:
    """A checked model message: the network's configuration, its weights, provenance."""

    config: ModelConfig
    sensor_names: tuple[str, ...]
    distances: tuple[float, ...]
    state: dict[str, np.ndarray]
    updates: int
    version: int
    trainer: str
    stamp: int
    #: (S, D) in [0, 1]: how far each cell can be trusted; None when the message has none.
    cell_confidence: np.ndarray | None = None


def model_weights_msg(header: Any, config: ModelConfig, sensor_names: Sequence[str],
                      distances: Sequence[float], state: Mapping[str, np.ndarray],
                      updates: int, version: int, trainer: str,
                      encoding: str = 'float32',
                      cell_confidence: np.ndarray | None = None) -> Any:
    """Build a ``ModelWeights`` message; tensors keep ``state``'s order (the state_dict's)."""
    from ssl_obstacle_msgs.msg import ModelWeights

    if encoding not in ENCODINGS:
        raise ValueError(f'encoding must be one of {", ".join(ENCODINGS)}, got {encoding!r}')
    dtype = ENCODINGS[encoding]
    msg = ModelWeights()
    msg.header = header
    msg.updates = int(updates)
    msg.version = int(version)
    msg.trainer = str(trainer)
    msg.image_height = int(config.image_height)
    msg.image_width = int(config.image_width)
    msg.filters = [int(f) for f in config.filters]
    msg.dense = int(config.dense)
    msg.sensor_names = list(sensor_names)
    msg.distances = np.asarray(distances, dtype=np.float32)
    msg.tensor_names = list(state)
    msg.tensor_ranks = bytes(np.asarray(t).ndim for t in state.values())
    msg.tensor_shapes = [int(d) for t in state.values() for d in np.shape(t)]
    msg.encoding = encoding
    msg.data = b''.join(np.ascontiguousarray(t, dtype=dtype).tobytes() for t in state.values())
    if cell_confidence is not None:
        msg.cell_confidence = np.asarray(cell_confidence, dtype=np.float32).reshape(-1)
    return msg


def read_model_msg(msg: Any, sensor_names: Sequence[str],
                   distances: Sequence[float]) -> ReceivedModel:
    """
    Return a model message's weights if they fit this grid and are whole; else raise.

    ``BadInput`` kinds: ``model_grid`` (other sensors or distances than this node's),
    ``model_config`` (sizes that build no network), ``model_layout`` (tensors not those of
    the configured network), ``model_encoding``, ``model_values`` (NaN or infinite weights,
    cell confidences outside [0, 1] or of another size).
    """
    names = tuple(str(n) for n in msg.sensor_names)
    got_distances = np.asarray(msg.distances, dtype=np.float64)
    want_distances = np.asarray(distances, dtype=np.float64)
    if names != tuple(sensor_names) or got_distances.shape != want_distances.shape or \
            not np.allclose(got_distances, want_distances, rtol=0.0, atol=1e-6):
        raise BadInput('model_grid', f'the model predicts sensors {list(names)} at '
                                     f'{len(got_distances)} distances, this node wants '
                                     f'{list(sensor_names)} at {len(want_distances)}')
    try:
        config = ModelConfig(num_sensors=len(names), num_distances=len(got_distances),
                             image_height=int(msg.image_height),
                             image_width=int(msg.image_width),
                             filters=tuple(int(f) for f in msg.filters), dense=int(msg.dense))
    except (TypeError, ValueError) as error:
        raise BadInput('model_config', str(error)) from error
    state = _tensors(msg, config)
    if not all(np.isfinite(t).all() for t in state.values()):
        raise BadInput('model_values', 'some weights are NaN or infinite')
    try:
        confidence = checked_confidence(np.asarray(msg.cell_confidence, dtype=np.float32),
                                        (config.num_sensors, config.num_distances))
    except ValueError as error:
        raise BadInput('model_values', str(error)) from error
    return ReceivedModel(config=config, sensor_names=names,
                         distances=tuple(float(d) for d in got_distances), state=state,
                         updates=int(msg.updates), version=int(msg.version),
                         trainer=str(msg.trainer), stamp=stamp_to_ns(msg.header.stamp),
                         cell_confidence=confidence)


def _tensors(msg: Any, config: ModelConfig) -> dict[str, np.ndarray]:
    """Split the data into named float32 tensors of exactly the configured network's shapes."""
    dtype = ENCODINGS.get(str(msg.encoding))
    if dtype is None:
        raise BadInput('model_encoding', f'unknown encoding {msg.encoding!r}')
    expected = state_shapes(config)
    names = [str(n) for n in msg.tensor_names]
    ranks = list(bytes(msg.tensor_ranks))
    dims = [int(d) for d in msg.tensor_shapes]
    if len(ranks) != len(names) or sum(ranks) != len(dims):
        raise BadInput('model_layout', f'{len(names)} tensor names, {len(ranks)} ranks and '
                                       f'{len(dims)} dimensions do not agree')
    shapes, start = {}, 0
    for name, rank in zip(names, ranks):
        shapes[name] = tuple(dims[start:start + rank])
        start += rank
    if shapes != expected:
        wrong = next((n for n in expected if shapes.get(n) != expected[n]), None) or \
            next(n for n in shapes if n not in expected)
        raise BadInput('model_layout', f'tensor {wrong!r} is {shapes.get(wrong)}, the '
                                       f'configured network has {expected.get(wrong)}')
    raw = np.frombuffer(msg.data, dtype=np.uint8)  # rclpy's array('B') or bytes, no copy
    sizes = [int(np.prod(shape)) for shape in shapes.values()]
    if raw.size != sum(sizes) * dtype.itemsize:
        raise BadInput('model_layout', f'{raw.size} bytes of data, the tensors need '
                                       f'{sum(sizes) * dtype.itemsize}')
    flat = raw.view(dtype)
    state, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        state[name] = flat[start:start + size].reshape(shape).astype(np.float32)
        start += size
    return state
