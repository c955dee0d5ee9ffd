"""
Typed converters from sensor messages to what the labeler core consumes.

They read only message *fields*, so they work on rclpy messages and on the messages that
``rosbags`` deserialises from bag files alike: the live node and bag export share them, as
they share the core. Every malformed input raises :class:`BadInput` with a ``kind`` that
the caller counts and logs; nothing here returns a silently wrong value.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np
from PIL import Image as PILImage

from ..core.geometry import yaw_from_quaternion

try:  # OpenCV resizes and decodes far faster than numpy alone; optional at import time.
    import cv2
except ImportError:  # pragma: no cover - exercised only where OpenCV is missing
    cv2 = None

try:  # cv_bridge exists on a full ROS install, not in the wheels environment.
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - any failure means "not usable here"
    _BRIDGE = None

#: Channels and the permutation to rgb for the encodings the labeler accepts.
ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}


#: Pixels an image may declare at most (``max_image_pixels``): 16 Mpx is far above any robot
#: camera, yet decodes to at most 48 MB of rgb. OpenCV's own limit is 2**30 pixels (3 GB).
DEFAULT_MAX_IMAGE_PIXELS = 16_000_000


class BadInput(ValueError):
    """An input message that cannot be used; ``kind`` names the problem for counters."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f'{kind}: {detail}')
        self.kind = kind
        self.detail = detail


def stamp_to_ns(stamp: Any) -> int:
    """Return the nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _as_bytes(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadInput('image_too_large', f'{width}x{height} = {width * height} pixels, more '
                                          f'than max_image_pixels ({max_pixels})')


def image_to_rgb(msg: Any, copy: bool = True,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """
    Return a ``sensor_msgs/Image`` as an (H, W, 3) uint8 rgb array.

    Checks the buffer against ``height × step`` before viewing it, because a short buffer
    would otherwise raise deep inside numpy and a long one would be silently misread.
    With ``copy=False`` an rgb8 image is returned as a view of the message's buffer, which
    saves a full-frame copy when the caller only resizes it. Images of more than
    ``max_pixels`` are refused (``image_too_large``): resizing one costs seconds.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise BadInput('image_encoding', f'unsupported encoding {msg.encoding!r}')
    channels, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise BadInput('image_size', f'empty image {width}x{height}')
    _check_pixels(width, height, max_pixels)
    if step < width * channels:
        raise BadInput('image_size', f'step {step} < width {width} x {channels} channels')
    data = _as_bytes(msg.data)
    if data.size != height * step:
        raise BadInput('image_size',
                       f'data has {data.size} bytes, height x step = {height * step}')
    if _BRIDGE is not None and encoding in ('rgb8', 'bgr8'):
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
        except Exception:  # noqa: BLE001 - fall back to the numpy path below
            pass
    rows = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if order == (0, 1, 2) and channels == 3:
        return rows.copy() if copy else rows
    return np.ascontiguousarray(rows[:, :, list(order)])


#: JPEG can be decoded at 1/2, 1/4 or 1/8 scale for a fraction of the cost of full size.
_REDUCED_FLAGS = {1: 'IMREAD_COLOR', 2: 'IMREAD_REDUCED_COLOR_2', 4: 'IMREAD_REDUCED_COLOR_4',
                  8: 'IMREAD_REDUCED_COLOR_8'}


def declared_size(data: np.ndarray) -> tuple[int, int]:
    """
    Return the ``(width, height)`` a compressed image's header declares, without decoding.

    Pillow's ``open`` parses the header only (PNG IHDR, JPEG SOF, …) and decodes nothing
    until asked; OpenCV has no header-only call, and ``imdecode`` allocates the whole
    declared image first, so a 1 MB PNG declaring 20000x20000 costs 1.2 GB.
    """
    try:
        with PILImage.open(io.BytesIO(data.tobytes())) as image:
            return int(image.width), int(image.height)
    except PILImage.DecompressionBombError as error:  # Pillow's own limit, far above ours
        raise BadInput('image_too_large', str(error)) from None
    except Exception as error:  # noqa: BLE001 - whatever Pillow cannot parse, we refuse
        raise BadInput('image_decode', f'unreadable image header ({type(error).__name__}: '
                                       f'{error})') from None


def compressed_to_rgb(msg: Any, reduction: int = 1,
                      max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """
    Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to (H, W, 3) uint8 rgb.

    ``reduction`` (1, 2, 4 or 8) decodes at that fraction of the full size when the format
    allows it (JPEG's DCT scaling): decoding 640×480 at 1/4 costs a fraction of full size,
    and the labeler only needs 80×64. The size the header declares is checked against
    ``max_pixels`` before anything is decoded (``image_too_large``): a decompression bomb
    costs a header parse, not the memory it asks for.
    """
    data = _as_bytes(msg.data)
    if data.size == 0:
        raise BadInput('image_decode', 'empty compressed image')
    if cv2 is None:  # pragma: no cover
        raise BadInput('image_decode', 'OpenCV is not installed')
    width, height = declared_size(data)
    _check_pixels(width, height, max_pixels)
    flag = getattr(cv2, _REDUCED_FLAGS.get(reduction, 'IMREAD_COLOR'))
    image = cv2.imdecode(data, flag)
    if image is None:
        raise BadInput('image_decode', f'cannot decode {msg.format!r} image of {data.size} bytes')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _integer_prestep(width: int, height: int, out_width: int, out_height: int) -> int:
    """Largest factor dividing both sides that keeps the image at least the output size."""
    for factor in range(min(width // out_width, height // out_height), 1, -1):
        if width % factor == 0 and height % factor == 0:
            return factor
    return 1


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """
    Resize to the learner's input size; area averaging avoids aliasing when shrinking.

    OpenCV's area resize has a fast path for integer factors only (640×480 → 80×64 at 7.5×
    costs ~0.9 ms, the same through an exact 5× step ~0.3 ms), so shrink by the largest exact
    integer factor first, then by the remainder.
    """
    if image.shape[0] == height and image.shape[1] == width:
        return np.ascontiguousarray(image)
    if cv2 is not None:
        factor = _integer_prestep(image.shape[1], image.shape[0], width, height)
        if factor > 1:
            image = cv2.resize(image, (image.shape[1] // factor, image.shape[0] // factor),
                               interpolation=cv2.INTER_AREA)
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    rows = (np.arange(height) * image.shape[0] / height).astype(int)  # pragma: no cover
    cols = (np.arange(width) * image.shape[1] / width).astype(int)  # pragma: no cover
    return image[rows][:, cols]  # pragma: no cover


def range_saw_obstacle(msg: Any, too_close_is_obstacle: bool = False) -> bool:
    """
    Tell whether a ``sensor_msgs/Range`` reading saw something (DESIGN.md §4).

    A value inside ``[min_range, max_range]`` is an obstacle; the Thymio driver's ``-1.0``,
    any other value outside that interval and ``+inf`` mean nothing seen. REP 117's
    ``-inf`` ("too close to measure") counts as nothing seen by the contract, or as an
    obstacle with ``too_close_is_obstacle``.
    """
    value = float(msg.range)
    if math.isnan(value):
        raise BadInput('range_nan', 'range is NaN')
    if value == -math.inf:
        return too_close_is_obstacle
    return float(msg.min_range) <= value <= float(msg.max_range)


def laser_saw_obstacle(msg: Any, expected_beams: int) -> np.ndarray:
    """
    Tell whether each beam of the Thymio driver's ``proximity/laser`` saw something.

    The driver clamps every proximity range into ``[range_min, range_max]`` before adding
    its offset, so "nothing seen" (``-1.0``) shows up as ``range_min`` and cannot be told
    from "very close" by the range alone. It also publishes the raw sensor values as
    intensities, zero meaning nothing seen: when present they decide. Without them a beam
    sees something when its range is strictly inside ``(range_min, range_max)``.
    """
    ranges = np.asarray(msg.ranges, dtype=np.float64)
    if ranges.size != expected_beams:
        raise BadInput('laser_beams', f'{ranges.size} beams, expected {expected_beams}')
    if np.isnan(ranges).any():
        raise BadInput('range_nan', 'a laser range is NaN')
    intensities = np.asarray(msg.intensities, dtype=np.float64)
    if intensities.size == expected_beams and np.isfinite(intensities).all():
        return intensities > 0
    # Compare in float32, the precision of ``ranges``: the limits are float32 fields too, but
    # rclpy holds scalars as doubles while the array is already rounded.
    ranges32 = ranges.astype(np.float32)
    return (ranges32 > np.float32(msg.range_min)) & (ranges32 < np.float32(msg.range_max))


def odometry_pose(msg: Any) -> tuple[int, float, float, float]:
    """Return ``(stamp_ns, x, y, yaw)`` of a ``nav_msgs/Odometry``; rejects non-finite values."""
    position = msg.pose.pose.position
    q = msg.pose.pose.orientation
    values = (position.x, position.y, q.x, q.y, q.z, q.w)
    if not all(math.isfinite(v) for v in values):
        raise BadInput('pose_nan', 'odometry pose has NaN or infinite values')
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if norm < 1e-6:
        raise BadInput('pose_nan', 'odometry orientation is a zero quaternion')
    yaw = yaw_from_quaternion(q.x / norm, q.y / norm, q.z / norm, q.w / norm)
    return stamp_to_ns(msg.header.stamp), float(position.x), float(position.y), yaw


def sensor_order_for_laser(sensor_names: Sequence[str], laser_order: Sequence[str]) -> np.ndarray:
    """Map the laser's beams (right to left) to indices into ``sensor_names``."""
    missing = [name for name in laser_order if name not in sensor_names]
    if missing:
        raise ValueError(f'laser_sensor_order names unknown sensors {missing}')
    return np.array([list(sensor_names).index(name) for name in laser_order], dtype=np.intp)
