"""Parameters of the label rule and of the buffers, shared by the node and bag export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from .thymio import SENSOR_NAMES

#: The five front sensors of the ROS 2 Thymio driver, left to right.
THYMIO_SENSORS: tuple[str, ...] = SENSOR_NAMES

#: 0.00 … 0.30 m in 1 cm steps, as in Nava et al. 2019.
DEFAULT_DISTANCES: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(31))


@dataclass(frozen=True)
class LabelParams:
    """
    Everything that decides which label a frame earns (DESIGN.md §5), plus buffer limits.

    Distances are metres, windows and ages seconds. The defaults are the paper's.
    """

    sensor_names: tuple[str, ...] = THYMIO_SENSORS
    distances: tuple[float, ...] = DEFAULT_DISTANCES
    tol_x: float = 0.01
    tol_y: float = 0.01
    tol_theta: float = 0.05
    past_window: float = 0.05
    future_window: float = 6.0
    #: Messages may arrive this much later than newer ones (any stream) and still count.
    reorder_window: float = 0.2
    #: A stamp this much older than the newest seen means the stream restarted (bag loop).
    time_jump_threshold: float = 2.0
    #: Labeling frames waiting for readings; the oldest give way beyond this.
    max_pending_frames: int = 1000
    #: Frames and readings waiting for odometry to cover their stamp.
    max_waiting: int = 5000
    #: Frames and readings older than this behind the newest stamp are evicted.
    max_age: float = 12.0
    #: Odometry samples kept for interpolation.
    odom_history: int = 4096
    #: Poses are never interpolated between odometry samples farther apart than this: three
    #: periods of a 10 Hz driver, six at 20 Hz. Inputs stamped inside a longer gap are dropped.
    max_odometry_gap: float = 0.3

    def __post_init__(self) -> None:
        """Reject parameters that would make the rule meaningless or the buffers unbounded."""
        if not self.sensor_names:
            raise ValueError('sensor_names must name at least one sensor')
        if len(set(self.sensor_names)) != len(self.sensor_names):
            raise ValueError(f'sensor_names has duplicates: {list(self.sensor_names)}')
        if not self.distances:
            raise ValueError('distances must hold at least one distance')
        if any(not np.isfinite(d) for d in self.distances):
            raise ValueError('distances must be finite')
        for name in ('tol_x', 'tol_y', 'tol_theta', 'past_window', 'future_window',
                     'reorder_window', 'max_age'):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f'{name} must be a finite, non-negative number, got {value}')
        if not np.isfinite(self.max_odometry_gap) or self.max_odometry_gap <= 0:
            raise ValueError(f'max_odometry_gap must be a positive number of seconds, '
                             f'got {self.max_odometry_gap}')
        if self.time_jump_threshold <= self.reorder_window:
            raise ValueError('time_jump_threshold must exceed reorder_window')
        for name in ('max_pending_frames', 'max_waiting', 'odom_history'):
            if getattr(self, name) < 2:
                raise ValueError(f'{name} must be at least 2')

    @property
    def reach(self) -> float:
        """Farthest a reading can be from a frame's position and still label it."""
        return float(np.hypot(max(abs(d) for d in self.distances) + self.tol_x, self.tol_y))

    @property
    def out_of_reach(self) -> float:
        """Distance from a frame beyond which it is finalised (DESIGN.md §5)."""
        return max(abs(d) for d in self.distances) + 2.0 * self.tol_x

    def to_dict(self) -> dict[str, Any]:
        """Plain values, e.g. for HDF5 attributes or a YAML file."""
        data = asdict(self)
        data['sensor_names'] = list(self.sensor_names)
        data['distances'] = [float(d) for d in self.distances]
        return data

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LabelParams:
        """Build from a parameter mapping (e.g. a node's ros__parameters), ignoring others."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                continue
            if key in ('sensor_names', 'distances') and isinstance(value, (str, bytes)):
                # tuple('left') would silently become ('l', 'e', 'f', 't').
                raise ValueError(f'{key} must be a list, not the string {value!r}')
            if key == 'sensor_names':
                value = tuple(str(v) for v in value)
            elif key == 'distances':
                value = tuple(float(v) for v in value)
            elif key in ('max_pending_frames', 'max_waiting', 'odom_history'):
                value = int(value)
            else:
                value = float(value)
            kwargs[key] = value
        return cls(**kwargs)
