"""
The simulator's events as the ROS messages a Thymio and its camera would publish.

The simulator node publishes them and ``ssl-obstacle record`` serialises the very same
messages into a bag, so a recorded run is byte for byte what the live topics carried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, Range
from ssl_obstacle_msgs.msg import LabeledFrame
from std_msgs.msg import Header

from .conversions import resize_rgb
from .messages import (camera_info_msg, compressed_image_msg, laser_msg, odometry_msg,
                       pose_msg, range_msg, rgb_to_image_msg, time_from_ns, transform_msg)
from ..core.thymio import LASER_ORDER

try:  # /tf needs tf2_msgs: on every ROS install; built from vendor/ in the wheels setup
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - reported by the node at start-up
    TFMessage = None

#: Relative topic → message type of everything the simulator publishes.
TOPIC_TYPES: dict[str, type] = {
    '/clock': Clock,
    'camera/image_raw': Image,
    'camera/image_raw/compressed': CompressedImage,
    'camera/camera_info': CameraInfo,
    'proximity/laser': LaserScan,
    'odom': Odometry,
    'ground_truth/odom': Odometry,
    'ground_truth/labels': LabeledFrame,
    'cmd_vel': Twist,
}
if TFMessage is not None:
    TOPIC_TYPES['/tf'] = TFMessage


@dataclass
class SimMessages:
    """Builds the messages of one simulated robot (its namespace prefixes the frames)."""

    camera: Any  # sim.camera.CameraModel
    sensor_names: Sequence[str]
    distances: Sequence[float]
    namespace: str = ''
    raw_camera: bool = True
    compressed_camera: bool = False
    laser: bool = False
    label_size: tuple[int, int] = (80, 64)

    def __post_init__(self) -> None:
        namespace = self.namespace.strip('/')
        self.prefix = f'{namespace}/' if namespace else ''
        self._range_batch: dict[str, float] = {}
        self._image: tuple[int, Any] | None = None

    def topics(self) -> dict[str, type]:
        """Return the relative topics this configuration publishes, with their types."""
        topics = dict(TOPIC_TYPES)
        if not self.raw_camera:
            del topics['camera/image_raw']
        if not self.compressed_camera:
            del topics['camera/image_raw/compressed']
        if not self.laser:
            del topics['proximity/laser']
        for name in self.sensor_names:
            topics[f'proximity/{name}'] = Range
        return topics

    def clock(self, stamp: int) -> list[tuple[str, Any]]:
        """Build the ``/clock`` message of a simulated time."""
        return [('/clock', Clock(clock=time_from_ns(stamp)))]

    def messages(self, event: Any) -> list[tuple[str, Any]]:
        """Build ``(relative topic, message)`` pairs for one simulator event."""
        kind = event.kind
        if kind == 'range':
            return self._range(event)
        if kind == 'odom':
            return self._odometry(event)
        if kind == 'ground_truth_odom':
            return [('ground_truth/odom', odometry_msg(
                event.stamp, *event.pose, frame_id='world',
                child_frame_id=f'{self.prefix}base_link'))]
        if kind == 'image':
            return self._camera(event)
        if kind == 'ground_truth_labels':
            return [('ground_truth/labels', self._truth(event))]
        if kind == 'cmd_vel':
            twist = Twist()
            twist.linear.x, twist.angular.z = (float(v) for v in event.twist)
            return [('cmd_vel', twist)]
        return []

    def _range(self, event: Any) -> list[tuple[str, Any]]:
        out = [(f'proximity/{event.sensor}',
                range_msg(event.sensor, event.stamp, event.value, self.prefix))]
        if self.laser:
            self._range_batch[event.sensor] = event.value
            if len(self._range_batch) == len(self.sensor_names):
                values = [self._range_batch[name] for name in LASER_ORDER]
                out.append(('proximity/laser', laser_msg(event.stamp, values, self.prefix)))
                self._range_batch = {}
        return out

    def _odometry(self, event: Any) -> list[tuple[str, Any]]:
        msg = odometry_msg(event.stamp, *event.pose, frame_id=f'{self.prefix}odom',
                           child_frame_id=f'{self.prefix}base_link')
        if event.twist is not None:
            msg.twist.twist.linear.x, msg.twist.twist.angular.z = (float(v) for v in event.twist)
        out: list[tuple[str, Any]] = [('odom', msg)]
        if TFMessage is not None:
            out.append(('/tf', TFMessage(transforms=[transform_msg(
                event.stamp, *event.pose, f'{self.prefix}odom', f'{self.prefix}base_link')])))
        return out

    def _camera(self, event: Any) -> list[tuple[str, Any]]:
        if event.image is None:
            return []
        header = Header(stamp=time_from_ns(event.stamp), frame_id=f'{self.prefix}camera_link')
        out: list[tuple[str, Any]] = []
        if self.raw_camera:
            out.append(('camera/image_raw', rgb_to_image_msg(event.image, header)))
        if self.compressed_camera:
            out.append(('camera/image_raw/compressed', compressed_image_msg(event.image, header)))
        out.append(('camera/camera_info', camera_info_msg(self.camera, header)))
        self._image = (event.stamp, event.image)
        return out

    def _truth(self, event: Any) -> LabeledFrame:
        msg = LabeledFrame()
        msg.header = Header(stamp=time_from_ns(event.stamp),
                            frame_id=f'{self.prefix}camera_link')
        if self._image is not None and self._image[0] == event.stamp:
            msg.image = rgb_to_image_msg(resize_rgb(self._image[1], *self.label_size),
                                         msg.header)
        msg.pose = pose_msg(*event.pose)
        msg.sensor_names = list(self.sensor_names)
        msg.distances = [float(d) for d in self.distances]
        labels = event.labels.astype('float32').reshape(-1)
        msg.labels = labels
        msg.counts = bytes([1]) * labels.size
        return msg
