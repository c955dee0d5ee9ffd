"""
The Thymio's geometry and the conventions of its ROS 2 driver (``jeguzzi/ros-thymio``).

One place for the numbers that the converters, the bag writer, the scripted run and the
simulator must agree on, so that everything this package produces looks like the robot.
"""

from __future__ import annotations

import math
from typing import Mapping

#: The five front proximity sensors, left to right (also the labeler's default grid rows).
SENSOR_NAMES: tuple[str, ...] = ('left', 'center_left', 'center', 'center_right', 'right')

#: Sensor → mounting pose ``(x, y, yaw)`` on ``base_link``, from the driver's URDF.
PROXIMITY_POSES: dict[str, tuple[float, float, float]] = {
    'left': (0.063, 0.0493, 0.66323),
    'center_left': (0.0756, 0.0261, 0.33161),
    'center': (0.080, 0.0, 0.0),
    'center_right': (0.0756, -0.0261, -0.33161),
    'right': (0.063, -0.0493, -0.66323),
}

#: The body's footprint as a disc: radius and how far its centre lies ahead of
#: ``base_link`` (the wheel axle). What collides when the robot drives ahead.
BODY_RADIUS = 0.06
BODY_OFFSET = 0.03

#: ``sensor_msgs/Range`` limits and cone; the driver publishes ``-1.0`` for nothing seen.
PROXIMITY_MIN_RANGE = 0.0215
PROXIMITY_MAX_RANGE = 0.14
PROXIMITY_FIELD_OF_VIEW = 0.3
NOTHING_SEEN = -1.0
#: Calibration ``(max_value, x0, c)`` of the driver's raw-value → metres conversion.
PROXIMITY_CALIBRATION = (4505.0, 0.0003, 0.0073)

#: Beam angles of the driver's ``proximity/laser`` and the offset it adds to every range;
#: beams are ordered by angle, i.e. from the rightmost sensor to the leftmost.
LASER_ANGLES: dict[str, float] = {'left': 0.64, 'center_left': 0.32, 'center': 0.0,
                                  'center_right': -0.32, 'right': -0.64}
LASER_ORDER: tuple[str, ...] = tuple(sorted(LASER_ANGLES, key=LASER_ANGLES.__getitem__))
LASER_SHIFT = 0.08


def raw_proximity_value(distance: float) -> float:
    """
    Return the Thymio's raw sensor value for a distance: the driver's calibration inverted.

    Zero means nothing seen; the driver publishes these as the laser's intensities, and they
    are what tells "nothing" from "very close" there (both show as ``range_min``).
    """
    if not (math.isfinite(distance) and distance > 0.0):
        return 0.0
    max_value, x0, c = PROXIMITY_CALIBRATION
    return max_value / (1.0 + (distance - x0) ** 2 / (c - x0 ** 2))


def sensor_side(name: str) -> float:
    """Return +1 for a sensor on the left, -1 on the right, 0 in the middle or unknown."""
    pose = PROXIMITY_POSES.get(name)
    if pose is not None:
        return float(math.copysign(1.0, pose[1])) if pose[1] else 0.0
    lowered = name.lower()
    return 1.0 if 'left' in lowered else -1.0 if 'right' in lowered else 0.0


def nearest_reading(ranges: Mapping[str, float], limit: float) -> tuple[float, float]:
    """
    Return the nearest valid reading (inf if none) and which side is obstructed (+left).

    Readings follow the driver's convention (non-positive, non-finite or unparsable: nothing
    seen). The side sums the sensors closer than ``limit``, each weighted by how far inside
    it is: the closer, the more it says where the obstacle is.
    """
    closest, side = math.inf, 0.0
    for name, value in ranges.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(value) and value > 0.0):
            continue
        closest = min(closest, value)
        if value < limit:
            side += sensor_side(name) * (limit - value)
    return closest, side
