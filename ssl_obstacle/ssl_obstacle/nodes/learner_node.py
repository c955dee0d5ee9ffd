"""
The online learner node: labeled frames in, a prediction for every new camera frame out.

Training runs in a child process by default (``trainer: process``, optionally lowered by
``train_nice``), so it shares no interpreter lock with prediction and the OS serves
prediction first (see :mod:`ssl_obstacle.core.online_process`); ``trainer: thread`` keeps it
in a thread of this process. Prediction runs in a thread of its own fed by a one-slot
mailbox, so only the newest camera frame is predicted and the frames it replaced are counted
as stale. The weights prediction reads are a snapshot swapped by reference after each
update, never half-updated (see :mod:`ssl_obstacle.core.online`).

The executor thread only hands over, so a camera frame never waits behind other work:
labeled frames go to a scoring thread, and the periodic chores (status with its running
AUCs, diagnostics, checkpoints) to a housekeeping thread. Computing the status on the
executor thread took 10 ms (42 ms at worst) once a second, and the camera frames that
arrived meanwhile waited for it: p99 latency 20-30 ms. The services still answer on the
executor thread, since their callers wait for the outcome (a save or reset is a rare,
deliberate act).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ObstaclePrediction
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from .diagnostics import diagnostic_array
from .labeler_node import LABELED_FRAMES_QOS
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, lower_this_thread, run_nodes, wall_timer
from ..core.blocking import BlockedCompletion
from ..core.model import ModelConfig
from ..core.online import LearnerSettings, OnlineLearner, PrequentialLearner
from ..core.online_process import ProcessOnlineLearner
from ..core.params import LabelParams
from ..io.conversions import (BadInput, compressed_to_rgb, DEFAULT_MAX_IMAGE_PIXELS, ENCODINGS,
                              image_to_rgb, resize_rgb, stamp_to_ns)
from ..io.labeled_frames import check_labeled_frame, FIXES, FrameSpec, KINDS
from ..io.learner_messages import markers_msg, overlay_image, prediction_msg, status_msg
from ..io.messages import rgb_to_image_msg

_STOP = object()
#: Seconds at most a labeled frame waits for a camera frame's prediction to end.
CAMERA_FIRST_WAIT = 0.01
#: Niceness of the housekeeping thread. The status's running AUCs sort the scored window
#: (tens of ms of CPU a second): at the same priority they took a core from prediction on a
#: two-core computer whose other core trains; lowered, they use what prediction leaves.
CHORE_NICENESS = 10

PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(LabelParams().sensor_names), 'grid rows; must match the labeler'),
    'distances': ([float(d) for d in LabelParams().distances], 'grid columns (metres)'),
    'image_width': (80, 'pixels: model input width (the labeler publishes this size)'),
    'image_height': (64, 'pixels: model input height'),
    'learning_rate': (1e-3, 'Adam learning rate'),
    'batch_size': (64, 'frames per training step'),
    'max_updates_per_second': (20.0, 'cap on training steps per second (0 = none)'),
    'buffer_size': (20000, 'replay buffer capacity (frames)'),
    'min_buffer': (64, 'frames in the buffer before training starts'),
    'device': ('cpu', "'cpu' or 'cuda' (falls back to cpu when CUDA is absent)"),
    'camera_transport': ('raw', "'raw' (camera/image_raw) or 'compressed'"),
    'checkpoint_path': ('', 'checkpoint file; empty = no checkpoints'),
    'checkpoint_period': (60.0, 'seconds (wall clock) between checkpoints'),
    'resume': (True, 'start from checkpoint_path when it exists'),
    'publish_overlay': (True, 'publish ssl/prediction_image'),
    'publish_markers': (True, 'publish ssl/prediction_markers'),
    'status_period': (1.0, 'seconds between ssl/learner_status messages'),
    'seed': (0, 'seed of sampling and augmentation'),
    'trainer': ('process', "'process': train in a child process, lowered by train_nice, so "
                           "prediction shares no interpreter lock with training; 'thread': "
                           'train in a thread of this process'),
    'train_nice': (0, 'niceness the training process adds to itself (0 = same priority; '
                      'higher favours prediction but starves training on a saturated CPU)'),
    'train_threads': (1, 'torch intra-op threads of training'),
    'positive_sample_fraction': (0.0, 'least share of frames with an obstacle cell in a '
                                      'batch (0 = sample the buffer as it is)'),
    'average_decay': (0.99, 'predict with a moving average of the weights, this decay per '
                            'step (about the last 1/(1 - decay) steps; 0 = latest weights)'),
    'even_exposure': (True, 'train on every buffered frame about equally often (least-drawn '
                            'of a few random frames) rather than uniformly'),
    'implied_blocking': (True, 'also train on the cells beyond an obstacle the centre sensor '
                               'saw: the robot could only reach them through it (see '
                               'core/blocking.py); scoring keeps the observed labels'),
    'labeled_queue_size': (2000, 'labeled frames waiting to be scored and stored (about 16 kB '
                                 'each); beyond it the newest are dropped and counted'),
    'max_image_pixels': (DEFAULT_MAX_IMAGE_PIXELS,
                         'camera frames declaring more pixels (width x height) are refused '
                         'before decoding (image_too_large): a small compressed image can '
                         'declare gigabytes'),
}

#: Kinds of bad camera frame (``BadInput.kind`` of io/conversions.py), counted as
#: ``camera_<kind>``; ``error`` is any other failure of a prediction.
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


class LearnerNode(Node):
    """Learns while the robot drives and predicts obstacles ahead from every camera frame."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('learner', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.values = values
        self.sensor_names = list(values['sensor_names'])
        self.distances = [float(d) for d in values['distances']]
        self.config = ModelConfig(num_sensors=len(self.sensor_names),
                                  num_distances=len(self.distances),
                                  image_height=int(values['image_height']),
                                  image_width=int(values['image_width']))
        self.learner_settings = LearnerSettings(
            learning_rate=float(values['learning_rate']), batch_size=int(values['batch_size']),
            max_updates_per_second=float(values['max_updates_per_second']),
            buffer_size=int(values['buffer_size']), min_buffer=int(values['min_buffer']),
            device=str(values['device']), seed=int(values['seed']),
            train_nice=int(values['train_nice']), train_threads=int(values['train_threads']),
            positive_sample_fraction=float(values['positive_sample_fraction']),
            average_decay=float(values['average_decay']),
            even_exposure=bool(values['even_exposure']))
        trainer = str(values['trainer'])
        if trainer not in ('process', 'thread'):
            raise ValueError(f"trainer must be 'process' or 'thread', got {trainer!r}")
        learner_class = ProcessOnlineLearner if trainer == 'process' else OnlineLearner
        self.learner: PrequentialLearner = learner_class(self.config, self.learner_settings)
        if values['implied_blocking']:
            completion = BlockedCompletion(self.sensor_names, self.distances)
            if completion.active:
                self.learner.label_completion = completion
            self.get_logger().info(f'implied blocking: {completion.explain()}')
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self._max_pixels = int(values['max_image_pixels'])
        self.frame_spec = FrameSpec(sensor_names=tuple(self.sensor_names),
                                    distances=tuple(self.distances),
                                    image_width=self.config.image_width,
                                    image_height=self.config.image_height,
                                    max_pixels=self._max_pixels)
        self._mapped_orders: set[tuple[int, ...]] = set()
        #: Every counter of the status, each kind of refusal on its own (bad_<kind>: labeled
        #: frames, camera_<kind>: camera frames), so a monitor shows what is checked.
        self.counters = {'camera_frames': 0, 'predicted': 0, 'stale_dropped': 0,
                         'labeled_in': 0, 'labeled_dropped': 0, 'bad_inputs': 0,
                         'labeled_refused': 0, 'sensor_names_mapped': 0,
                         **{f'bad_{kind}': 0 for kind in KINDS},
                         'camera_refused': 0,
                         **{f'camera_{kind}': 0 for kind in CAMERA_KINDS},
                         'checkpoints': 0, 'checkpoint_errors': 0}
        self._checkpoint = os.path.expanduser(str(values['checkpoint_path']))
        if self._checkpoint:  # e.g. ~/.ros/ssl_obstacle/ on a robot's first run
            os.makedirs(os.path.dirname(os.path.abspath(self._checkpoint)), exist_ok=True)
        self._resume()

        self._predictions = self.create_publisher(ObstaclePrediction, 'ssl/predictions', 10)
        self._status = self.create_publisher(LearnerStatus, 'ssl/learner_status', 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._overlay = (self.create_publisher(Image, 'ssl/prediction_image', 2)
                         if values['publish_overlay'] else None)
        self._markers = (self.create_publisher(MarkerArray, 'ssl/prediction_markers', 2)
                         if values['publish_markers'] else None)
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self._on_labeled,
                                 LABELED_FRAMES_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        camera_group = MutuallyExclusiveCallbackGroup()
        if values['camera_transport'] == 'compressed':
            self.create_subscription(CompressedImage, 'camera/image_raw/compressed',
                                     self._on_camera, qos_profile_sensor_data,
                                     callback_group=camera_group)
        else:
            self.create_subscription(Image, 'camera/image_raw', self._on_camera,
                                     qos_profile_sensor_data, callback_group=camera_group)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(SetBool, 'ssl/pause_learning', self._on_pause, callback_group=services)
        self.create_service(Trigger, 'ssl/save_checkpoint', self._on_save, callback_group=services)
        self.create_service(Trigger, 'ssl/reset_model', self._on_reset, callback_group=services)
        self._chores: queue.Queue = queue.Queue()
        self._chores_waiting: set[Callable[[], Any]] = set()
        self._chores_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._housekeeper = threading.Thread(target=self._chore_loop, name='housekeeper',
                                             daemon=True)
        self._housekeeper.start()
        wall_timer(self, float(values['status_period']),
                   lambda: self._schedule(self._publish_status))
        if self._checkpoint and float(values['checkpoint_period']) > 0:
            wall_timer(self, float(values['checkpoint_period']),
                       lambda: self._schedule(self._save_checkpoint))

        self._mailbox: Any = None
        self._predicting = False
        self._mailbox_ready = threading.Condition()
        self._stop = threading.Event()
        self._predictor = threading.Thread(target=self._predict_loop, name='predictor',
                                           daemon=True)
        self._predictor.start()
        # Scoring and storing a labeled frame takes milliseconds (a prediction, and in process
        # mode a send to the trainer); done in the callback, a burst of frames (the labeler
        # finalises many at once) overflowed the reliable reader's keep-last history and lost
        # frames without a trace. The callback only enqueues; this worker does the rest.
        self._labeled: queue.Queue = queue.Queue(maxsize=int(values['labeled_queue_size']))
        self._scorer = threading.Thread(target=self._score_loop, name='scorer', daemon=True)
        self._scorer.start()
        self.learner.start()
        self.get_logger().info(
            f'learning to predict obstacles for {self.config.num_sensors} sensors x '
            f'{self.config.num_distances} distances ahead ({self.distances[0]:g} to '
            f'{self.distances[-1]:g} m) from {self.config.image_width}x'
            f'{self.config.image_height} camera frames on {self.learner.device}: labeled frames '
            f'in on ssl/labeled_frames, training once {self.learner_settings.min_buffer} are '
            'stored, a prediction per camera frame out on ssl/predictions')

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        if not (self._checkpoint and self.values['resume'] and os.path.exists(self._checkpoint)):
            return
        try:
            self.learner.load(self._checkpoint)
        except Exception as error:  # noqa: BLE001 - a bad checkpoint must not stop learning
            self.get_logger().error(f'cannot resume from the checkpoint {self._checkpoint} '
                                    f'({error}): starting with an untrained model; the next '
                                    'checkpoint replaces the file')
            return
        self.get_logger().info(f'resumed from the checkpoint {self._checkpoint}: a model '
                               f'trained for {self.learner.updates} updates')

    def _save_checkpoint(self) -> bool:
        if not self._checkpoint:
            return False
        with self._save_lock:  # the periodic save and the service's may meet
            try:
                self.learner.save(self._checkpoint)
            except Exception as error:  # noqa: BLE001 - report; learning goes on
                self.counters['checkpoint_errors'] += 1
                self.get_logger().error(f'could not write the checkpoint {self._checkpoint} '
                                        f'({error}); learning goes on and the next save tries '
                                        'again')
                return False
            self.counters['checkpoints'] += 1
        return True

    # ------------------------------------------------------------------ chores
    def _schedule(self, chore: Callable[[], Any]) -> None:
        """Have the housekeeping thread run ``chore``, unless it is already waiting to."""
        with self._chores_lock:
            if chore in self._chores_waiting:
                return  # a slow chore is not queued twice behind itself
            self._chores_waiting.add(chore)
        self._chores.put(chore)

    def _chore_loop(self) -> None:
        lower_this_thread(CHORE_NICENESS)
        while True:
            chore = self._chores.get()
            if chore is _STOP:
                return
            with self._chores_lock:
                self._chores_waiting.discard(chore)
            try:
                chore()
            except Exception as error:  # noqa: BLE001 - a failed status must not end them all
                self._log_bad('chore', f'the periodic {getattr(chore, "__name__", chore)} '
                                       f'failed ({type(error).__name__}: {error}); it runs '
                                       'again at its next period')

    # ------------------------------------------------------------------ inputs
    def _on_labeled(self, msg: LabeledFrame) -> None:
        self.counters['labeled_in'] += 1
        try:
            self._labeled.put_nowait(msg)
        except queue.Full:
            self.counters['labeled_dropped'] += 1
            self._log_bad('labeled_queue', 'dropped a labeled frame: '
                                           f'{self._labeled.maxsize} frames already wait to be '
                                           'scored (labeled_queue_size); the learner cannot '
                                           'keep up with the labeler')

    def _score_loop(self) -> None:
        while True:
            msg = self._labeled.get()
            if msg is _STOP:
                return
            self._let_camera_go_first()
            self._add_labeled(msg)

    def _let_camera_go_first(self) -> None:
        """
        Wait (briefly) while a camera frame waits or is predicted: its latency is what counts.

        Scoring a labeled frame is a forward pass too; started first, it delays the frame's
        prediction by its own length. The wait is bounded, so a camera that keeps the
        predictor busy slows scoring down without stopping it.
        """
        with self._mailbox_ready:
            self._mailbox_ready.wait_for(
                lambda: self._stop.is_set() or (self._mailbox is None and not self._predicting),
                timeout=CAMERA_FIRST_WAIT)

    def _add_labeled(self, msg: LabeledFrame) -> None:
        """Score and store a labeled frame that passes every check; count and log the rest."""
        try:
            frame = check_labeled_frame(msg, self.frame_spec)
        except BadInput as error:
            self._refuse_labeled(error.kind, error.detail)
            return
        if frame.row_order is not None:
            self._note_mapping(list(msg.sensor_names), frame.row_order)
        try:
            self.learner.add_labeled(frame.image, frame.labels, frame.stamp)
        except ValueError as error:  # the learner's own checks: a safety net
            self._refuse_labeled('learner', str(error))

    def _refuse_labeled(self, kind: str, detail: str) -> None:
        """Count a refused labeled frame by kind; say what was wrong and what to fix."""
        self._refuse(f'bad_{kind}', 'labeled_refused', 'refused a labeled frame, not trained on',
                     detail, FIXES.get(kind, ''))

    def _refuse(self, key: str, total: str, what: str, detail: str, fix: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1
        self.counters[total] += 1
        self.counters['bad_inputs'] += 1
        self._log_bad(key, f'{what} ({key}: {self.counters[key]} so far): {detail}. '
                           f'{fix}'.rstrip())

    def _note_mapping(self, names: list[str], order: tuple[int, ...]) -> None:
        """Count a frame whose rows were put in this node's sensor order; log each order once."""
        self.counters['sensor_names_mapped'] += 1
        if order in self._mapped_orders:
            return
        self._mapped_orders.add(order)
        self.get_logger().warning(
            f'labeled frames list their sensors as {names}, this learner as '
            f'{self.sensor_names}: their rows are mapped into this order by name (counted as '
            'sensor_names_mapped); give both nodes the same sensor_names to avoid it')

    def _on_camera(self, msg: Any) -> None:
        self.counters['camera_frames'] += 1
        with self._mailbox_ready:
            if self._mailbox is not None:
                self.counters['stale_dropped'] += 1
            self._mailbox = msg
            self._mailbox_ready.notify_all()  # the predictor; the scorer waits for it to end

    def _predict_loop(self) -> None:
        while not self._stop.is_set():
            with self._mailbox_ready:
                while self._mailbox is None and not self._stop.is_set():
                    self._mailbox_ready.wait(0.2)
                msg, self._mailbox = self._mailbox, None
                self._predicting = msg is not None
            if msg is None:
                continue
            try:
                self._predict(msg)
            except BadInput as error:
                self._refuse_camera(error.kind, error.detail)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop predicting
                self._refuse_camera('error', f'prediction failed: {type(error).__name__}: '
                                             f'{error}')
            finally:
                with self._mailbox_ready:
                    self._predicting = False
                    self._mailbox_ready.notify_all()

    def _refuse_camera(self, kind: str, detail: str) -> None:
        """Count a camera frame that got no prediction, by kind; say what to fix."""
        self._refuse(f'camera_{kind}', 'camera_refused', 'no prediction for a camera frame',
                     detail, CAMERA_FIXES.get(kind, ''))

    def _predict(self, msg: Any) -> None:
        if isinstance(msg, CompressedImage):
            rgb = compressed_to_rgb(msg, max_pixels=self._max_pixels)
        else:
            rgb = image_to_rgb(msg, copy=False, max_pixels=self._max_pixels)
        small = resize_rgb(rgb, self.config.image_width, self.config.image_height)
        probabilities, snapshot = self.learner.predict_with_snapshot(small)
        stamp_to_ns(msg.header.stamp)  # validates the stamp fields
        self._predictions.publish(prediction_msg(msg.header, self.sensor_names, self.distances,
                                                 probabilities, snapshot.updates))
        self.counters['predicted'] += 1
        if self._overlay is not None and self._overlay.get_subscription_count() > 0:
            self._overlay.publish(rgb_to_image_msg(overlay_image(rgb, probabilities), msg.header))
        if self._markers is not None and self._markers.get_subscription_count() > 0:
            header = Header(stamp=msg.header.stamp,
                            frame_id=self._base_link(msg.header.frame_id))
            self._markers.publish(markers_msg(header, self.sensor_names, self.distances,
                                              probabilities))

    @staticmethod
    def _base_link(camera_frame: str) -> str:
        prefix = camera_frame.rsplit('/', 1)[0] + '/' if '/' in camera_frame else ''
        return f'{prefix}base_link'

    # ------------------------------------------------------------------ services
    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        if request.data:
            self.learner.pause()
        else:
            self.learner.resume()
        response.success = True
        response.message = 'learning paused' if request.data else 'learning resumed'
        return response

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        response.success = self._save_checkpoint()
        response.message = (f'saved {self._checkpoint}' if response.success else
                            'no checkpoint_path set' if not self._checkpoint else 'save failed')
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        self.learner.reset_model()
        response.success = True
        response.message = 'model reset to fresh weights'
        return response

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        status = self.learner.status()
        header = Header(stamp=self.get_clock().now().to_msg())
        self._status.publish(status_msg(header, status, self.distances))
        if status.error:
            self._log_bad('trainer', f'training stopped ({status.error}): the model learns '
                                     'no more; predictions go on with its last weights')
        self._diagnostics.publish(self._diagnostic_array(status))

    def _diagnostic_array(self, status: Any) -> DiagnosticArray:
        """Report every counter, and WARN when frames were dropped, bad or training stopped."""
        values = {**self.counters, 'updates': status.updates,
                  'labeled_frames': status.labeled_frames,
                  'labeled_waiting': self._labeled.qsize(),
                  'replay_size': status.replay_size}
        problems = [f'{values[k]} {k.replace("_", " ")}'
                    for k in ('labeled_dropped', 'checkpoint_errors') if values[k]]
        problems += self._refusals()
        if status.error:
            problems.insert(0, f'training stopped: {status.error}')
        return diagnostic_array(self, 'learning', values, problems,
                                f'{status.updates} updates on {status.labeled_frames} '
                                'labeled frames')

    def _refusals(self) -> list[str]:
        """Name each kind of refused frame seen, e.g. ``6 labeled frames refused (labels nan)``."""
        found = []
        for key, count in list(self.counters.items()):
            if not count or key in ('bad_inputs', 'camera_frames', 'camera_refused'):
                continue
            for prefix, what in (('bad_', 'labeled'), ('camera_', 'camera')):
                if key.startswith(prefix):
                    kind = key[len(prefix):].replace('_', ' ')
                    found.append(f'{count} {what} frames refused ({kind})')
        return found

    def close(self) -> None:
        """Stop training and prediction; write a final checkpoint; end the trainer."""
        self._stop.set()
        with self._mailbox_ready:
            self._mailbox_ready.notify_all()
        self._predictor.join(timeout=5.0)
        self._labeled.put(_STOP)  # after the frames already waiting: none is lost
        self._scorer.join(timeout=30.0)
        self._chores.put(_STOP)
        self._housekeeper.join(timeout=30.0)
        self.learner.stop()
        saved = self._save_checkpoint()
        status = self.learner.status()
        auc = status.auc
        score = 'n/a (no obstacle and free cell scored yet)' if math.isnan(auc) else \
            f'{auc:.3f} (each frame predicted before it was trained on; 0.5 is chance, 1 perfect)'
        self.get_logger().info(
            f'stopping after {status.updates} training steps on {status.labeled_frames} '
            f'labeled frames; running AUC {score}'
            + (f'; model saved to {self._checkpoint}' if saved else ''))
        self.learner.close()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle learner``."""
    run_nodes([LearnerNode], args)


if __name__ == '__main__':
    main()
