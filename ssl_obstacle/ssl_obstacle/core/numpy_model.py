"""
The perception network's forward pass in numpy, for the robot computer that has no torch.

The predictor runs on a 32-bit ARM computer where PyTorch is not available, so it cannot run
:class:`~.model.ObstacleNet`. :class:`NumpyObstacleNet` computes the same function from the
same named weights (those of ``ObstacleNet.state_dict()``, e.g. read by
:mod:`.checkpoint_reader` or received from the trainer) with numpy alone: the per-image
standardisation of :func:`~.model.preprocess`, then each block's 3×3 zero-padded convolution,
ReLU and 2×2 floor max-pooling, the dense ReLU layer and the linear output, and a sigmoid;
dropout is absent, as in eval mode. Nothing in this module's imports pulls in torch.

Images are kept channels-last (N, H, W, C), so that a convolution is one matrix product of
an im2col copy (every pixel's 3×3×C neighbourhood in a row) with the kernels; the dense
layer's weights are permuted once so that flattening channels-last matches torch's
(C, H, W) order. Pooling comes before the bias and ReLU, which is the same result (both are
monotonic per channel) on a quarter of the values.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .model_config import _STD_EPS, ModelConfig, state_mismatch

#: Frames per forward pass in :meth:`NumpyObstacleNet.predict`: bounds the im2col buffers
#: (about 0.55 MB per 64×80 frame for the first convolution).
BATCH_SIZE = 32


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Return the logistic function of ``logits`` in their float type, never overflowing."""
    logits = np.asarray(logits)
    small = np.exp(-np.abs(logits))  # in (0, 1]: never overflows
    return np.where(logits >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(
        logits.dtype if logits.dtype.kind == 'f' else np.float64, copy=False)


def image_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Return each image's mean and deviation (float64, (N,)) as ``preprocess`` standardises.

    Zero mean, unit population deviation over each image's pixels and channels, the
    deviation clamped below at _STD_EPS.
    """
    mean = np.mean(images, axis=(1, 2, 3), dtype=np.float64)
    std = np.maximum(np.std(images, axis=(1, 2, 3), dtype=np.float64), _STD_EPS)
    return mean, std


class NumpyObstacleNet:
    """
    :class:`~.model.ObstacleNet` in eval mode, computed with numpy from its named weights.

    ``state`` maps the names of ``ObstacleNet(config).state_dict()`` to arrays of exactly
    those shapes (float16, float32 or float64, finite); they are copied as float32, so the
    caller's arrays may change afterwards.
    """

    def __init__(self, config: ModelConfig, state: Mapping[str, np.ndarray]) -> None:
        """Check ``state`` against ``config`` and lay its weights out for the forward pass."""
        arrays = {name: np.asarray(value) for name, value in state.items()}
        problem = state_mismatch(config, {name: a.shape for name, a in arrays.items()})
        if problem is not None:
            raise ValueError(f'weights do not fit the model config: {problem}')
        for name, array in arrays.items():
            if array.dtype.kind != 'f':
                raise ValueError(f'weight {name} is {array.dtype}, not floating point')
            if not np.isfinite(array).all():
                raise ValueError(f'weight {name} has NaN or infinite values')
        weights = {name: np.array(a, dtype=np.float32) for name, a in arrays.items()}
        self.config = config
        #: Per block: kernels as a (9·C, F) matrix in the im2col row order (dy, dx, c), bias.
        self._convolutions: list[tuple[np.ndarray, np.ndarray]] = []
        for block in range(len(config.filters)):
            kernel = weights[f'features.{3 * block}.weight']  # (F, C, 3, 3)
            matrix = kernel.transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0])
            self._convolutions.append((np.ascontiguousarray(matrix),
                                       weights[f'features.{3 * block}.bias']))
        height, width = config.feature_size()
        dense = weights['head.2.weight']  # (dense, C·h·w), inputs in torch's (C, h, w) order
        channels = config.filters[-1]
        self._dense = np.ascontiguousarray(  # (h·w·C, dense): inputs channels-last
            dense.reshape(-1, channels, height, width).transpose(2, 3, 1, 0).reshape(
                -1, dense.shape[0]))
        self._dense_bias = weights['head.2.bias']
        self._output = np.ascontiguousarray(weights['head.4.weight'].T)  # (dense, S·D)
        self._output_bias = weights['head.4.bias']

    def predict(self, images: np.ndarray) -> np.ndarray:
        """
        Return P(obstacle) (N, S, D) float32 for uint8 rgb images (N, H, W, 3) or one (H, W, 3).

        One image gives N = 1, as :func:`~.model.predict_probabilities` does. Images of
        another size or type than the config's raise ``ValueError``.
        """
        config = self.config
        images = np.asarray(images)
        shape = (config.image_height, config.image_width, 3)
        if images.ndim not in (3, 4) or images.shape[-3:] != shape or images.dtype != np.uint8:
            raise ValueError(f'expected uint8 images (N, {shape[0]}, {shape[1]}, 3) or one '
                             f'{shape}, got {images.dtype} {images.shape}')
        if images.ndim == 3:
            images = images[None]
        out = np.empty((len(images), config.num_sensors, config.num_distances), np.float32)
        for start in range(0, len(images), BATCH_SIZE):
            batch = images[start:start + BATCH_SIZE]
            out[start:start + len(batch)] = self._forward(batch).reshape(len(batch),
                                                                         *out.shape[1:])
        return out

    def _forward(self, images: np.ndarray) -> np.ndarray:
        """Return the probabilities (N, S·D) for a batch of checked uint8 images."""
        count, height, width, _ = images.shape
        # The statistics are taken in float64 and rounded to float32: torch's float32
        # reductions agree to their rounding.
        mean, std = image_statistics(images)
        padded = np.zeros((count, height + 2, width + 2, 3), np.float32)
        inner = padded[:, 1:-1, 1:-1]
        np.subtract(images, mean.astype(np.float32)[:, None, None, None], out=inner,
                    dtype=np.float32)
        np.divide(inner, std.astype(np.float32)[:, None, None, None], out=inner)
        features = padded
        last = len(self._convolutions) - 1
        for block, (matrix, bias) in enumerate(self._convolutions):
            channels, filters = features.shape[3], matrix.shape[1]
            # im2col: each output pixel's 3x3xC neighbourhood in the zero-padded input as one
            # row (dy, dx, c). Within an input row, the 3 pixels x C channels a kernel row
            # covers are 3·C consecutive values: windows of that length, every C-th.
            rows_of_values = features.reshape(count, height + 2, (width + 2) * channels)
            windows = sliding_window_view(rows_of_values, (3, 3 * channels), axis=(1, 2))
            columns = windows[:, :, ::channels].reshape(count * height * width, 9 * channels)
            conv = (columns @ matrix).reshape(count, height, width, filters)
            # 2x2 max-pooling, floor: an odd last row or column is dropped (nn.MaxPool2d(2)).
            height, width = height // 2, width // 2
            rows = np.maximum(conv[:, 0:2 * height:2], conv[:, 1:2 * height:2])
            pooled = np.maximum(rows[:, :, 0:2 * width:2], rows[:, :, 1:2 * width:2])
            pooled += bias
            if block == last:
                features = np.maximum(pooled, 0.0, out=pooled)
            else:  # ReLU written straight into the next convolution's zero-padded input
                features = np.zeros((count, height + 2, width + 2, filters), np.float32)
                np.maximum(pooled, 0.0, out=features[:, 1:-1, 1:-1])
        hidden = features.reshape(count, -1) @ self._dense
        hidden += self._dense_bias
        np.maximum(hidden, 0.0, out=hidden)
        logits = hidden @ self._output
        logits += self._output_bias
        return sigmoid(logits)
