#!/usr/bin/env python3
"""
Camera-to-prediction latency of the learner node while it trains, over DDS.

The learner node runs in this process, as ``ssl-obstacle run learner`` runs it. A driver
process (another node in another process, as a camera driver and a consumer of predictions
would be) publishes 320x240 rgb8 frames at 30 Hz stamped with the wall clock and labeled
frames at 10 Hz, and measures, for each ObstaclePrediction it receives, the time from the
frame's stamp to the prediction's arrival. Meanwhile the learner trains (uncapped by
default, batch 64). The measurement is repeated ``--repeat`` times (other people's jobs load
this machine at times): each run prints the load average, p50/p99/max latency, frames
predicted vs sent (the rest were replaced by newer frames: newest-only prediction),
training updates per second alongside, and resident memory of the learner's processes.

``--node relay`` puts a node that answers each camera frame at once, inside its callback,
with a constant prediction in the learner's place: the floor that DDS, rclpy and this
machine set before any learning code runs.

``--stages`` times every frame's way through the learner node: stamp -> DDS write -> DDS
receipt (rclpy's message info) -> camera callback -> prediction thread -> network -> published,
and prints each stage's p50 and p99 and its mean over the slowest 5 % of frames: where the
tail comes from.

Run: scripts/with_env.sh python benchmarks/bench_learner.py [--seconds 30] [--repeat 3]
     [--param trainer=thread] [--switch-interval 0.005] [--no-train] [--driver inprocess]
     [--node relay] [--stages]
(``SSL_OBSTACLE_DEV=1`` benchmarks the source tree instead of the install space.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.conversions import stamp_to_ns
from ssl_obstacle.io.learner_messages import prediction_msg
from ssl_obstacle.io.messages import labeled_frame_msg, rgb_to_image_msg, time_from_ns
from ssl_obstacle.nodes.labeler_node import LABELED_FRAMES_QOS
from ssl_obstacle_msgs.msg import LabeledFrame, ObstaclePrediction
from std_msgs.msg import Header
import yaml


def rss_mb(pid: int | str = 'self') -> float:
    """Return the resident memory of a process in MB (NaN if it is gone)."""
    try:
        with open(f'/proc/{pid}/status', encoding='ascii') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def child_pids(pid: int | None = None) -> list[int]:
    """Return the direct children of a process (the trainer process, if any)."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f'/proc/{pid}/task/{pid}/children', encoding='ascii') as children:
            return [int(p) for p in children.read().split()]
    except OSError:
        return []


def load_text() -> str:
    """Return the load averages as `uptime` prints them."""
    one, five, fifteen = os.getloadavg()
    return f'load {one:.2f} {five:.2f} {fifteen:.2f}'


class Driver(Node):
    """The camera, the labeler's output and a consumer of predictions, as another node."""

    def __init__(self, context: Context) -> None:
        super().__init__('bench_driver', context=context)
        self.camera = self.create_publisher(Image, 'camera/image_raw', 10)
        self.labeled = self.create_publisher(LabeledFrame, 'ssl/labeled_frames',
                                             LABELED_FRAMES_QOS)
        self.latencies: list[float] = []
        self.measuring = False
        self.predictions = self.create_subscription(ObstaclePrediction, 'ssl/predictions',
                                                    self._on_prediction, 100)
        rng = np.random.default_rng(0)
        self.frames = rng.integers(0, 255, size=(8, 240, 320, 3), dtype=np.uint8)
        self.small = rng.integers(0, 255, size=(64, 64, 80, 3), dtype=np.uint8)
        self.params = LabelParams()
        self.rng = rng
        self.sent = 0

    def _on_prediction(self, msg: ObstaclePrediction) -> None:
        received = time.time_ns()
        if self.measuring:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.latencies.append((received - stamp) / 1e6)

    def labeled_frame(self, index: int) -> LabeledFrame:
        """Return a labeled frame with 30 % positive cells, stamped now."""
        labels = np.where(self.rng.random((5, 31)) < 0.3, 1.0, 0.0).astype(np.float32)
        result = LabeledResult(stamp=time.time_ns(), pose=np.zeros(3),
                               payload=self.small[index % len(self.small)], labels=labels,
                               counts=np.ones((5, 31), np.uint8), reason='complete')
        return labeled_frame_msg(result, self.params.sensor_names, self.params.distances,
                                 'camera')

    def wait_for_learner(self, timeout: float = 20.0) -> None:
        """Wait until the learner subscribes and publishes (discovery), then settle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.camera.get_subscription_count()
                    and self.labeled.get_subscription_count()
                    and self.count_publishers('ssl/predictions')):
                break
            time.sleep(0.05)
        time.sleep(1.0)

    def prefill(self, count: int, rate: float = 300.0) -> None:
        """Send ``count`` labeled frames quickly, so training runs from the start."""
        for index in range(count):
            self.labeled.publish(self.labeled_frame(index))
            time.sleep(1.0 / rate)

    def stream(self, seconds: float, camera_hz: float = 30.0, labeled_every: int = 3,
               on_tick: Any = None) -> float:
        """Publish camera frames at ``camera_hz`` and every n-th as a labeled frame too."""
        start = time.monotonic()
        next_frame = start
        while time.monotonic() - start < seconds:
            header = Header(stamp=time_from_ns(time.time_ns()), frame_id='camera_link')
            self.camera.publish(rgb_to_image_msg(self.frames[self.sent % 8], header))
            if labeled_every and self.sent % labeled_every == 0:
                self.labeled.publish(self.labeled_frame(self.sent))
            self.sent += 1
            if on_tick is not None:
                on_tick()
            next_frame += 1.0 / camera_hz
            time.sleep(max(0.0, next_frame - time.monotonic()))
        return time.monotonic() - start


class Relay(Node):
    """
    The latency floor: a constant prediction published from the camera callback itself.

    Subscribes and publishes like the learner (same topics and QoS) but does no work, so
    what it measures is the camera driver's publish, DDS both ways and rclpy's executor on
    this machine at this moment.
    """

    def __init__(self, context: Context) -> None:
        super().__init__('bench_relay', context=context)
        self.params = LabelParams()
        self.probabilities = np.full((len(self.params.sensor_names),
                                      len(self.params.distances)), 0.5, np.float32)
        self.publisher = self.create_publisher(ObstaclePrediction, 'ssl/predictions', 10)
        self.create_subscription(Image, 'camera/image_raw', self._on_camera,
                                 qos_profile_sensor_data)
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', lambda _msg: None,
                                 LABELED_FRAMES_QOS)

    def _on_camera(self, msg: Image) -> None:
        self.publisher.publish(prediction_msg(msg.header, self.params.sensor_names,
                                              self.params.distances, self.probabilities, 0))


class GcPauses:
    """Collect the duration of every garbage collection of this process, by generation."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: list[tuple[int, float]] = []
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == 'start':
            self.started = time.perf_counter()
        elif self.started is not None:
            self.pauses.append((info['generation'], (time.perf_counter() - self.started) * 1e3))

    def report(self) -> str:
        """Return counts and the longest pause per generation since the last report."""
        parts = []
        for generation in range(3):
            times = [ms for g, ms in self.pauses if g == generation]
            if times:
                parts.append(f'gen{generation} {len(times)}x max {max(times):.1f} ms')
        self.pauses.clear()
        return ', '.join(parts) or 'none'


class StageTimer:
    """Record when each camera frame passes each stage of a learner node (``--stages``)."""

    STAGES = ('stamp -> DDS write', 'DDS write -> receipt', 'receipt -> callback',
              'callback -> thread', 'resize', 'network', 'publish')

    def __init__(self, node: Any) -> None:
        if not hasattr(Subscription, 'CallbackType'):
            # Callbacks that take the message info came with Iron (docs/rclpy_compatibility.md).
            raise SystemExit('--stages needs rclpy 4 (Iron) or newer: Humble passes no '
                             'message info to callbacks')
        self.frames: dict[int, dict[str, int]] = {}
        camera = next(sub for sub in node.subscriptions if sub.topic_name.endswith('image_raw'))
        on_camera, predict = camera.callback, node._predict
        predict_with_snapshot = node.learner.predict_with_snapshot

        def timed_camera(msg: Any, info: Any) -> None:  # two arguments: rclpy adds the info
            self.frames[stamp_to_ns(msg.header.stamp)] = {
                'write': info['source_timestamp'], 'receipt': info['received_timestamp'],
                'callback': time.time_ns()}
            on_camera(msg)

        def timed_predict(msg: Any) -> None:
            marks = self.frames.get(stamp_to_ns(msg.header.stamp), {})
            marks['thread'] = time.time_ns()
            self._network = {}  # a frame that fails before the network reports none
            predict(msg)
            marks['published'] = time.time_ns()
            marks.update(self._network)

        def timed_network(images: Any) -> Any:
            if threading.current_thread().name != 'predictor':
                return predict_with_snapshot(images)
            start = time.time_ns()
            result = predict_with_snapshot(images)
            self._network = {'network': start, 'network_end': time.time_ns()}
            return result

        self._network: dict[str, int] = {}
        camera.callback = timed_camera
        node._predict = timed_predict
        node.learner.predict_with_snapshot = timed_network

    def report(self) -> str:
        """Return per-stage p50 / p99 / mean over the slowest 5 % of frames (ms), then reset."""
        keys = ('write', 'receipt', 'callback', 'thread', 'network', 'network_end', 'published')
        rows = np.array([[stamp] + [marks[k] for k in keys]
                         for stamp, marks in self.frames.items()
                         if all(k in marks for k in keys)], dtype=np.float64)
        self.frames.clear()
        if not len(rows):
            return 'no frame timed'
        stages = np.diff(rows, axis=1) / 1e6
        total = (rows[:, -1] - rows[:, 0]) / 1e6
        slowest = total >= np.percentile(total, 95)
        lines = [f'       node side: stamp -> published p50 {np.percentile(total, 50):.1f} '
                 f'p99 {np.percentile(total, 99):.1f} ms over {len(rows)} frames']
        for index, name in enumerate(self.STAGES):
            column = stages[:, index]
            lines.append(f'       {name:22s} p50 {np.percentile(column, 50):5.2f}  p99 '
                         f'{np.percentile(column, 99):5.2f}  slowest 5 %: '
                         f'{column[slowest].mean():5.2f} ms')
        return '\n'.join(lines)


def progress(node: Node) -> tuple[int, int]:
    """Return (training updates, stale frames replaced) so far; zero for the relay."""
    if isinstance(node, Relay):
        return 0, 0
    return node.learner.updates, node.counters['stale_dropped']


def summarise(latencies: list[float], sent: int) -> dict[str, Any]:
    """Return latency percentiles (ms) and counts."""
    values = np.asarray(latencies, dtype=np.float64)
    if not values.size:
        return {'predictions': 0, 'sent': sent}
    return {'p50': float(np.percentile(values, 50)), 'p90': float(np.percentile(values, 90)),
            'p99': float(np.percentile(values, 99)), 'max': float(values.max()),
            'predictions': int(values.size), 'sent': sent}


def run_driver(args: argparse.Namespace) -> None:
    """Run the driver side in this process; report on stdout (start, end, JSON result)."""
    context = Context()
    rclpy.init(context=context)
    driver = Driver(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(driver)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    driver.wait_for_learner()
    driver.prefill(args.prefill)
    time.sleep(args.warmup)
    driver.measuring = True
    print('start', flush=True)
    driver.stream(args.seconds, args.camera_hz)
    print('end', flush=True)
    time.sleep(0.5)  # predictions of the last frames
    driver.measuring = False
    print(json.dumps(summarise(driver.latencies, driver.sent)), flush=True)
    executor.shutdown()
    spin.join()
    driver.destroy_node()
    rclpy.shutdown(context=context)


def learner_overrides(args: argparse.Namespace) -> list[Parameter]:
    """Return the learner's parameters for the benchmark (``--param`` wins)."""
    values: dict[str, Any] = {'max_updates_per_second': 0.0, 'publish_overlay': False,
                              'publish_markers': False, 'batch_size': 64}
    for item in args.param:
        name, _, text = item.partition('=')
        values[name] = yaml.safe_load(text)
    return [Parameter(name, value=value) for name, value in values.items()]


def learner_rss() -> float:
    """Return the resident memory of this process and its children (a trainer process)."""
    return rss_mb() + sum(rss_mb(pid) for pid in child_pids())


def measure_with_process(args: argparse.Namespace, learner: Any) -> dict[str, Any]:
    """Run one measurement with the driver in a separate process."""
    command = [sys.executable, os.path.abspath(__file__), '--role', 'driver',
               '--seconds', str(args.seconds), '--prefill', str(args.prefill),
               '--warmup', str(args.warmup), '--camera-hz', str(args.camera_hz)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    marks: dict[str, tuple[float, int, int]] = {}
    result: dict[str, Any] = {}
    assert process.stdout is not None
    for line in process.stdout:
        line = line.strip()
        if line in ('start', 'end'):
            marks[line] = (time.monotonic(), *progress(learner))
        elif line.startswith('{'):
            result = json.loads(line)
    process.wait(timeout=30)
    elapsed = marks['end'][0] - marks['start'][0]
    result['updates_per_second'] = (marks['end'][1] - marks['start'][1]) / elapsed
    result['stale'] = marks['end'][2] - marks['start'][2]
    return result


def measure_in_process(args: argparse.Namespace, learner: Any, context: Context,
                       driver: Driver) -> dict[str, Any]:
    """Run one measurement with the driver node in this process (the old set-up)."""
    driver.wait_for_learner()
    driver.prefill(args.prefill)
    time.sleep(args.warmup)
    driver.latencies.clear()
    sent0, driver.sent = driver.sent, 0
    updates0, stale0 = progress(learner)
    driver.measuring = True
    elapsed = driver.stream(args.seconds, args.camera_hz)
    updates = progress(learner)[0] - updates0
    time.sleep(0.5)
    driver.measuring = False
    result = summarise(driver.latencies, driver.sent)
    driver.sent += sent0
    result['updates_per_second'] = updates / elapsed
    result['stale'] = progress(learner)[1] - stale0
    return result


def main() -> None:
    """Parse arguments; run the driver role or the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=30.0, help='per measurement')
    parser.add_argument('--repeat', type=int, default=3, help='measurements in a row')
    parser.add_argument('--camera-hz', type=float, default=30.0)
    parser.add_argument('--prefill', type=int, default=200,
                        help='labeled frames sent before measuring')
    parser.add_argument('--warmup', type=float, default=3.0, help='seconds after prefill')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='learner node parameter (YAML value), repeatable')
    parser.add_argument('--switch-interval', type=float, default=None,
                        help='sys.setswitchinterval for this process (default: leave it)')
    parser.add_argument('--no-train', action='store_true',
                        help='pause training: the latency floor')
    parser.add_argument('--driver', choices=('process', 'inprocess'), default='process')
    parser.add_argument('--gc-report', action='store_true',
                        help="report the learner process's garbage-collection pauses")
    parser.add_argument('--node', choices=('learner', 'relay'), default='learner',
                        help='relay: no learner, the transport floor')
    parser.add_argument('--stages', action='store_true',
                        help="time each stage of every frame's way through the learner")
    parser.add_argument('--role', choices=('bench', 'driver'), default='bench',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == 'driver':
        run_driver(args)
        return

    from ssl_obstacle.nodes.learner_node import LearnerNode

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    context = Context()
    rclpy.init(context=context)
    if args.node == 'relay':
        learner: Any = Relay(context)
    else:
        learner = LearnerNode(context=context, parameter_overrides=learner_overrides(args))
        if args.no_train:
            learner.learner.pause()
    stages = StageTimer(learner) if args.stages and args.node == 'learner' else None
    nodes: list[Node] = [learner]
    driver = None
    if args.driver == 'inprocess':
        driver = Driver(context)
        nodes.append(driver)
    executors = []
    for node in nodes:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        executors.append(executor)
    settings = ', '.join(args.param) or 'defaults'
    if args.node == 'relay':
        settings = 'none, a relay answers each frame in its callback'
    print(f'{os.cpu_count()} cores; learner: {settings}; switch interval '
          f'{sys.getswitchinterval() * 1000:g} ms; training '
          f'{"paused" if args.no_train else "on"}; driver {args.driver}; camera '
          f'{args.camera_hz:g} Hz 320x240 rgb8, labeled frames at {args.camera_hz / 3:g} Hz, '
          f'{args.seconds:g} s per run', flush=True)
    pauses = GcPauses() if args.gc_report else None
    results = []
    try:
        for run in range(args.repeat):
            before = load_text()
            if driver is None:
                result = measure_with_process(args, learner)
            else:
                result = measure_in_process(args, learner, context, driver)
            results.append(result)
            p50, p90, p99, worst = (result.get(key, float('nan'))
                                    for key in ('p50', 'p90', 'p99', 'max'))
            print(f'run {run + 1}: {before} | latency p50 {p50:.1f} p90 {p90:.1f} p99 {p99:.1f} '
                  f'max {worst:.1f} ms | {result["predictions"]}/{result["sent"]} predicted, '
                  f'{result["stale"]} replaced | {result["updates_per_second"]:.1f} updates/s | '
                  f'rss {learner_rss():.0f} MB', flush=True)
            if pauses is not None:
                print(f'       gc: {pauses.report()}', flush=True)
            if stages is not None:
                print(stages.report(), flush=True)
    finally:
        for executor in executors:
            executor.shutdown()
        if not isinstance(learner, Relay):
            learner.close()
        learner.destroy_node()
        if driver is not None:
            driver.destroy_node()
        rclpy.shutdown(context=context)
    if results:
        p50 = [r['p50'] for r in results if 'p50' in r]
        p99 = [r['p99'] for r in results if 'p99' in r]
        rates = [r['updates_per_second'] for r in results]
        print(f'summary over {len(results)} runs: p50 median {np.median(p50):.1f} ms, p99 median '
              f'{np.median(p99):.1f} ms (worst {max(p99):.1f}), training '
              f'{np.median(rates):.1f} updates/s; after: {load_text()}')


if __name__ == '__main__':
    main()
