"""
The predictor node: a prediction for the newest camera frame, with numpy and no torch.

It runs on the robot, whose computer may have no PyTorch (the Mighty Thymio's 32-bit ARM
board has no wheels for it) and little memory: the network's forward pass is numpy
(:mod:`~ssl_obstacle.core.numpy_model`), the weights come from the trainer on ``ssl/model``
(or, for a robot with no trainer anywhere, from a checkpoint file read without torch).

Two one-slot mailboxes, the camera's and the model's, are the bounded queues of this node:
a callback only puts its message in its slot (counting the one it replaces), and one worker
thread owns the model and does everything else, so only the newest frame is predicted and
a new model is taken between two frames.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from ssl_obstacle_msgs.msg import ModelWeights, ObstaclePrediction
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from .diagnostics import diagnostic_array
from .qos import MODEL_QOS
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, run_nodes, wall_timer
from ..core.checkpoint_reader import read_checkpoint_weights
from ..core.confidence import prediction_confidence
from ..core.numpy_model import NumpyObstacleNet
from ..core.params import LabelParams
from ..io.conversions import (BadInput, compressed_to_rgb, DEFAULT_MAX_IMAGE_PIXELS, ENCODINGS,
                              image_to_rgb, resize_rgb, stamp_to_ns)
from ..io.learner_messages import markers_msg, overlay_image, prediction_msg
from ..io.messages import rgb_to_image_msg
from ..io.model_messages import MODEL_FIXES, read_model_msg

PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(LabelParams().sensor_names), 'grid rows; models for others are '
                                                       'refused'),
    'distances': ([float(d) for d in LabelParams().distances], 'grid columns (metres); models '
                                                               'for others are refused'),
    'camera_transport': ('raw', "'raw' (camera/image_raw) or 'compressed'"),
    'model_file': ('', 'checkpoint to predict with from the start (read without torch); '
                       'a model on ssl/model replaces it; empty = wait for ssl/model'),
    'publish_overlay': (True, 'publish ssl/prediction_image'),
    'publish_markers': (True, 'publish ssl/prediction_markers'),
    'status_period': (1.0, 'seconds between /diagnostics messages'),
    'max_image_pixels': (DEFAULT_MAX_IMAGE_PIXELS,
                         'camera frames declaring more pixels (width x height) are refused '
                         'before decoding (image_too_large): a small compressed image can '
                         'declare gigabytes'),
}

#: Kinds of camera frame that got no prediction, counted as ``camera_<kind>``.
CAMERA_KINDS = ('image_too_large', 'image_encoding', 'image_size', 'image_decode', 'error')

#: What to fix, by kind of bad camera frame, for the log line that reports it.
CAMERA_FIXES = {
    'image_too_large': 'Raise max_image_pixels only if the camera really sends this many '
                       'pixels.',
    'image_encoding': f'Publish one of {", ".join(ENCODINGS)} on the camera topic.',
    'image_size': "The image's data must hold height x step bytes, with step at least width "
                  'x bytes per pixel.',
    'image_decode': 'The compressed data must be a readable JPEG or PNG image.',
}

#: Kinds of refused model, counted as ``<kind>`` (see io/model_messages.py).
MODEL_KINDS = tuple(MODEL_FIXES)


class PredictorNode(Node):
    """Predicts obstacles ahead from every new camera frame with the newest model."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('predictor', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.values = values
        self.sensor_names = list(values['sensor_names'])
        self.distances = [float(d) for d in values['distances']]
        self._max_pixels = int(values['max_image_pixels'])
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        #: Written by the executor thread only.
        self.received = {'camera_frames': 0, 'stale_dropped': 0, 'models_received': 0,
                         'models_superseded': 0}
        #: Written by the worker only.
        self.counters = {'predicted': 0, 'no_model': 0, 'models_loaded': 0,
                         'model_refused': 0, **dict.fromkeys(MODEL_KINDS, 0),
                         'camera_refused': 0, **{f'camera_{k}': 0 for k in CAMERA_KINDS}}
        self.model: NumpyObstacleNet | None = None
        #: The model's skill per cell (S, D): times each prediction's certainty, it is the
        #: confidence published with the prediction (core/confidence.py).
        self.cell_confidence: np.ndarray | None = None
        self.model_updates = 0
        self.model_source = 'none'
        self._load_model_file(str(values['model_file']))
        self._predictions = self.create_publisher(ObstaclePrediction, 'ssl/predictions', 10)
        self._overlay = (self.create_publisher(Image, 'ssl/prediction_image', 2)
                         if values['publish_overlay'] else None)
        self._markers = (self.create_publisher(MarkerArray, 'ssl/prediction_markers', 2)
                         if values['publish_markers'] else None)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._ready = threading.Condition()
        self._camera_slot: Any = None
        self._model_slot: Any = None
        self._stop = threading.Event()
        self._busy_since = 0.0
        if values['camera_transport'] == 'compressed':
            self.create_subscription(CompressedImage, 'camera/image_raw/compressed',
                                     self._on_camera, qos_profile_sensor_data)
        else:
            self.create_subscription(Image, 'camera/image_raw', self._on_camera,
                                     qos_profile_sensor_data)
        self.create_subscription(ModelWeights, 'ssl/model', self._on_model, MODEL_QOS)
        wall_timer(self, float(values['status_period']), self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name='predictor', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'predicting obstacles for {len(self.sensor_names)} sensors x '
            f'{len(self.distances)} distances from every new frame on camera/image_raw'
            f'{"/compressed" if values["camera_transport"] == "compressed" else ""} with '
            f'{self.model_source}; models in on ssl/model, predictions out on ssl/predictions')

    # ------------------------------------------------------------------ model file
    def _load_model_file(self, path: str) -> None:
        if not path:
            return
        try:
            weights = read_checkpoint_weights(path)
            grid = weights.grid
            if grid is not None and (list(grid[0]) != self.sensor_names or not _same_distances(
                    grid[1], self.distances)):
                raise ValueError(f'it predicts sensors {list(grid[0])} at {len(grid[1])} '
                                 f'distances, this node wants {self.sensor_names} at '
                                 f'{len(self.distances)}')
            if (weights.config.num_sensors, weights.config.num_distances) != \
                    (len(self.sensor_names), len(self.distances)):
                raise ValueError(f'its grid is {weights.config.num_sensors} x '
                                 f'{weights.config.num_distances}, this node wants '
                                 f'{len(self.sensor_names)} x {len(self.distances)}')
            self.model = NumpyObstacleNet(weights.config, weights.state)
            self.cell_confidence = weights.cell_confidence
        except (OSError, ValueError) as error:
            self.get_logger().error(f'cannot predict with model_file {path} ({error}): waiting '
                                    'for a model on ssl/model instead')
            return
        self.model_updates = int(weights.counters.get('updates', 0))
        self.model_source = f'{path} ({self.model_updates} updates)'
        self.counters['models_loaded'] += 1

    # ------------------------------------------------------------------ executor side
    def _on_camera(self, msg: Any) -> None:
        self.received['camera_frames'] += 1
        with self._ready:
            if self._camera_slot is not None:
                self.received['stale_dropped'] += 1
            self._camera_slot = msg
            self._ready.notify()

    def _on_model(self, msg: ModelWeights) -> None:
        self.received['models_received'] += 1
        with self._ready:
            if self._model_slot is not None:
                self.received['models_superseded'] += 1
            self._model_slot = msg
            self._ready.notify()

    def _publish_diagnostics(self) -> None:
        """Report the counters (each written by one thread); never waits for the worker."""
        busy_since = self._busy_since
        values = {**self.received, **self.counters, 'model_updates': self.model_updates,
                  'worker_busy_s': round(time.monotonic() - busy_since, 3) if busy_since
                  else 0.0,
                  # The robot's computer may have no PyTorch: nothing here may import it.
                  'torch_loaded': 'torch' in sys.modules}
        problems = []
        if self.model is None:
            problems.append('no model yet (waiting for ssl/model; or set model_file)')
        problems += [f'{values[kind]} models refused ({kind[6:].replace("_", " ")})'
                     for kind in MODEL_KINDS if values[kind]]
        problems += [f'{values[f"camera_{k}"]} camera frames refused ({k.replace("_", " ")})'
                     for k in CAMERA_KINDS if values[f'camera_{k}']]
        summary = f'{values["predicted"]} frames predicted with {self.model_source}'
        self._diagnostics.publish(diagnostic_array(self, 'predicting', values, problems,
                                                   summary))

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                self._ready.wait_for(lambda: self._stop.is_set() or self._camera_slot is not None
                                     or self._model_slot is not None, timeout=0.5)
                camera, self._camera_slot = self._camera_slot, None
                model, self._model_slot = self._model_slot, None
            self._busy_since = time.monotonic()
            if model is not None:
                self._take_model(model)
            if camera is not None:
                self._predict_safely(camera)
            self._busy_since = 0.0

    def _take_model(self, msg: ModelWeights) -> None:
        try:
            received = read_model_msg(msg, self.sensor_names, self.distances)
            model = NumpyObstacleNet(received.config, received.state)
        except (BadInput, ValueError) as error:
            kind = error.kind if isinstance(error, BadInput) else 'model_layout'
            self.counters[kind] += 1
            self.counters['model_refused'] += 1
            detail = error.detail if isinstance(error, BadInput) else str(error)
            keeping = 'the previous model' if self.model is not None else 'no model yet'
            self._log_bad(kind, f'refused a model from {msg.trainer or "an unnamed trainer"} '
                                f'({kind}: {self.counters[kind]} so far): {detail}; predicting '
                                f'with {keeping}. {MODEL_FIXES.get(kind, "")}'.rstrip())
            return
        self.model = model
        self.cell_confidence = received.cell_confidence
        self.model_updates = received.updates
        self.model_source = f'the model of {received.trainer} ({received.updates} updates)'
        self.counters['models_loaded'] += 1

    def _predict_safely(self, msg: Any) -> None:
        if self.model is None:
            # Expected until the trainer has trained: said once, counted, in /diagnostics.
            if not self.counters['no_model']:
                self.get_logger().info('camera frames arrive but no model yet: predicting '
                                       'from the first model on ssl/model (a trainer '
                                       'publishes once it has trained; or set model_file)')
            self.counters['no_model'] += 1
            return
        try:
            self._predict(msg, self.model)
        except BadInput as error:
            self._refuse_camera(error.kind, error.detail)
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop predicting
            self._refuse_camera('error', f'prediction failed: {type(error).__name__}: {error}')

    def _refuse_camera(self, kind: str, detail: str) -> None:
        key = f'camera_{kind}'
        self.counters[key] += 1
        self.counters['camera_refused'] += 1
        self._log_bad(key, f'no prediction for a camera frame ({key}: {self.counters[key]} so '
                           f'far): {detail}. {CAMERA_FIXES.get(kind, "")}'.rstrip())

    def _predict(self, msg: Any, model: NumpyObstacleNet) -> None:
        if isinstance(msg, CompressedImage):
            rgb = compressed_to_rgb(msg, max_pixels=self._max_pixels)
        else:
            rgb = image_to_rgb(msg, copy=False, max_pixels=self._max_pixels)
        stamp_to_ns(msg.header.stamp)  # validates the stamp fields
        config = model.config
        small = resize_rgb(rgb, config.image_width, config.image_height)
        probabilities = model.predict(small)[0]
        confidence = prediction_confidence(probabilities, self.cell_confidence) \
            if self.cell_confidence is not None else None
        self._predictions.publish(prediction_msg(msg.header, self.sensor_names, self.distances,
                                                 probabilities, self.model_updates,
                                                 confidence))
        self.counters['predicted'] += 1
        if self._overlay is not None and self._overlay.get_subscription_count() > 0:
            self._overlay.publish(rgb_to_image_msg(overlay_image(rgb, probabilities), msg.header))
        if self._markers is not None and self._markers.get_subscription_count() > 0:
            header = Header(stamp=msg.header.stamp,
                            frame_id=_base_link(msg.header.frame_id))
            self._markers.publish(markers_msg(header, self.sensor_names, self.distances,
                                              probabilities))

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the worker."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        self._worker.join(timeout=5.0)
        self.get_logger().info(f'stopping after {self.counters["predicted"]} predictions '
                               f'({self.received["stale_dropped"]} stale frames skipped)')


def _same_distances(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(math.isclose(float(x), float(y), abs_tol=1e-6)
                                    for x, y in zip(a, b))


def _base_link(camera_frame: str) -> str:
    prefix = camera_frame.rsplit('/', 1)[0] + '/' if '/' in camera_frame else ''
    return f'{prefix}base_link'


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle predictor``."""
    run_nodes([PredictorNode], args)


if __name__ == '__main__':
    main()
