"""
The labeler node: camera + proximity + odometry in, ``LabeledFrame`` out.

Callbacks do no work beyond enqueueing the message into a bounded queue; a worker
thread runs the (pure) labeling pipeline and publishes, as ``camera_calibration`` does, so
a burst of heavy images never stalls the executor or the other subscriptions. When the
worker falls behind, the queue sheds camera frames first (:mod:`.intake_queue`): a lost
frame costs one frame, a lost odometry sample or reading the labels of many.

The worker owns the pipeline. It publishes a copy of its counters after each message (at
most every 50 ms) and status reads that copy: the executor thread never waits for the
worker, so a message that takes seconds to process stalls no subscription.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSPolicyKind, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image, LaserScan, Range
from ssl_obstacle_msgs.msg import LabeledFrame

from .diagnostics import diagnostic_array
from .intake_queue import CAMERA, IntakeQueue
from .qos import LABELED_FRAMES_QOS
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, run_nodes, wall_timer
from ..core.labeler import Outcome
from ..core.params import LabelParams
from ..io.conversions import BadInput
from ..io.messages import labeled_frame_msg
from ..io.params_file import NODE_PARAMETERS, settings_from_mapping, unknown_parameters
from ..io.pipeline import InputSettings, LabelingPipeline

#: The input subscriptions accept ROS 2's standard reliability override parameters.
RELIABILITY_OVERRIDE = QoSOverridingOptions([QoSPolicyKind.RELIABILITY])

#: Seconds between two copies of the worker's counters for status (at the most).
SNAPSHOT_PERIOD = 0.05
#: Shown by ``ros2 param describe``; the YAML file in config/ carries the same notes.
PARAMETER_DESCRIPTIONS = {
    'sensor_names': 'proximity sensors, in grid row order',
    'distances': 'metres ahead of the frame pose, one grid column each',
    'tol_x': 'metres: |dx - d| tolerance of the label rule',
    'tol_y': 'metres: lateral tolerance of the label rule',
    'tol_theta': 'radians: heading tolerance of the label rule',
    'past_window': 'seconds: readings this much before a frame still label it',
    'future_window': 'seconds: readings up to this much after a frame label it',
    'reorder_window': 'seconds: messages this much older than the newest still count',
    'time_jump_threshold': 'seconds: a stamp this far back means the stream restarted',
    'max_pending_frames': 'frames collecting labels at most (oldest give way)',
    'max_waiting': 'messages waiting for odometry at most',
    'max_age': 'seconds: frames and messages older than this are evicted',
    'odom_history': 'odometry samples kept for interpolation',
    'max_odometry_gap': 'seconds: no pose is interpolated between odometry samples farther '
                        'apart; frames and readings inside such a gap are dropped',
    'proximity_source': "'range' (one Range per sensor) or 'laser' (proximity/laser)",
    'laser_sensor_order': 'sensor of each laser beam, in beam order (right to left)',
    'too_close_is_obstacle': 'count a Range of -inf (REP 117 too close) as an obstacle',
    'image_width': 'pixels: width of published frames (learner input)',
    'image_height': 'pixels: height of published frames (learner input)',
    'max_image_pixels': 'camera images declaring more pixels are refused before decoding',
    'camera_transport': "'raw' (camera/image_raw) or 'compressed' (.../compressed)",
    'queue_size': 'messages waiting for the worker thread at most',
    'camera_queue_size': 'camera frames waiting for the worker at most; beyond, the oldest '
                         'is shed (odometry and readings are kept first)',
    'sensor_qos_depth': 'history depth of the odometry and proximity subscriptions',
    'camera_qos_depth': 'history depth of the camera subscription',
    'stale_timeout': 'seconds without a message before a stream is reported stale',
    'status_period': 'seconds between /diagnostics messages',
}


class LabelerNode(Node):
    """Labels camera frames with what the proximity sensors later saw (Nava et al. 2019)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('labeler', **kwargs)
        params, settings, node_settings = self._declare_parameters()
        self.params = params
        self.settings = settings
        self.pipeline = LabelingPipeline(params, settings)
        self._camera_frame_id = 'camera'
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self._queue = IntakeQueue(node_settings['queue_size'], node_settings['camera_queue_size'])
        self._stale_timeout = node_settings['stale_timeout']
        self._published = 0
        self._last_arrival: dict[str, int] = {}
        self._odometry_gaps = 0
        # Written by the worker only, read by status: replaced whole, never mutated.
        self._worker_counters: dict[str, Any] = self._collect_counters()
        self._busy_since: float | None = None
        self._camera_shed_reported = 0

        self._publisher = self.create_publisher(
            LabeledFrame, 'ssl/labeled_frames', LABELED_FRAMES_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subscribe(node_settings['camera_transport'], node_settings['sensor_qos_depth'],
                        node_settings['camera_qos_depth'])
        self._worker = threading.Thread(target=self._work, name='labeler-worker', daemon=True)
        self._worker.start()
        wall_timer(self, node_settings['status_period'], self._publish_status)
        self.get_logger().info(
            f'labeling {len(params.sensor_names)} sensors x {len(params.distances)} distances '
            f'from {settings.proximity_source} proximity, {node_settings["camera_transport"]} '
            f'camera; publishing {settings.image_width}x{settings.image_height} frames on '
            f'{self._publisher.topic_name}')

    # ------------------------------------------------------------------ setup
    def _declare_parameters(self) -> tuple[LabelParams, InputSettings, dict[str, Any]]:
        defaults = LabelParams().to_dict()
        input_defaults = InputSettings()
        node_defaults = {
            'proximity_source': input_defaults.proximity_source,
            'laser_sensor_order': list(input_defaults.laser_sensor_order),
            'too_close_is_obstacle': input_defaults.too_close_is_obstacle,
            'image_width': input_defaults.image_width,
            'image_height': input_defaults.image_height,
            'max_image_pixels': input_defaults.max_image_pixels,
            **NODE_PARAMETERS,
        }
        values = declare_parameters(self, {
            name: (value, PARAMETER_DESCRIPTIONS[name])
            for name, value in {**defaults, **node_defaults}.items()})
        unknown = unknown_parameters(getattr(self, '_parameter_overrides', {}))
        if unknown:
            self.get_logger().warning(
                f'ignoring unknown parameter(s) {", ".join(unknown)} (typo in the YAML file?)')
        params = LabelParams.from_mapping(values)
        settings = settings_from_mapping(values)
        transport = str(values['camera_transport'])
        if transport not in ('raw', 'compressed'):
            raise ValueError(f"camera_transport must be 'raw' or 'compressed', not {transport!r}")
        node_settings = {
            'camera_transport': transport,
            'queue_size': max(1, int(values['queue_size'])),
            'camera_queue_size': max(1, int(values['camera_queue_size'])),
            'sensor_qos_depth': max(1, int(values['sensor_qos_depth'])),
            'camera_qos_depth': max(1, int(values['camera_qos_depth'])),
            'stale_timeout': float(values['stale_timeout']),
            'status_period': float(values['status_period']),
        }
        return params, settings, node_settings

    def _subscribe(self, transport: str, depth: int, camera_depth: int) -> None:
        # Best effort, as qos_profile_sensor_data: matches both best-effort and reliable
        # drivers (the Thymio driver publishes reliable, depth 1). The history is what
        # covers a stall of the executor thread: odometry and readings are small and each
        # one labels many frames, so they get a deep one; a camera frame is large and
        # costs only itself when lost. Reliability can be set per topic with ROS 2's
        # standard `qos_overrides.<topic>.subscription.reliability` parameters (a bag
        # replayed for a comparison wants every message).
        qos = _sensor_qos(depth)
        camera_qos = _sensor_qos(camera_depth)
        if transport == 'compressed':
            self.create_subscription(CompressedImage, 'camera/image_raw/compressed',
                                     self._enqueue(CAMERA, self.pipeline.on_compressed_image),
                                     camera_qos, qos_overriding_options=RELIABILITY_OVERRIDE)
        else:
            self.create_subscription(Image, 'camera/image_raw',
                                     self._enqueue(CAMERA, self.pipeline.on_image), camera_qos,
                                     qos_overriding_options=RELIABILITY_OVERRIDE)
        if self.settings.proximity_source == 'laser':
            self.create_subscription(LaserScan, 'proximity/laser',
                                     self._enqueue('laser', self.pipeline.on_laser), qos,
                                     qos_overriding_options=RELIABILITY_OVERRIDE)
        else:
            for name in self.params.sensor_names:
                handler = self._range_handler(name)
                self.create_subscription(Range, f'proximity/{name}',
                                         self._enqueue(name, handler), qos,
                                         qos_overriding_options=RELIABILITY_OVERRIDE)
        self.create_subscription(Odometry, 'odom',
                                 self._enqueue('odom', self.pipeline.on_odometry), qos,
                                 qos_overriding_options=RELIABILITY_OVERRIDE)

    def _range_handler(self, name: str) -> Callable[[Range], Outcome]:
        return lambda msg: self.pipeline.on_range(name, msg)

    def _enqueue(self, stream: str, handler: Callable[[Any], Outcome]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self._last_arrival[stream] = self.get_clock().now().nanoseconds
            if stream == CAMERA:
                self._camera_frame_id = msg.header.frame_id or self._camera_frame_id
            if not self._queue.put(stream, (handler, msg)):
                self._log_bad('queue_full', f'labeling queue full ({self._queue.capacity} '
                                            f'messages, no camera frame left to shed): dropped '
                                            f'a {stream} message; the worker is too slow')
        return callback

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        last_snapshot = time.monotonic()
        while True:
            item = self._queue.get(timeout=0.1)
            if item is None and self._queue.closed:
                break
            if item is not None:
                self._handle(*item)
            now = time.monotonic()
            if item is None or now - last_snapshot >= SNAPSHOT_PERIOD:
                self._worker_counters = self._collect_counters()
                last_snapshot = now
        self._worker_counters = self._collect_counters()

    def _handle(self, stream: str, work: tuple[Callable[[Any], Outcome], Any]) -> None:
        handler, msg = work
        self._busy_since = time.monotonic()
        try:
            outcome = handler(msg)
            results = self.pipeline.poll()
        except BadInput as error:
            self._log_bad(f'{stream}:{error.kind}',
                          f'ignored bad {stream} message ({error.kind}): {error.detail}')
            return
        except Exception as error:  # noqa: BLE001 - a bad message must not kill the node
            self._log_bad(f'{stream}:error', f'failed to process a {stream} message: '
                                             f'{type(error).__name__}: {error}')
            return
        finally:
            self._busy_since = None
        self._report(stream, outcome)
        self._report_gaps()
        for result in results:
            self._publish(result)

    def _report_gaps(self) -> None:
        labeler = self.pipeline.labeler
        gaps = labeler.counters.odometry_gaps
        if gaps == self._odometry_gaps or labeler.last_gap is None:
            return
        self._odometry_gaps = gaps
        start, end = labeler.last_gap
        seconds = (end - start) / 1e9
        self._log_bad('odometry_gap', (
            f'no odometry from {start / 1e9:.3f} s to {end / 1e9:.3f} s ({seconds:.2f} s, more '
            f'than max_odometry_gap {self.params.max_odometry_gap} s): frames and readings '
            'stamped in between are dropped, not labeled from guessed poses'))

    def _report(self, stream: str, outcome: Outcome) -> None:
        if outcome is Outcome.RESET:
            self.get_logger().warning(
                f'time jumped back by more than {self.params.time_jump_threshold} s on {stream} '
                '(bag restarted?): the frames of the run that ended are finished and published '
                'as at the end of a stream; labeling starts afresh')
        elif outcome is Outcome.LATE:
            self._log_bad(f'{stream}:late', f'ignored a {stream} message older than the '
                                            f'reorder window ({self.params.reorder_window} s)')
        elif outcome is Outcome.DUPLICATE:
            self._log_bad(f'{stream}:duplicate', f'ignored a duplicate {stream} stamp')
        elif outcome is Outcome.BAD_VALUE:
            self._log_bad(f'{stream}:bad_value', f'ignored a {stream} message with bad values')

    def _publish(self, result: Any) -> None:
        msg = labeled_frame_msg(result, self.params.sensor_names, self.params.distances,
                                self._camera_frame_id)
        self._publisher.publish(msg)
        self._published += 1

    # ------------------------------------------------------------------ status
    def _collect_counters(self) -> dict[str, Any]:
        """Copy the worker's counters (called by the worker, or before it starts)."""
        labeler = self.pipeline.labeler
        values: dict[str, Any] = dict(labeler.counters.as_dict())
        values.update({
            'published': self._published,
            'pending_frames': labeler.pending_frames,
            'waiting_items': labeler.waiting_items,
            'odometry_samples': labeler.odometry_samples,
        })
        for kind, count in sorted(self.pipeline.bad_inputs.copy().items()):
            values[f'bad_{kind}'] = count
        for kind, count in sorted(self.pipeline.rejected.copy().items()):
            values[f'rejected_{kind}'] = count
        values['bad_inputs'] = sum(self.pipeline.bad_inputs.values()) + values['bad_values']
        return values

    def status_values(self) -> dict[str, Any]:
        """
        Every counter of the node, as reported on ``/diagnostics``; never waits for the worker.

        The worker's counters are its latest copy (at most ``SNAPSHOT_PERIOD`` old while it
        works); ``worker_busy_s`` says how long it has been on its current message.
        """
        values = dict(self._worker_counters)
        busy_since = self._busy_since
        dropped = self._queue.dropped.copy()
        values.update({
            'queue_length': len(self._queue),
            'camera_shed': self._queue.camera_shed,
            'sensor_dropped': sum(dropped.values()),
            'queue_overflow': self._queue.camera_shed + sum(dropped.values()),
            'worker_busy_s': round(time.monotonic() - busy_since, 3) if busy_since else 0.0,
        })
        for stream, count in sorted(dropped.items()):
            values[f'dropped_{stream}'] = count
        return values

    def stale_streams(self) -> list[str]:
        """Streams with no message for longer than ``stale_timeout`` (or none ever)."""
        now = self.get_clock().now().nanoseconds
        limit = int(self._stale_timeout * 1e9)
        streams = ['camera', 'odom', *self.pipeline.proximity_streams]
        return [s for s in streams
                if s not in self._last_arrival or now - self._last_arrival[s] > limit]

    def _publish_status(self) -> None:
        values = self.status_values()
        stale = self.stale_streams()
        problems = [f'stale: {", ".join(stale)}'] if stale else []
        if values['bad_inputs']:
            problems.append(f'{values["bad_inputs"]} bad input(s) ignored')
        shed = values['camera_shed'] - self._camera_shed_reported
        if shed > 0:
            self._camera_shed_reported = values['camera_shed']
            problems.append(f'worker behind: shed {shed} camera frame(s) to keep odometry '
                            'and readings')
            self._log_bad('camera_shed', f'the labeling worker is behind: shed {shed} camera '
                                         'frame(s) since the last status, keeping every '
                                         'odometry sample and reading')
        if values['sensor_dropped']:
            problems.append(f'{values["sensor_dropped"]} odometry/proximity message(s) '
                            'dropped: queue full')
        if values['worker_busy_s'] > 1.0:
            problems.append(f'worker busy on one message for {values["worker_busy_s"]:.1f} s')
        array = diagnostic_array(
            self, 'labeling', {**values, 'stale': ','.join(stale)}, problems,
            f'{values["frames_labeled"]} labeled of {values["frames_in"]} frames')
        self._diagnostics.publish(array)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the worker thread; pending frames are reported, not published."""
        self._queue.close()
        self._worker.join(timeout=5.0)
        labeler = self.pipeline.labeler
        self.get_logger().info(
            f'stopping: {labeler.counters.frames_labeled} frames labeled, '
            f'{labeler.pending_frames} still pending (not published)')


def _sensor_qos(depth: int) -> QoSProfile:
    return QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                      reliability=qos_profile_sensor_data.reliability,
                      durability=qos_profile_sensor_data.durability)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle labeler``."""
    run_nodes([LabelerNode], args)


if __name__ == '__main__':
    main()
