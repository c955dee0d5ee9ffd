"""
Model checkpoints: written atomically, read without running code.

A checkpoint holds the model's weights, optionally their running average (what an online
learner predicts with), the optimiser's state, counters and parameters, and the
:class:`ModelConfig` the network was built from, as tensors and plain Python values only,
so ``torch.load(weights_only=True)`` reads it: a checkpoint downloaded or shared cannot
execute anything when loaded. It is written to a temporary file in the target's directory,
flushed, fsynced and renamed over the target, so a process killed at any moment leaves
either the previous complete checkpoint or the new one, never a mix.
"""

from __future__ import annotations

from dataclasses import asdict
import os
import pathlib
from typing import Any, Mapping

import numpy as np
import torch

from .atomic_file import atomic_output
from .calibration import PlattScaling
# One error class, format name, version and config check for this reader and the torch-free
# one (checkpoint_reader, for the robot's predictor).
from .checkpoint_reader import checked_payload_config, CheckpointError, FORMAT, VERSION
from .model import ModelConfig, ObstacleNet


def _plain(value: Any, where: str) -> Any:
    """Return ``value`` as tensors and plain types (tuples → lists, numpy → Python)."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int)) else str(k): _plain(v, f'{where}.{k}')
                for k, v in value.items()}
    raise TypeError(f'checkpoint {where} is a {type(value).__name__}; only tensors, dicts, '
                    'lists, str, int, float, bool and None can be loaded with weights_only')


def save_checkpoint(path: str | os.PathLike[str], model: ObstacleNet,
                    optimizer: torch.optim.Optimizer | None = None,
                    counters: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None,
                    config: ModelConfig | None = None,
                    average_state: Mapping[str, torch.Tensor] | None = None,
                    calibration: Mapping[str, Any] | None = None,
                    cell_confidence: np.ndarray | None = None) -> None:
    """
    Write a checkpoint atomically; ``config`` defaults to ``model.config``.

    ``average_state``, when given, is the state of the weights' moving average: the model
    that predicts, kept beside the weights that train (both are needed to resume).
    ``calibration`` (``PlattScaling.as_dict()``) is the correction of the predicting
    model's probabilities; readers fold it into those weights. ``cell_confidence`` (S, D)
    is how far each of its cells can be trusted (core/confidence.py).

    Everything is converted (and checked) before the file is opened, so a bad value fails
    without touching the disk; any failure while writing, ``KeyboardInterrupt`` included,
    removes the temporary file and leaves a previous checkpoint at ``path`` intact.
    """
    path = pathlib.Path(path)
    config = config if config is not None else model.config
    payload = {
        'format': FORMAT,
        'version': VERSION,
        'model_state': dict(model.state_dict()),
        'average_state': dict(average_state) if average_state is not None else None,
        'optimizer_state': (_plain(optimizer.state_dict(), 'optimizer_state')
                            if optimizer is not None else None),
        'counters': _plain(dict(counters or {}), 'counters'),
        'params': _plain(dict(params or {}), 'params'),
        'config': _plain(asdict(config), 'config'),
        'calibration': _plain(dict(calibration), 'calibration') if calibration else None,
        'cell_confidence': (np.asarray(cell_confidence, dtype=float).tolist()
                            if cell_confidence is not None else None),
    }
    with atomic_output(path) as temp, open(temp, 'xb') as stream:
        torch.save(payload, stream)


def load_checkpoint(path: str | os.PathLike[str],
                    device: str | torch.device = 'cpu') -> dict[str, Any]:
    """
    Read a checkpoint with ``torch.load(weights_only=True)``; tensors go to ``device``.

    Return ``model_state``, ``average_state`` and ``optimizer_state`` (None if not
    saved), ``counters``,
    ``params`` and ``config`` (a :class:`ModelConfig`). A truncated, corrupt or foreign
    file raises :class:`CheckpointError`; a missing one ``FileNotFoundError``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint {str(path)!r} does not exist')
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many kinds (OSError, RuntimeError, Unpickling…)
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated or corrupt?): '
                              f'{" ".join(str(error).split())[:300]}') from error
    config = checked_payload_config(path, payload)
    return {
        'model_state': payload['model_state'],
        'average_state': payload.get('average_state'),
        'optimizer_state': payload.get('optimizer_state'),
        'counters': dict(payload.get('counters') or {}),
        'params': dict(payload.get('params') or {}),
        'config': config,
        'calibration': payload.get('calibration'),
        'cell_confidence': payload.get('cell_confidence'),
    }


def build_model(checkpoint: Mapping[str, Any],
                device: str | torch.device | None = None, *,
                averaged: bool = True) -> ObstacleNet:
    """
    Return an :class:`ObstacleNet` with the checkpoint's config and weights.

    With ``averaged`` (the default) and a checkpoint that has them, the weights are the
    moving average the online learner predicted with, and its calibration folded in, so
    ``evaluate`` scores the model the robot used; otherwise the trained weights. The
    model is on ``device`` (default: where the checkpoint's tensors were loaded), in eval
    mode.
    """
    model = ObstacleNet(checkpoint['config'])
    state = checkpoint['model_state']
    if averaged and checkpoint.get('average_state') is not None:
        state = checkpoint['average_state']
    if averaged and checkpoint.get('calibration'):
        state = calibrated_state(state, checkpoint['calibration'])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f'checkpoint weights do not fit its config: {error}') from error
    if device is None:
        tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
        device = tensors[0].device if tensors else 'cpu'
    return model.to(device).eval()


def calibrated_state(state: Mapping[str, torch.Tensor],
                     calibration: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return ``state`` with a checkpoint's calibration folded into its last layer."""
    try:
        scaling = PlattScaling.from_dict(calibration)
        arrays = {name: value.detach().cpu().numpy() for name, value in state.items()}
        folded = scaling.fold_into(arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'checkpoint calibration is unusable: {error}') from error
    return {name: torch.from_numpy(np.ascontiguousarray(folded[name])).to(state[name].device)
            for name in state}
