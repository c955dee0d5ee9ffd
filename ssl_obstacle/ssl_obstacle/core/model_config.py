"""
The perception model's sizes, and the names and shapes of its weights, without torch.

The torch-free predictor (a robot computer without PyTorch) needs the configuration and the
layout of the weights as much as the trainer does; keeping them here, apart from the torch
network in :mod:`.model`, lets both sides share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

#: Pixel standard deviations below this (in grey levels, 0..255) count as a flat image:
#: dividing by a near-zero deviation would turn sensor noise into full-scale contrast.
_STD_EPS = 1e-3


@dataclass(frozen=True)
class ModelConfig:
    """
    Sizes of :class:`~.model.ObstacleNet`; everything the network's shape depends on.

    Defaults are the paper's: a 64×80 rgb input, five sensors and 31 distances (0–30 cm).
    """

    num_sensors: int = 5
    num_distances: int = 31
    image_height: int = 64
    image_width: int = 80
    filters: tuple[int, ...] = (10, 10, 8)
    dense: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        """Reject sizes that would build a broken network, with a message that says why."""
        object.__setattr__(self, 'filters', tuple(int(f) for f in self.filters))
        if self.num_sensors < 1 or self.num_distances < 1:
            raise ValueError('num_sensors and num_distances must be at least 1')
        if not self.filters or any(f < 1 for f in self.filters):
            raise ValueError(f'filters must be positive, got {self.filters}')
        if self.dense < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError('dense must be positive and dropout in [0, 1)')
        height, width = self.feature_size()
        if height < 1 or width < 1:
            raise ValueError(f'image {self.image_height}x{self.image_width} is too small for '
                             f'{len(self.filters)} 2x2 poolings')

    def feature_size(self) -> tuple[int, int]:
        """Return the (height, width) of the feature map after every pooling (floor halving)."""
        height, width = self.image_height, self.image_width
        for _ in self.filters:
            height, width = height // 2, width // 2
        return height, width


#: The network's last layer: its outputs are the cells' logits, in sensor-major order.
OUTPUT_LAYER = 'head.4'


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """
    Return the names and shapes of ObstacleNet's tensors, in its ``state_dict`` order.

    Each block of ``features`` is (convolution, ReLU, max-pool), so the convolutions are
    modules 0, 3, 6, …; ``head`` is (flatten, dropout, dense, ReLU, linear).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    channels = 3
    for block, filters in enumerate(config.filters):
        shapes[f'features.{3 * block}.weight'] = (filters, channels, 3, 3)
        shapes[f'features.{3 * block}.bias'] = (filters,)
        channels = filters
    height, width = config.feature_size()
    outputs = config.num_sensors * config.num_distances
    shapes['head.2.weight'] = (config.dense, channels * height * width)
    shapes['head.2.bias'] = (config.dense,)
    shapes[f'{OUTPUT_LAYER}.weight'] = (outputs, config.dense)
    shapes[f'{OUTPUT_LAYER}.bias'] = (outputs,)
    return shapes


def state_mismatch(config: ModelConfig,
                   shapes: Mapping[str, Sequence[int]]) -> str | None:
    """
    Say how tensor ``shapes`` (name → shape) differ from ``config``'s; None if they fit.

    The first expected name that is missing or has another shape is named with both shapes,
    else the first unexpected name: one readable line rather than a list of every layer.
    """
    expected = state_shapes(config)
    for name, shape in expected.items():
        if name not in shapes:
            return f'{name} is missing (expected shape {shape})'
        got = tuple(int(n) for n in shapes[name])
        if got != shape:
            return f'{name} has shape {got}, expected {shape}'
    for name, shape in shapes.items():
        if name not in expected:
            return f'unexpected tensor {name!r} (shape {tuple(shape)})'
    return None
