"""
The trainer node: labeled frames of one robot or a fleet in, the model out on ``ssl/model``.

It runs wherever PyTorch does: on the robot when it can, else on any machine of the ROS
domain (a GPU with ``device: cuda``). One worker thread owns the :class:`OnlineTrainer`
(model, optimiser, replay buffer, averaged weights): subscription callbacks only enqueue
into a bounded queue that counts what it drops, services hand the worker a command and wait
for its answer on a second executor thread (so frames keep arriving meanwhile), and the
diagnostics timer reads the copy of the counters the worker last published.
"""

from __future__ import annotations

import array
from collections import deque
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
import math
import os
import queue
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ModelWeights
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger
import torch

from .diagnostics import diagnostic_array
from .qos import LABELED_FRAMES_QOS, MODEL_QOS
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, run_nodes, wall_timer
from ..core.implied_labels import BlockedCompletion
from ..core.model import DEFAULT_AUGMENTATION, ModelConfig
from ..core.params import LabelParams
from ..core.trainer import OnlineTrainer, TrainerSettings, TrainerStatus
from ..io.conversions import BadInput, DEFAULT_MAX_IMAGE_PIXELS
from ..io.labeled_frames import check_labeled_frame, FIXES, FrameSpec, KINDS
from ..io.learner_messages import trainer_status_msg
from ..io.model_messages import ENCODINGS, model_weights_msg

#: Labeled frames scored in one forward pass when several wait, between two training
#: steps: a burst (the labeler finalising a backlog, several robots at once) is taken in
#: before training resumes, as a frame dropped is lost and a step delayed is not.
SCORE_BATCH = 256
#: Seconds a service waits for the worker to carry out its command.
COMMAND_TIMEOUT = 60.0
#: Longest wait of the worker for a frame, so commands are taken up promptly.
IDLE_WAIT = 0.05

#: The trainer's convolutions: 16 filters per block where the paper has 10, 10, 8: with label
#: smoothing, learns faster and is better calibrated, at 1.3 times the numpy forward pass
#: (docs/learning_quality.md).
TRAINER_FILTERS = (16, 16, 16)

PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(LabelParams().sensor_names), 'grid rows; must match the labeler'),
    'distances': ([float(d) for d in LabelParams().distances], 'grid columns (metres)'),
    'image_width': (80, 'pixels: model input width (the labeler publishes this size)'),
    'image_height': (64, 'pixels: model input height'),
    'filters': (list(TRAINER_FILTERS), 'output channels of each 3x3 convolution block (the '
                                       "paper's: 10, 10, 8)"),
    'learning_rate': (2e-3, 'Adam learning rate'),
    'batch_size': (64, 'frames per training step'),
    'max_updates_per_second': (20.0, 'cap on training steps per second (0 = none)'),
    'buffer_size': (20000, 'replay buffer capacity (frames, about 15 kB each)'),
    'min_buffer': (64, 'frames in the buffer before training starts'),
    'device': ('cpu', "'cpu' or 'cuda' (falls back to cpu when CUDA is absent)"),
    'checkpoint_path': ('', 'checkpoint file; empty = no checkpoints'),
    'checkpoint_period': (60.0, 'seconds (wall clock) between checkpoints'),
    'resume': (True, 'start from checkpoint_path when it exists'),
    'publish_period': (0.5, 'seconds (wall clock) between publications of the model on '
                            'ssl/model, when it has trained since the last one'),
    'model_encoding': ('float32', "weights on the wire: 'float32' or 'float16' (half the "
                                  'bytes, predictions within about 1e-3)'),
    'status_period': (1.0, 'seconds between ssl/learner_status messages'),
    'seed': (0, 'seed of the initial weights, sampling and augmentation'),
    'train_threads': (1, 'torch intra-op threads of training'),
    'nice': (0, 'niceness this process adds to itself, so that a labeler and a predictor on '
                'the same computer are served first (0 = same priority: on a saturated CPU '
                'a lowered trainer starves)'),
    'positive_sample_fraction': (0.0, 'least share of frames with an obstacle cell in a '
                                      'batch (0 = sample the buffer as it is)'),
    'average_decay': (0.99, 'publish a moving average of the weights, this decay per step '
                            '(about the last 1/(1 - decay) steps; 0 = latest weights)'),
    'even_exposure': (True, 'train on every buffered frame about equally often (least-drawn '
                            'of a few random frames) rather than uniformly'),
    'implied_blocking': (True, 'also train on the cells beyond an obstacle the centre sensor '
                               'saw: the robot could only reach them through it (see '
                               'core/implied_labels.py); scoring keeps the observed labels'),
    'calibration': (TrainerSettings.calibration,
                    "publish calibrated probabilities: 'temperature' = a temperature per "
                    'distance fitted on the newest scored frames, half-way toward 1; '
                    "'distance' / 'cell' = Platt scaling per distance / per cell; 'none' "
                    "= the network's own (docs/learning_quality.md)"),
    'calibration_frames': (1000, 'newest scored (not yet trained on) frames the calibration '
                                 'is fitted on'),
    'label_smoothing': (TrainerSettings.label_smoothing,
                        'train on y (1 - e) + e / 2 for a known label y: less overconfident '
                        'in a room never seen (docs/learning_quality.md); 0 = the labels'),
    'hue_shuffle': (DEFAULT_AUGMENTATION.channel_shuffle,
                    'probability that a training frame has its rgb channels permuted: a '
                    'hue change that keeps every shape, against a model that learns the '
                    "room's colours (docs/learning_quality.md); 0 = never"),
    'labeled_queue_size': (2000, 'labeled frames waiting for the worker (about 16 kB each); '
                                 'beyond it the newest are dropped and counted'),
    'max_image_pixels': (DEFAULT_MAX_IMAGE_PIXELS, 'labeled frames declaring larger images '
                                                   'are refused'),
}

ROBOTS_DESCRIPTION = ('namespaces of the robots to learn from (e.g. [thymio1, thymio2]): '
                      'reads /<ns>/ssl/labeled_frames and publishes /<ns>/ssl/model and '
                      '/<ns>/ssl/learner_status for each; empty = the labeler of this '
                      "node's own namespace")


@dataclass
class Command:
    """A service's request to the worker, and the worker's answer."""

    name: str
    argument: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    success: bool = False
    message: str = ''


def robot_namespaces(values: list[str] | None) -> list[str]:
    """Return the robots' namespaces as absolute names without a trailing slash."""
    names = []
    for value in values or []:
        name = '/' + str(value).strip().strip('/')
        if name == '/':
            raise ValueError('robots: an empty namespace; leave robots empty for this '
                             "node's own namespace")
        if name in names:
            raise ValueError(f'robots: {name} is listed twice')
        names.append(name)
    return names


class TrainerNode(Node):
    """Learns obstacle perception from the labeled frames of one robot or several."""

    #: Threads of this node's executor: services wait for the worker on the second one.
    executor_threads = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('trainer', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.values = values
        robots = self.declare_parameter(
            'robots', Parameter.Type.STRING_ARRAY,
            ParameterDescriptor(description=ROBOTS_DESCRIPTION, read_only=True)).value
        self.robots = robot_namespaces(robots)
        self.sensor_names = list(values['sensor_names'])
        self.distances = [float(d) for d in values['distances']]
        self.config = ModelConfig(num_sensors=len(self.sensor_names),
                                  num_distances=len(self.distances),
                                  image_height=int(values['image_height']),
                                  image_width=int(values['image_width']),
                                  filters=tuple(int(f) for f in values['filters']))
        if values['model_encoding'] not in ENCODINGS:
            raise ValueError(f'model_encoding must be one of {", ".join(ENCODINGS)}, got '
                             f'{values["model_encoding"]!r}')
        if int(values['nice']) > 0:
            os.nice(int(values['nice']))
        self.trainer = OnlineTrainer(self.config, self._settings(values),
                                     self._completion(bool(values['implied_blocking'])))
        self.frame_spec = FrameSpec(sensor_names=tuple(self.sensor_names),
                                    distances=tuple(self.distances),
                                    image_width=self.config.image_width,
                                    image_height=self.config.image_height,
                                    max_pixels=int(values['max_image_pixels']))
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self._checkpoint = os.path.expanduser(str(values['checkpoint_path']))
        if self._checkpoint:  # e.g. ~/.ros/ssl_obstacle/ on a robot's first run
            os.makedirs(os.path.dirname(os.path.abspath(self._checkpoint)), exist_ok=True)
        self._resume()
        self.trainer_id = (f'{self.get_fully_qualified_name()}@'
                           f'{datetime.now(timezone.utc).isoformat(timespec="seconds")}')
        #: Written by the worker only (the executor's callbacks write labeled_dropped, one
        #: at a time: every subscription is in one mutually exclusive group).
        self.counters = {'labeled_in': 0, 'labeled_dropped': 0, 'labeled_refused': 0,
                         'sensor_names_mapped': 0, **{f'bad_{kind}': 0 for kind in KINDS},
                         'models_published': 0, 'checkpoints': 0, 'checkpoint_errors': 0,
                         'worker_errors': 0}
        self._mapped_orders: set[tuple[int, ...]] = set()
        self._intake: queue.Queue = queue.Queue(maxsize=int(values['labeled_queue_size']))
        #: Frames the worker took while waiting, handled first at its next turn.
        self._pending: list[tuple[str, LabeledFrame]] = []
        self._commands: deque[Command] = deque()
        self._stop = threading.Event()
        self._snapshot: dict[str, Any] = {'status': None, 'counters': dict(self.counters),
                                          'busy_since': 0.0}
        self._make_topics()
        wall_timer(self, float(values['status_period']), self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name='trainer', daemon=True)
        self._worker.start()
        sources = ', '.join(f'{r}/ssl/labeled_frames' for r in self.robots) or \
            'ssl/labeled_frames'
        self.get_logger().info(
            f'training a model of {self.config.num_sensors} sensors x '
            f'{self.config.num_distances} distances from {self.config.image_width}x'
            f'{self.config.image_height} frames on {self.trainer.device}: labeled frames in '
            f'on {sources}, weights out on ssl/model every '
            f'{float(values["publish_period"]):g} s once trained')

    @staticmethod
    def _settings(values: dict[str, Any]) -> TrainerSettings:
        return TrainerSettings(
            learning_rate=float(values['learning_rate']), batch_size=int(values['batch_size']),
            buffer_size=int(values['buffer_size']), min_buffer=int(values['min_buffer']),
            device=str(values['device']), seed=int(values['seed']),
            positive_sample_fraction=float(values['positive_sample_fraction']),
            average_decay=float(values['average_decay']),
            even_exposure=bool(values['even_exposure']),
            calibration=str(values['calibration']),
            calibration_frames=int(values['calibration_frames']),
            label_smoothing=float(values['label_smoothing']),
            augmentation=dataclasses.replace(
                DEFAULT_AUGMENTATION, channel_shuffle=float(values['hue_shuffle'])))

    def _completion(self, enabled: bool) -> Callable[[Any], Any] | None:
        if not enabled:
            return None
        completion = BlockedCompletion(self.sensor_names, self.distances)
        self.get_logger().info(f'implied blocking: {completion.explain()}')
        return completion if completion.active else None

    def _make_topics(self) -> None:
        frames = MutuallyExclusiveCallbackGroup()
        self._model_publishers = []
        self._status_publishers: dict[str, Any] = {}
        self._status_publishers[''] = self.create_publisher(LearnerStatus,
                                                            'ssl/learner_status', 10)
        if not self.robots:
            self._model_publishers.append(self.create_publisher(ModelWeights, 'ssl/model',
                                                                MODEL_QOS))
            self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self._enqueue(''),
                                     LABELED_FRAMES_QOS, callback_group=frames)
        for robot in self.robots:
            self._model_publishers.append(self.create_publisher(
                ModelWeights, f'{robot}/ssl/model', MODEL_QOS))
            self._status_publishers[robot] = self.create_publisher(
                LearnerStatus, f'{robot}/ssl/learner_status', 10)
            self.create_subscription(LabeledFrame, f'{robot}/ssl/labeled_frames',
                                     self._enqueue(robot), LABELED_FRAMES_QOS,
                                     callback_group=frames)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(SetBool, 'ssl/pause_learning', self._on_pause, callback_group=services)
        self.create_service(Trigger, 'ssl/save_checkpoint', self._on_save, callback_group=services)
        self.create_service(Trigger, 'ssl/reset_model', self._on_reset, callback_group=services)

    # ------------------------------------------------------------------ executor side
    def _enqueue(self, robot: str) -> Callable[[LabeledFrame], None]:
        def on_labeled(msg: LabeledFrame) -> None:
            try:
                self._intake.put_nowait((robot, msg))
            except queue.Full:
                self.counters['labeled_dropped'] += 1
                self._log_bad('labeled_queue', 'dropped a labeled frame: '
                                               f'{self._intake.maxsize} frames already wait '
                                               '(labeled_queue_size); the trainer cannot keep '
                                               'up with the labelers')
        return on_labeled

    def _ask(self, name: str, argument: Any = None) -> Command:
        """Hand the worker a command and wait for its answer (on the services' thread)."""
        command = Command(name, argument)
        self._commands.append(command)
        if not command.done.wait(COMMAND_TIMEOUT):
            command.message = f'the trainer did not answer within {COMMAND_TIMEOUT:g} s'
        return command

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        return self._answer(self._ask('pause', bool(request.data)), response)

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        return self._answer(self._ask('save'), response)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        return self._answer(self._ask('reset'), response)

    @staticmethod
    def _answer(command: Command, response: Any) -> Any:
        response.success = command.success
        response.message = command.message
        return response

    def latest_status(self) -> TrainerStatus | None:
        """Return the status the worker last published (None before its first)."""
        return self._snapshot['status']

    def frames_received(self) -> int:
        """Return the labeled frames received so far, taken in or waiting (any thread)."""
        return (self.counters['labeled_in'] + self.counters['labeled_dropped']
                + self._intake.qsize() + len(self._pending))

    def counters_copy(self) -> dict[str, int]:
        """Return a copy of the counters (any thread: each is written by one thread)."""
        return dict(self.counters)

    def _publish_diagnostics(self) -> None:
        """Report the worker's last published counters; never waits for the worker."""
        snapshot = self._snapshot
        status: TrainerStatus | None = snapshot['status']
        busy_since = snapshot['busy_since']
        values = {**snapshot['counters'], 'labeled_dropped': self.counters['labeled_dropped'],
                  'labeled_waiting': self._intake.qsize(),
                  'worker_busy_s': round(time.monotonic() - busy_since, 3) if busy_since
                  else 0.0}
        problems = [f'{values[k]} {k.replace("_", " ")}' for k in
                    ('labeled_dropped', 'checkpoint_errors', 'worker_errors') if values[k]]
        problems += [f'{count} labeled frames refused ({key[4:].replace("_", " ")})'
                     for key, count in values.items() if key.startswith('bad_') and count]
        if values['worker_busy_s'] > 5.0:
            problems.append(f'worker busy for {values["worker_busy_s"]:.1f} s')
        summary = 'starting' if status is None else \
            f'{status.updates} updates on {status.labeled_frames} labeled frames'
        if status is not None:
            values.update(updates=status.updates, labeled_frames=status.labeled_frames,
                          replay_size=status.replay_size, replay_evicted=status.replay_evicted,
                          model_version=status.model_version, paused=status.paused)
        self._diagnostics.publish(diagnostic_array(self, 'training', values, problems, summary))

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        """Own the trainer: take frames in, train at the capped rate, publish on schedule."""
        torch.set_num_threads(max(1, int(self.values['train_threads'])))
        cap = float(self.values['max_updates_per_second'])
        period = 1.0 / cap if cap > 0 else 0.0
        publish_period = max(0.01, float(self.values['publish_period']))
        status_period = max(0.05, float(self.values['status_period']))
        checkpoint_period = float(self.values['checkpoint_period'])
        now = time.monotonic()
        next_step, next_publish, next_status = now, now, now
        next_checkpoint = now + checkpoint_period
        published_updates = -1
        while not self._stop.is_set():
            self._snapshot['busy_since'] = time.monotonic()
            try:
                self._run_commands()
                self._take_in(self._drain())
                now = time.monotonic()
                if now >= next_publish:
                    next_publish = now + publish_period
                    if self.trainer.updates > 0 and self.trainer.updates != published_updates:
                        published_updates = self._publish_model()
                if now >= next_status:
                    next_status = now + status_period
                    self._publish_status()
                if self._checkpoint and checkpoint_period > 0 and now >= next_checkpoint:
                    next_checkpoint = now + checkpoint_period
                    self._save()
                if self.trainer.can_train and now >= next_step:
                    # Never bank more than one period of slack (no bursts after a stall).
                    next_step = max(next_step + period, now - period) if period else now
                    self.trainer.train_step()
                    continue
            except Exception as error:  # noqa: BLE001 - report; the worker must go on
                self.counters['worker_errors'] += 1
                self._log_bad('worker', f'the trainer failed ({type(error).__name__}: '
                                        f'{error}); it goes on with the next frame or step')
            self._snapshot['busy_since'] = 0.0
            wake = min(next_publish, next_status,
                       next_step if self.trainer.can_train else math.inf)
            self._wait_for_frames(min(IDLE_WAIT, max(0.0, wake - time.monotonic())))

    def _wait_for_frames(self, timeout: float) -> None:
        if timeout <= 0:
            return
        try:
            item = self._intake.get(timeout=timeout)
        except queue.Empty:
            return
        self._pending.append(item)

    def _drain(self, limit: float = SCORE_BATCH) -> list[tuple[str, LabeledFrame]]:
        """Return up to ``limit`` waiting frames (the one a wait took first)."""
        batch, self._pending = self._pending, []
        while len(batch) < limit:
            try:
                batch.append(self._intake.get_nowait())
            except queue.Empty:
                break
        return batch

    def _take_in(self, batch: list[tuple[str, LabeledFrame]]) -> None:
        """Check the frames; score the good ones with the published weights, then store."""
        if not batch:
            return
        self.counters['labeled_in'] += len(batch)
        good = []
        for robot, msg in batch:
            try:
                frame = check_labeled_frame(msg, self.frame_spec)
            except BadInput as error:
                self._refuse(error.kind, error.detail, robot)
                continue
            if frame.row_order is not None:
                self._note_mapping(list(msg.sensor_names), frame.row_order)
            good.append((robot, frame))
        if good:
            self.trainer.score_and_store(
                [f.image for _, f in good], [f.labels for _, f in good],
                [f.stamp for _, f in good], [r for r, _ in good])

    def _refuse(self, kind: str, detail: str, robot: str) -> None:
        key = f'bad_{kind}'
        self.counters[key] = self.counters.get(key, 0) + 1
        self.counters['labeled_refused'] += 1
        source = f' from {robot}' if robot else ''
        self._log_bad(key, f'refused a labeled frame{source}, not trained on ({key}: '
                           f'{self.counters[key]} so far): {detail}. {FIXES.get(kind, "")}'
                      .rstrip())

    def _note_mapping(self, names: list[str], order: tuple[int, ...]) -> None:
        self.counters['sensor_names_mapped'] += 1
        if order in self._mapped_orders:
            return
        self._mapped_orders.add(order)
        self.get_logger().warning(
            f'labeled frames list their sensors as {names}, this trainer as '
            f'{self.sensor_names}: their rows are mapped into this order by name (counted as '
            'sensor_names_mapped); give both nodes the same sensor_names to avoid it')

    def _publish_model(self) -> int:
        weights = self.trainer.publish()
        header = Header(stamp=self.get_clock().now().to_msg())
        msg = model_weights_msg(header, self.config, self.sensor_names, self.distances,
                                weights.state, weights.updates, weights.version,
                                self.trainer_id, str(self.values['model_encoding']),
                                cell_confidence=weights.cell_confidence)
        for publisher in self._model_publishers:
            publisher.publish(msg)
        self.counters['models_published'] += 1
        return weights.updates

    def _publish_status(self) -> None:
        status = self.trainer.status()
        header = Header(stamp=self.get_clock().now().to_msg())
        counts = {'labeled_dropped': self.counters['labeled_dropped'],
                  'labeled_refused': self.counters['labeled_refused']}
        self._status_publishers[''].publish(trainer_status_msg(header, status, self.distances,
                                                               **counts))
        for robot in self.robots:
            self._status_publishers[robot].publish(trainer_status_msg(
                header, status, self.distances, robot=robot, **counts))
        self._snapshot = {'status': status, 'counters': dict(self.counters),
                          'busy_since': self._snapshot['busy_since']}

    def _run_commands(self) -> None:
        while self._commands:
            command = self._commands.popleft()
            try:
                self._carry_out(command)
            finally:
                command.done.set()

    def _carry_out(self, command: Command) -> None:
        if command.name == 'pause':
            self.trainer.paused = bool(command.argument)
            command.success = True
            command.message = 'learning paused' if command.argument else 'learning resumed'
        elif command.name == 'save':
            command.success = self._save()
            command.message = (f'saved {self._checkpoint}' if command.success else
                               'no checkpoint_path set' if not self._checkpoint else
                               'save failed (see the log)')
        elif command.name == 'reset':
            self.trainer.reset()
            if self.counters['models_published']:
                # The robots must not keep the old model until the next step (none while
                # paused): frames are scored with the fresh weights from now on.
                self._publish_model()
            command.success = True
            command.message = 'model reset to fresh weights'

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        if not (self._checkpoint and self.values['resume'] and os.path.exists(self._checkpoint)):
            return
        try:
            self.trainer.load(self._checkpoint)
        except Exception as error:  # noqa: BLE001 - a bad checkpoint must not stop learning
            self.get_logger().error(f'cannot resume from the checkpoint {self._checkpoint} '
                                    f'({error}): starting with an untrained model; the next '
                                    'checkpoint replaces the file')
            return
        self.get_logger().info(f'resumed from the checkpoint {self._checkpoint}: a model '
                               f'trained for {self.trainer.updates} updates')

    def _save(self) -> bool:
        if not self._checkpoint:
            return False
        try:
            self.trainer.save(self._checkpoint, self._provenance())
        except Exception as error:  # noqa: BLE001 - report; learning goes on
            self.counters['checkpoint_errors'] += 1
            self.get_logger().error(f'could not write the checkpoint {self._checkpoint} '
                                    f'({error}); learning goes on and the next save tries again')
            return False
        self.counters['checkpoints'] += 1
        return True

    def _provenance(self) -> dict[str, Any]:
        """Return this node's parameters for the checkpoint: what trained the model."""
        # rclpy returns numeric arrays as array.array, which a weights_only load refuses.
        values = {name: list(value) if isinstance(value, (list, tuple, array.array)) else value
                  for name, value in self.values.items() if name != 'checkpoint_path'}
        return {**values, 'robots': list(self.robots), 'sensor_names': self.sensor_names,
                'distances': self.distances}

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the worker after the frames already waiting; write a final checkpoint."""
        self._stop.set()
        self._worker.join(timeout=30.0)
        try:
            self._take_in(self._drain(math.inf))
        except Exception as error:  # noqa: BLE001 - the checkpoint matters more
            self.get_logger().warning(f'last labeled frames not stored: {error}')
        saved = self._save()
        status = self.trainer.status()
        score = 'n/a (no obstacle and free cell scored yet)' if math.isnan(status.auc) else \
            f'{status.auc:.3f} (each frame predicted before it was trained on; 0.5 is chance, ' \
            '1 perfect)'
        self.get_logger().info(
            f'stopping after {status.updates} training steps on {status.labeled_frames} '
            f'labeled frames; running AUC {score}'
            + (f'; model saved to {self._checkpoint}' if saved else ''))


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle trainer``."""
    run_nodes([TrainerNode], args)


if __name__ == '__main__':
    main()
