"""
Message-level labeling: converters + the core labeler, shared by node and bag export.

The node and ``ssl-obstacle export`` both feed messages into one :class:`LabelingPipeline`,
so the same stream gives the same labels online and offline by construction. It holds no
ROS objects and works on rclpy and rosbags messages alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .conversions import (BadInput, compressed_to_rgb, DEFAULT_MAX_IMAGE_PIXELS, image_to_rgb,
                          laser_saw_obstacle, odometry_pose, range_saw_obstacle, resize_rgb,
                          sensor_order_for_laser, stamp_to_ns)
from ..core.labeler import LabeledResult, Labeler, Outcome
from ..core.params import LabelParams
from ..core.thymio import LASER_ORDER

#: The Thymio driver's laser beams run from the rightmost sensor to the leftmost.
THYMIO_LASER_ORDER: tuple[str, ...] = LASER_ORDER


@dataclass(frozen=True)
class InputSettings:
    """How messages become labeler inputs (everything but the label rule itself)."""

    image_width: int = 80
    image_height: int = 64
    proximity_source: str = 'range'  # 'range' or 'laser'
    laser_sensor_order: tuple[str, ...] = THYMIO_LASER_ORDER
    too_close_is_obstacle: bool = False
    #: Camera images declaring more pixels are refused before they are decoded.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if self.proximity_source not in ('range', 'laser'):
            raise ValueError(f"proximity_source must be 'range' or 'laser', "
                             f'not {self.proximity_source!r}')
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError('image size must be positive')
        if self.max_image_pixels < self.image_width * self.image_height:
            raise ValueError('max_image_pixels must admit at least one output-sized image')


class LabelingPipeline:
    """
    Turns camera, proximity and odometry messages into :class:`LabeledResult` frames.

    Each ``on_*`` method returns the core's :class:`Outcome`, or raises :class:`BadInput`
    after counting it in :attr:`bad_inputs` (by kind), so callers can log clearly.
    """

    def __init__(self, params: LabelParams | None = None,
                 settings: InputSettings | None = None) -> None:
        self.params = params or LabelParams()
        self.settings = settings or InputSettings()
        self.labeler = Labeler(self.params)
        self.bad_inputs: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # late, duplicate, ... by stream
        self.last_stamp: dict[str, int] = {}
        self._jpeg_reduction = 1
        self._laser_sensors = (
            sensor_order_for_laser(self.params.sensor_names, self.settings.laser_sensor_order)
            if self.settings.proximity_source == 'laser' else None)

    # ------------------------------------------------------------------ helpers
    def _bad(self, error: BadInput) -> None:
        self.bad_inputs[error.kind] += 1
        raise error

    def _note(self, stream: str, stamp: int, outcome: Outcome) -> Outcome:
        if outcome in (Outcome.ACCEPTED, Outcome.RESET):
            self.last_stamp[stream] = stamp
        else:
            self.rejected[f'{stream}_{outcome.value}'] += 1
        return outcome

    # ------------------------------------------------------------------ inputs
    def on_image(self, msg: Any) -> Outcome:
        """Label-process a ``sensor_msgs/Image``."""
        try:
            rgb = image_to_rgb(msg, copy=False, max_pixels=self.settings.max_image_pixels)
        except BadInput as error:
            self._bad(error)
        return self._add_frame(stamp_to_ns(msg.header.stamp), rgb)

    def on_compressed_image(self, msg: Any) -> Outcome:
        """Label-process a ``sensor_msgs/CompressedImage`` (JPEG or PNG)."""
        try:
            rgb = compressed_to_rgb(msg, self._jpeg_reduction,
                                    max_pixels=self.settings.max_image_pixels)
        except BadInput as error:
            self._bad(error)
        self._choose_reduction(rgb.shape, str(msg.format))
        return self._add_frame(stamp_to_ns(msg.header.stamp), rgb)

    def _choose_reduction(self, shape: tuple[int, ...], image_format: str) -> None:
        """Decode future JPEGs at the smallest scale that still covers the output size."""
        full_height = shape[0] * self._jpeg_reduction
        full_width = shape[1] * self._jpeg_reduction
        reduction = 1
        if 'jpeg' in image_format.lower() or 'jpg' in image_format.lower():
            for factor in (2, 4, 8):
                if full_width // factor >= self.settings.image_width and \
                        full_height // factor >= self.settings.image_height:
                    reduction = factor
        self._jpeg_reduction = reduction

    def _add_frame(self, stamp: int, rgb: np.ndarray) -> Outcome:
        small = resize_rgb(rgb, self.settings.image_width, self.settings.image_height)
        return self._note('camera', stamp, self.labeler.add_frame(stamp, small))

    def on_range(self, sensor: str, msg: Any) -> Outcome:
        """Label-process a ``sensor_msgs/Range`` of the named sensor."""
        try:
            hit = range_saw_obstacle(msg, self.settings.too_close_is_obstacle)
        except BadInput as error:
            self._bad(error)
        stamp = stamp_to_ns(msg.header.stamp)
        index = self.labeler.sensor_index.get(sensor)
        if index is None:
            self._bad(BadInput('unknown_sensor', f'no sensor named {sensor!r} is configured'))
        return self._note(sensor, stamp, self.labeler.add_readings(stamp, [index], [hit]))

    def on_laser(self, msg: Any) -> Outcome:
        """Label-process the Thymio driver's ``proximity/laser`` ``sensor_msgs/LaserScan``."""
        try:
            hits = laser_saw_obstacle(msg, len(self._laser_sensors))
        except BadInput as error:
            self._bad(error)
        stamp = stamp_to_ns(msg.header.stamp)
        return self._note('laser', stamp, self.labeler.add_readings(
            stamp, self._laser_sensors, hits))

    def on_odometry(self, msg: Any) -> Outcome:
        """Label-process a ``nav_msgs/Odometry``."""
        try:
            stamp, x, y, yaw = odometry_pose(msg)
        except BadInput as error:
            self._bad(error)
        return self._note('odom', stamp, self.labeler.add_odometry(stamp, x, y, yaw))

    # ------------------------------------------------------------------ outputs
    def poll(self) -> list[LabeledResult]:
        return self.labeler.poll()

    def flush(self) -> list[LabeledResult]:
        return self.labeler.flush()

    @property
    def proximity_streams(self) -> Sequence[str]:
        """Name the proximity streams this pipeline expects."""
        if self.settings.proximity_source == 'laser':
            return ('laser',)
        return self.params.sensor_names
