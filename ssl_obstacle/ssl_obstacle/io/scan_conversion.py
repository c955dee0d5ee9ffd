"""
A simulated proximity sensor's ``LaserScan`` as the Thymio driver's ``sensor_msgs/Range``.

Gazebo has no infrared range sensor that ``ros_gz_bridge`` can carry as ``sensor_msgs/Range``,
so ``worlds/ssl_arena.sdf`` mounts a single-ray ``gpu_lidar`` where each proximity sensor
sits, and the ``scan_to_range`` node turns each scan into the ``Range`` that the ROS 2 Thymio
driver (``jeguzzi/ros-thymio``) publishes on ``proximity/<name>``: infrared, the sensor's
field of view, ``min_range`` 0, ``max_range`` 0.14 m, frame ``proximity_<name>_link`` and
``-1.0`` when nothing is seen. The labeler, the explorer and export then cannot tell Gazebo
from the robot.

Gazebo's GPU lidar reports ``+inf`` beyond its maximum range and ``-inf`` nearer than its
minimum. ``+inf``, NaN and any finite value beyond ``max_range`` mean nothing seen
(``-1.0``). Nearer than ``min_range`` (``-inf``, or a noisy value just below it) means
something touches the sensor: by default that is reported as ``min_range``, an obstacle,
because with ``min_range`` 0 every real obstacle must read as one; the driver itself
publishes ``-inf`` there (a saturated sensor, REP 117 "too close"), which
``too_close_is_min_range=False`` reproduces.

Only message *fields* are read (``ranges``, ``header.stamp``), so rclpy messages and
messages deserialised by ``rosbags`` both work; malformed scans raise
:class:`~ssl_obstacle.io.conversions.BadInput` for the caller to count.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Sequence

from sensor_msgs.msg import Range
from std_msgs.msg import Header

from .conversions import BadInput
from ..core.thymio import NOTHING_SEEN, PROXIMITY_FIELD_OF_VIEW, PROXIMITY_MAX_RANGE

#: Largest valid ``builtin_interfaces/Time.nanosec``.
_NANOSEC_LIMIT = 1_000_000_000


@dataclass(frozen=True)
class RangeSettings:
    """What the published ``Range`` messages declare, and how too-close readings read."""

    min_range: float = 0.0
    max_range: float = PROXIMITY_MAX_RANGE
    field_of_view: float = PROXIMITY_FIELD_OF_VIEW
    too_close_is_min_range: bool = True

    def __post_init__(self) -> None:
        """Reject limits that would make every reading ambiguous."""
        if not (math.isfinite(self.min_range) and math.isfinite(self.max_range)):
            raise ValueError('min_range and max_range must be finite')
        if not 0.0 <= self.min_range < self.max_range:
            raise ValueError(f'need 0 <= min_range < max_range, got {self.min_range} and '
                             f'{self.max_range}')
        if not (math.isfinite(self.field_of_view) and self.field_of_view > 0.0):
            raise ValueError(f'field_of_view must be positive, got {self.field_of_view}')


def beam_range(ranges: Sequence[float], settings: RangeSettings = RangeSettings()) -> float:
    """
    Return the ``Range.range`` of a scan's beams: metres, or ``-1.0`` for nothing seen.

    One beam is what the world mounts; with several (a widened sensor) the nearest return
    wins, as an infrared sensor answers to the strongest, i.e. nearest, reflection. Raises
    ``BadInput('scan_empty')`` when there is no beam at all.
    """
    if len(ranges) == 0:
        raise BadInput('scan_empty', 'the scan has no ranges')
    best = math.inf
    too_close = False
    for raw in ranges:
        value = float(raw)
        if math.isnan(value) or value > settings.max_range:
            continue  # nothing seen by this beam (+inf included)
        if value < settings.min_range:
            too_close = True
            continue
        best = min(best, value)
    if too_close:
        return settings.min_range if settings.too_close_is_min_range else -math.inf
    return best if math.isfinite(best) else NOTHING_SEEN


def check_stamp(stamp: Any) -> None:
    """Raise ``BadInput('bad_stamp')`` unless ``stamp`` is a valid, non-negative time."""
    try:
        sec, nanosec = stamp.sec, stamp.nanosec
        valid = (float(sec) == int(sec) and float(nanosec) == int(nanosec)
                 and int(sec) >= 0 and 0 <= int(nanosec) < _NANOSEC_LIMIT)
    except (AttributeError, TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise BadInput('bad_stamp', f'invalid header stamp {stamp!r}')


def proximity_frame(sensor: str, frame_prefix: str = '') -> str:
    """Return the driver's frame of a proximity sensor (``[prefix]proximity_<name>_link``)."""
    return f'{frame_prefix}proximity_{sensor}_link'


def range_from_scan(msg: Any, sensor: str, settings: RangeSettings = RangeSettings(),
                    frame_prefix: str = '') -> Range:
    """
    Build the driver's ``Range`` for one sensor's scan; the stamp is the scan's own.

    Raises :class:`BadInput` for a scan without beams or with an invalid stamp, so that
    nothing wrong is ever published.
    """
    check_stamp(msg.header.stamp)
    value = beam_range(msg.ranges, settings)
    header = Header(frame_id=proximity_frame(sensor, frame_prefix))
    header.stamp.sec = int(msg.header.stamp.sec)
    header.stamp.nanosec = int(msg.header.stamp.nanosec)
    return Range(header=header, radiation_type=Range.INFRARED,
                 field_of_view=float(settings.field_of_view),
                 min_range=float(settings.min_range), max_range=float(settings.max_range),
                 range=float(value))
