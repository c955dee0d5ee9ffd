"""Learner outputs as ROS messages: predictions, status, overlay image and RViz markers."""

from __future__ import annotations

from typing import Any, Sequence

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
import numpy as np
from ssl_obstacle_msgs.msg import LearnerStatus, ObstaclePrediction
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..core.thymio import PROXIMITY_POSES


def prediction_msg(header: Header, sensor_names: Sequence[str], distances: Sequence[float],
                   probabilities: np.ndarray, updates: int,
                   confidence: np.ndarray | None = None) -> ObstaclePrediction:
    """Build an ``ObstaclePrediction`` (grid row-major [sensor][distance])."""
    msg = ObstaclePrediction()
    msg.header = header
    msg.sensor_names = list(sensor_names)
    msg.distances = np.asarray(distances, dtype=np.float32)
    msg.probabilities = np.ascontiguousarray(probabilities, dtype=np.float32).reshape(-1)
    msg.model_updates = int(updates)
    if confidence is not None:
        msg.confidence = np.ascontiguousarray(confidence, dtype=np.float32).reshape(-1)
    return msg


def status_msg(header: Header, status: Any, distances: Sequence[float]) -> LearnerStatus:
    """Build a ``LearnerStatus`` from the learner's status data."""
    msg = LearnerStatus()
    msg.header = header
    msg.updates = int(status.updates)
    msg.labeled_frames = int(status.labeled_frames)
    msg.replay_size = int(status.replay_size)
    msg.recent_loss = float(status.recent_loss)
    msg.distances = np.asarray(distances, dtype=np.float32)
    msg.auc_by_distance = np.asarray(status.auc_by_distance, dtype=np.float32)
    msg.auc = float(status.auc)
    return msg


def overlay_image(rgb: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """
    Draw the prediction over the frame: one bar per sensor, left to right.

    Each bar rises from the bottom edge with the probability of an obstacle within 10 cm of
    the robot (the first third of the distances), and a strip above it shades every distance
    (near at the bottom, far at the top) from green (free) to red (obstacle), so the whole grid
    is readable at a glance in rqt_image_view or Foxglove.
    """
    image = rgb.copy()
    height, width = image.shape[:2]
    sensors, distances = probabilities.shape
    slot = width // sensors
    bar_width = max(2, slot // 3)
    strip_height = height // 3
    near = probabilities[:, :max(1, distances // 3)].max(axis=1)
    for s in range(sensors):
        x0 = s * slot + (slot - bar_width) // 2
        x1 = x0 + bar_width
        # distance strip: row per distance, far at the top
        rows = np.linspace(height - 1, height - strip_height, distances + 1).astype(int)
        for d in range(distances):
            p = float(probabilities[s, d])
            colour = np.array([255 * p, 255 * (1 - p), 40], dtype=np.float32)
            y_top, y_bottom = rows[d + 1], rows[d]
            region = image[y_top:y_bottom + 1, x0:x1].astype(np.float32)
            image[y_top:y_bottom + 1, x0:x1] = (0.35 * region + 0.65 * colour).astype(np.uint8)
        bar_top = int(height - 1 - near[s] * (height - strip_height - 4))
        image[bar_top:height - strip_height, x1:min(width, x1 + 3)] = (255, 255, 255)
    return image


def markers_msg(header: Header, sensor_names: Sequence[str], distances: Sequence[float],
                probabilities: np.ndarray) -> MarkerArray:
    """
    Build RViz markers: one cube per (sensor, distance) ahead of the robot in ``base_link``.

    Cell (s, d) sits where sensor s will be when the robot has driven d straight ahead;
    its colour goes from green (free) to red (obstacle) with the probability.
    """
    marker = Marker()
    marker.header = header
    marker.ns = 'ssl_obstacle_predictions'
    marker.id = 0
    marker.type = Marker.CUBE_LIST
    marker.action = Marker.ADD
    marker.pose.orientation.w = 1.0
    marker.scale.x, marker.scale.y, marker.scale.z = 0.009, 0.012, 0.004
    marker.lifetime = Duration(sec=0, nanosec=500_000_000)
    for s, name in enumerate(sensor_names):
        mount = PROXIMITY_POSES.get(name, (0.08, 0.0, 0.0))
        for d, distance in enumerate(distances):
            p = float(probabilities[s, d])
            marker.points.append(Point(x=float(mount[0] + distance), y=float(mount[1]), z=0.0))
            marker.colors.append(ColorRGBA(r=p, g=1.0 - p, b=0.1, a=0.8))
    return MarkerArray(markers=[marker])


def trainer_status_msg(header: Header, status: Any, distances: Sequence[float],
                       robot: str = '', labeled_dropped: int = 0,
                       labeled_refused: int = 0) -> LearnerStatus:
    """
    Build a ``LearnerStatus`` from the trainer's status, pooled or for one ``robot``.

    A robot's message scores that robot's frames (its labeled frames and AUCs); the
    training counters are the shared model's.
    """
    msg = LearnerStatus()
    msg.header = header
    msg.updates = int(status.updates)
    msg.replay_size = int(status.replay_size)
    msg.recent_loss = float(status.recent_loss)
    msg.distances = np.asarray(distances, dtype=np.float32)
    scores = status.robots.get(robot) if robot else None
    if robot and scores is None:  # nothing from this robot yet
        msg.labeled_frames = 0
        msg.auc_by_distance = np.full(len(distances), np.nan, dtype=np.float32)
        msg.auc = float('nan')
    else:
        source = scores if scores is not None else status
        msg.labeled_frames = int(source.labeled_frames)
        msg.auc_by_distance = np.asarray(source.auc_by_distance, dtype=np.float32)
        msg.auc = float(source.auc)
    msg.robot = robot
    msg.model_version = int(status.model_version)
    msg.paused = bool(status.paused)
    msg.labeled_dropped = int(labeled_dropped)
    msg.labeled_refused = int(labeled_refused)
    return msg
