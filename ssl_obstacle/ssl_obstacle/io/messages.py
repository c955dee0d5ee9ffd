"""
Builders between our numpy results and ROS 2 messages (rclpy side).

Arrays go into message fields as raw bytes/typed arrays rather than Python lists: a
64×80 image plus a 155-cell grid would otherwise cost thousands of per-element checks.
"""

from __future__ import annotations

from typing import Any, Sequence

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, TransformStamped
from nav_msgs.msg import Odometry
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, Range
from ssl_obstacle_msgs.msg import LabeledFrame
from std_msgs.msg import Header

from .conversions import image_to_rgb, stamp_to_ns
from .labeled_frames import grids
from ..core.geometry import quaternion_from_yaw, yaw_from_quaternion
from ..core.labeler import LabeledResult
from ..core.thymio import LASER_SHIFT as THYMIO_LASER_SHIFT
from ..core.thymio import PROXIMITY_FIELD_OF_VIEW as THYMIO_FIELD_OF_VIEW
from ..core.thymio import PROXIMITY_MAX_RANGE as THYMIO_MAX_RANGE
from ..core.thymio import PROXIMITY_MIN_RANGE as THYMIO_MIN_RANGE
from ..core.thymio import raw_proximity_value


def time_from_ns(stamp: int) -> Time:
    """Convert a stamp in nanoseconds to ``builtin_interfaces/Time``."""
    return Time(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000))


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """Wrap ``rgb`` (H, W, 3 uint8) in an rgb8 ``sensor_msgs/Image``."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return Image(header=header, height=int(rgb.shape[0]), width=int(rgb.shape[1]),
                 encoding='rgb8', is_bigendian=0, step=int(rgb.shape[1] * 3),
                 data=rgb.tobytes())


def pose_msg(x: float, y: float, yaw: float) -> Pose:
    """Build a planar ``geometry_msgs/Pose``."""
    pose = Pose()
    pose.position.x, pose.position.y = float(x), float(y)
    qx, qy, qz, qw = quaternion_from_yaw(float(yaw))
    pose.orientation.x, pose.orientation.y = qx, qy
    pose.orientation.z, pose.orientation.w = qz, qw
    return pose


def labeled_frame_msg(result: LabeledResult, sensor_names: Sequence[str],
                      distances: Sequence[float], frame_id: str) -> LabeledFrame:
    """Build the ``LabeledFrame`` of a finalised frame (grids row-major [sensor][distance])."""
    header = Header(stamp=time_from_ns(result.stamp), frame_id=frame_id)
    msg = LabeledFrame()
    msg.header = header
    msg.image = rgb_to_image_msg(result.payload, header)
    msg.pose = pose_msg(*result.pose)
    msg.sensor_names = list(sensor_names)
    msg.distances = np.asarray(distances, dtype=np.float32)
    msg.labels = np.ascontiguousarray(result.labels, dtype=np.float32).reshape(-1)
    msg.counts = np.ascontiguousarray(result.counts, dtype=np.uint8).tobytes()
    return msg


def labeled_frame_arrays(msg: Any) -> dict[str, Any]:
    """
    Unpack a ``LabeledFrame`` into numpy arrays (for consumers and tests).

    The image is read through its encoding and step (a bgr8 frame comes back as rgb, a
    padded row loses its padding) and the grids must hold one cell per sensor and
    distance; anything else raises :class:`~.conversions.BadInput`. Nothing is checked
    against a learner's configuration here: that is
    :func:`~.labeled_frames.check_labeled_frame`.
    """
    labels, counts = grids(msg, len(msg.sensor_names), len(msg.distances))
    return {
        'stamp': stamp_to_ns(msg.header.stamp),
        'image': image_to_rgb(msg.image, copy=True),
        'pose': np.array([msg.pose.position.x, msg.pose.position.y, yaw_from_quaternion(
            msg.pose.orientation.x, msg.pose.orientation.y,
            msg.pose.orientation.z, msg.pose.orientation.w)]),
        'sensor_names': list(msg.sensor_names),
        'distances': np.asarray(msg.distances, dtype=np.float32),
        'labels': labels,
        'counts': counts,
    }


def range_msg(sensor: str, stamp: int, value: float, frame_prefix: str = '') -> Range:
    """Build a proximity ``Range`` as the Thymio driver does (``-1.0`` = nothing seen)."""
    return Range(
        header=Header(stamp=time_from_ns(stamp),
                      frame_id=f'{frame_prefix}proximity_{sensor}_link'),
        radiation_type=Range.INFRARED, field_of_view=THYMIO_FIELD_OF_VIEW,
        min_range=THYMIO_MIN_RANGE, max_range=THYMIO_MAX_RANGE, range=float(value))


def laser_msg(stamp: int, values_right_to_left: Sequence[float], frame_prefix: str = '',
              raw: Sequence[float] | None = None) -> LaserScan:
    """
    Build the driver's ``proximity/laser``: ranges clamped into the sensor range, shifted.

    ``raw`` are the sensor's raw values (zero when nothing is seen), published as
    intensities; by default the driver's calibration inverted.
    """
    values = [float(v) for v in values_right_to_left]
    count = len(values)
    intensities = [float(v) for v in raw] if raw is not None else \
        [raw_proximity_value(v) for v in values]
    return LaserScan(
        header=Header(stamp=time_from_ns(stamp), frame_id=f'{frame_prefix}laser_link'),
        angle_min=-0.64, angle_max=0.64, angle_increment=1.28 / max(count - 1, 1),
        time_increment=0.0, scan_time=0.0,
        range_min=THYMIO_MIN_RANGE + THYMIO_LASER_SHIFT,
        range_max=THYMIO_MAX_RANGE + THYMIO_LASER_SHIFT,
        ranges=[min(THYMIO_MAX_RANGE, max(THYMIO_MIN_RANGE, v)) + THYMIO_LASER_SHIFT
                for v in values],
        intensities=intensities)


def odometry_msg(stamp: int, x: float, y: float, yaw: float, frame_id: str = 'odom',
                 child_frame_id: str = 'base_link') -> Odometry:
    """Build a planar ``nav_msgs/Odometry``."""
    msg = Odometry()
    msg.header = Header(stamp=time_from_ns(stamp), frame_id=frame_id)
    msg.child_frame_id = child_frame_id
    msg.pose.pose = pose_msg(x, y, yaw)
    return msg


def transform_msg(stamp: int, x: float, y: float, yaw: float, parent: str,
                  child: str) -> TransformStamped:
    """Build the planar transform ``parent → child`` (e.g. odom → base_link)."""
    msg = TransformStamped()
    msg.header = Header(stamp=time_from_ns(stamp), frame_id=parent)
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y = float(x), float(y)
    qx, qy, qz, qw = quaternion_from_yaw(float(yaw))
    msg.transform.rotation.x, msg.transform.rotation.y = qx, qy
    msg.transform.rotation.z, msg.transform.rotation.w = qz, qw
    return msg


def compressed_image_msg(rgb: np.ndarray, header: Header, quality: int = 90) -> CompressedImage:
    """Encode ``rgb`` as a JPEG ``sensor_msgs/CompressedImage``."""
    import cv2

    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError('OpenCV could not encode a JPEG image')
    return CompressedImage(header=header, format='jpeg', data=data.tobytes())


def camera_info_msg(camera: Any, header: Header) -> CameraInfo:
    """Build the ``CameraInfo`` of an ideal pinhole camera (no distortion)."""
    fx, fy, cx, cy = camera.intrinsics()
    return CameraInfo(
        header=header, width=int(camera.width), height=int(camera.height),
        distortion_model='plumb_bob', d=[0.0] * 5,
        k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
