"""
The perception model of Nava et al. 2019, its loss, input preprocessing and augmentation.

One module serves the offline trainer (``ssl-obstacle train``) and the online learner, so
that a model trained either way is the same network fed the same way: images are
standardised per image by :func:`preprocess` and the network outputs one logit per
(sensor, distance) cell, trained by :func:`masked_bce_loss` on the cells the labeler knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

# Defined without torch, for the predictor (no PyTorch on the robot); still importable from here.
from .model_config import _STD_EPS, ModelConfig


class ObstacleNet(nn.Module):
    """
    Map a standardised rgb image to one obstacle logit per (sensor, distance) cell.

    Blocks of 3×3 'same' convolution, ReLU and 2×2 max-pooling, then dropout, a dense ReLU
    layer and a linear layer with ``num_sensors × num_distances`` outputs.
    """

    def __init__(self, config: ModelConfig) -> None:
        """Build the layers from ``config``; nothing is sized from hard-coded numbers."""
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 3
        for filters in config.filters:
            layers += [nn.Conv2d(channels, filters, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = filters
        self.features = nn.Sequential(*layers)
        height, width = config.feature_size()
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(config.dropout),
            nn.Linear(channels * height * width, config.dense), nn.ReLU(),
            nn.Linear(config.dense, config.num_sensors * config.num_distances))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, S, D) for standardised images ``x`` (N, 3, H, W)."""
        logits = self.head(self.features(x))
        return logits.view(-1, self.config.num_sensors, self.config.num_distances)


def preprocess(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """
    Turn uint8 rgb images (N, H, W, 3) or one (H, W, 3) into the network's float input.

    Each image is standardised on its own (zero mean, unit deviation over all its pixels and
    channels), as in the paper: the model then sees contrast, not exposure, which differs
    between cameras, rooms and times of day.
    """
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # e.g. a view of a message buffer; torch wants writable memory
    tensor = torch.as_tensor(images)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f'expected images (N, H, W, 3) or (H, W, 3), got {tuple(tensor.shape)}')
    tensor = tensor.permute(0, 3, 1, 2).to(torch.float32)
    mean = tensor.mean(dim=(1, 2, 3), keepdim=True)
    std = tensor.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(_STD_EPS)
    return ((tensor - mean) / std).contiguous()


def masked_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    Return binary cross-entropy on known cells, averaged over the known cells.

    ``labels`` (N, S, D) hold P(obstacle) in [0, 1] (fractional labels are fine) and NaN
    where unknown. Unknown cells are replaced before the loss and selected away after it
    with :func:`torch.where`, so NaN never enters the graph and their gradient is exactly
    zero. A batch with no known cell gives a zero loss that still has a graph (so callers
    can call ``backward()`` unconditionally).
    """
    labels = labels.to(device=logits.device, dtype=logits.dtype)
    known = ~torch.isnan(labels)
    targets = torch.where(known, labels, torch.zeros_like(labels))
    per_cell = functional.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    per_cell = torch.where(known, per_cell, torch.zeros_like(per_cell))
    return per_cell.sum() / known.sum().clamp_min(1)


@dataclass(frozen=True)
class Augmentation:
    """
    How much :func:`augment` perturbs a training batch.

    ``gain`` (±, whole image), ``gradient`` (± per axis across the image), ``noise`` (largest
    Gaussian std, grey levels) and ``flip`` are the paper's. ``channel_gain`` (± per colour
    channel: white balance, tinted light, a differently painted object) and
    ``channel_shuffle`` (probability of permuting the rgb channels: a hue change that keeps
    every edge and shape) are this project's colour jitter, against a model that learns
    the colours of the one room it was trained in rather than the shape of obstacles.
    """

    gain: float = 0.2
    gradient: float = 0.15
    noise: float = 6.0
    flip: bool = True
    channel_gain: float = 0.15
    channel_shuffle: float = 0.0

    def __post_init__(self) -> None:
        """Reject amounts that would make negative factors or meaningless probabilities."""
        for name in ('gain', 'gradient', 'channel_gain'):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f'{name} must be in [0, 1), got {getattr(self, name)}')
        if self.noise < 0.0 or not 0.0 <= self.channel_shuffle <= 1.0:
            raise ValueError('noise must be non-negative and channel_shuffle in [0, 1]')


#: The paper's augmentation only (no colour jitter), for comparisons.
PAPER_AUGMENTATION = Augmentation(channel_gain=0.0, channel_shuffle=0.0)


#: What :func:`augment` does unless told otherwise: the paper's plus a mild colour jitter.
DEFAULT_AUGMENTATION = Augmentation()


def augment(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            settings: Augmentation = DEFAULT_AUGMENTATION) -> tuple[np.ndarray, np.ndarray]:
    """
    Return randomly perturbed copies of a batch, as the paper augments its training data.

    Per image (defaults of :class:`Augmentation`): a gain of ±20 %, a brightness gradient
    of up to ±15 % across the image in each of the horizontal and vertical directions
    (uneven lighting), a gain per colour channel, with some probability a permutation of
    the colour channels, Gaussian pixel noise of up to 6 grey levels, and with probability
    0.5 a horizontal flip. A flipped image shows the world mirrored, so its labels' sensor
    axis is reversed too (the sensors are ordered left to right, symmetric about the
    robot's axis). Nothing moves a pixel except the flip: labels stay true.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    count, height, width = images.shape[:3]
    gain = rng.uniform(1.0 - settings.gain, 1.0 + settings.gain, size=(count, 1, 1, 1))
    slope_x = rng.uniform(-settings.gradient, settings.gradient, size=(count, 1, 1, 1))
    slope_y = rng.uniform(-settings.gradient, settings.gradient, size=(count, 1, 1, 1))
    ramp_x = np.linspace(-1.0, 1.0, width).reshape(1, 1, width, 1)
    ramp_y = np.linspace(-1.0, 1.0, height).reshape(1, height, 1, 1)
    factor = gain * (1.0 + slope_x * ramp_x + slope_y * ramp_y)
    if settings.channel_gain > 0.0:
        factor = factor * rng.uniform(1.0 - settings.channel_gain, 1.0 + settings.channel_gain,
                                      size=(count, 1, 1, 3))
    factor = factor.astype(np.float32)
    sigma = rng.uniform(0.0, settings.noise, size=(count, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal(images.shape, dtype=np.float32) * sigma
    out = images.astype(np.float32) * factor + noise
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if settings.channel_shuffle > 0.0:
        shuffle = np.flatnonzero(rng.random(count) < settings.channel_shuffle)
        if len(shuffle):
            order = np.argsort(rng.random((len(shuffle), 3)), axis=1)  # a permutation each
            out[shuffle] = np.take_along_axis(out[shuffle], order[:, None, None, :], axis=3)
    new_labels = labels.copy()
    if settings.flip:
        flip = rng.random(count) < 0.5
        out[flip] = out[flip, :, ::-1]
        new_labels[flip] = labels[flip, ::-1]
    return out, new_labels


def predict_probabilities(model: ObstacleNet, images: np.ndarray,
                          device: str | torch.device = 'cpu',
                          batch_size: int = 256) -> np.ndarray:
    """
    Return P(obstacle) (N, S, D) float32 for uint8 images (N, H, W, 3).

    Runs in eval mode (no dropout) without gradients, in batches so memory stays bounded
    for long datasets; the model's previous train/eval mode is restored afterwards. Not
    for a model another thread is training at the same moment: predict with a copy.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    config = model.config
    out = np.empty((len(images), config.num_sensors, config.num_distances), dtype=np.float32)
    was_training = model.training
    if was_training:  # a published snapshot is in eval mode already: no walk over modules
        model.eval()
    try:
        with torch.inference_mode():  # ~25 % faster than no_grad for one frame
            for start in range(0, len(images), max(1, int(batch_size))):
                batch = preprocess(images[start:start + batch_size]).to(device)
                out[start:start + len(batch)] = torch.sigmoid(model(batch)).cpu().numpy()
    finally:
        if was_training:
            model.train()
    return out
