"""
``ssl-obstacle replay``: the schedule without ROS, then real bags replayed over real DDS.

The DDS tests record simulator bags with the project's own recorder, replay them with the
command (a subprocess, as a user runs it) and listen with real rclpy nodes: the labeler,
fed by the replay, must publish the labels ``export`` computes from the same bag.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg, get_typestore, Stores
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Range
from ssl_obstacle.commands.export import export_bag
from ssl_obstacle.commands.record import record
from ssl_obstacle.commands.replay import add_arguments, run
from ssl_obstacle.core.dataset import read_dataset
from ssl_obstacle.io.bag_player import (bag_connections, GLOBAL_TOPICS, loop_period,
                                        output_topic, parse_rate, parse_remap, passes,
                                        plan_topics, play, PlayMessage, read_pass, resolve,
                                        schedule, Timeline)
from ssl_obstacle.io.bags import BagReader, messages_from_events, write_bag
from ssl_obstacle.io.messages import labeled_frame_arrays
from ssl_obstacle.nodes.labeler_node import LabelerNode
from ssl_obstacle.sim.scripted_run import generate_run
from ssl_obstacle_msgs.msg import LabeledFrame

NS = 1_000_000_000
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


# ---------------------------------------------------------------------- names and topics
def test_namespace_prefixes_recorded_topics_but_not_global_ones():
    assert output_topic('/camera/image_raw', 'thymio10') == '/thymio10/camera/image_raw'
    assert output_topic('/camera/image_raw', '/thymio10/') == '/thymio10/camera/image_raw'
    assert output_topic('/camera/image_raw', '') == '/camera/image_raw'
    for topic in GLOBAL_TOPICS:
        assert output_topic(topic, 'thymio10') == topic
    assert output_topic('/a/tf', 'r') == '/r/a/tf'  # only the exact global names stay


def test_remap_rules_follow_ros_resolution_after_the_namespace():
    # Without a namespace: ros2 bag play --remap (relative names resolve from the root).
    assert output_topic('/odom', '', [parse_remap('odom:=odometry')]) == '/odometry'
    assert output_topic('/odom', '', [parse_remap('/odom:=/robot/odom')]) == '/robot/odom'
    # With one: relative FROM and TO resolve under it, absolute ones are taken as they are.
    assert output_topic('/odom', 'r1', [parse_remap('odom:=odometry')]) == '/r1/odometry'
    assert output_topic('/odom', 'r1', [parse_remap('/r1/odom:=/odom')]) == '/odom'
    assert output_topic('/odom', 'r1', [parse_remap('/odom:=/x')]) == '/r1/odom'  # no match
    assert output_topic('/tf', 'r1', [parse_remap('/tf:=tf')]) == '/r1/tf'
    # First matching rule wins; rules never chain.
    rules = [parse_remap('a:=b'), parse_remap('a:=c'), parse_remap('b:=d')]
    assert output_topic('/a', '', rules) == '/b'


@pytest.mark.parametrize('rule', ['odom', 'odom:=', ':=x', 'a:=b:=c', 'a b:=c', '~/a:=b',
                                  'a//b:=c', '1a:=b'])
def test_bad_remap_rules_are_refused(rule):
    with pytest.raises(ValueError):
        parse_remap(rule)


def test_resolve():
    assert resolve('a/b') == '/a/b'
    assert resolve('a/b', 'ns') == '/ns/a/b'
    assert resolve('/a/b', 'ns') == '/a/b'


def test_plan_selects_renames_and_leaves_clock_to_the_player():
    connections = [('/odom', 'nav_msgs/msg/Odometry', 10),
                   ('/clock', 'rosgraph_msgs/msg/Clock', 5),
                   ('/proximity/left', 'sensor_msgs/msg/Range', 7),
                   ('/proximity/left', 'sensor_msgs/msg/Range', 3)]  # split connection
    plans = plan_topics(connections, namespace='r', remaps=[parse_remap('odom:=o')])
    assert {(p.bag_topic, p.topic) for p in plans} == {
        ('/odom', '/r/o'), ('/clock', '/clock'), ('/proximity/left', '/r/proximity/left')}
    assert next(p for p in plans if p.bag_topic == '/proximity/left').messages == 10
    with_clock = plan_topics(connections, clock=True)
    assert '/clock' not in {p.topic for p in with_clock}
    selected = plan_topics(connections, topics=['odom', '/clock'])
    assert {p.bag_topic for p in selected} == {'/odom', '/clock'}
    with pytest.raises(ValueError, match=r'not in the bag: /nope\. The bag has: /clock'):
        plan_topics(connections, topics=['/nope'])
    with pytest.raises(ValueError, match='both be published on /odom'):
        plan_topics(connections, remaps=[parse_remap('/proximity/left:=/odom')])


# ---------------------------------------------------------------------- time
def test_rate_parsing():
    assert parse_rate('2') == 2.0
    assert parse_rate('0.5') == 0.5
    assert parse_rate('max') == math.inf
    assert parse_rate('0') == math.inf
    for bad in ('-1', 'fast', 'nan'):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_timeline_scales_by_the_rate_and_repeats_bag_times_in_a_loop():
    origin = 7 * NS
    assert Timeline(origin, 1.0).due(origin + 3 * NS) == pytest.approx(3.0)
    assert Timeline(origin, 2.0).due(origin + 3 * NS) == pytest.approx(1.5)
    assert Timeline(origin, 0.5).due(origin + 3 * NS) == pytest.approx(6.0)
    assert Timeline(origin, math.inf).due(origin + 3 * NS) == 0.0
    looped = Timeline(origin, 2.0, period=4 * NS)
    assert looped.due(origin + 1 * NS, 2) == pytest.approx((1 + 2 * 4) / 2)
    assert looped.bag_time_at(0.0) == (0, origin)
    assert looped.bag_time_at(1.0) == (0, origin + 2 * NS)
    assert looped.bag_time_at(2.5) == (1, origin + 1 * NS)  # 5 s of bag time: second pass


def test_loop_period_adds_one_mean_interval():
    assert loop_period(0, 10 * NS, 11) == 11 * NS
    assert loop_period(5, 5, 1) == 1_000_000  # a single instant still takes some time


def message(bag_time: int, topic: str = '/odom') -> PlayMessage:
    return PlayMessage(topic, 'nav_msgs/msg/Odometry', b'', bag_time)


def test_schedule_numbers_passes_and_offsets_them_by_the_period():
    bag = [message(10 * NS), message(11 * NS), message(13 * NS)]
    timeline = Timeline(10 * NS, 2.0, period=loop_period(10 * NS, 13 * NS, 3))
    got = list(schedule([bag, bag, bag], timeline))
    assert [s.pass_index for s in got] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [s.due for s in got] == pytest.approx(
        [0.0, 0.5, 1.5, 2.25, 2.75, 3.75, 4.5, 5.0, 6.0])  # period: 3 s + mean gap 1.5 s
    looping = passes(lambda: iter(bag), loop=True)
    assert [m for _, m in zip(range(7), (m for p in looping for m in p))] == (bag * 3)[:7]
    assert len([m for p in passes(lambda: iter(bag), loop=False) for m in p]) == 3


def test_looping_over_an_empty_selection_ends():
    assert list(schedule(passes(lambda: iter([]), loop=True), Timeline(0))) == []


class FakeTime:
    """A monotonic clock whose sleeps overshoot, as a loaded machine's do."""

    def __init__(self, seed: int = 0, overshoot: float = 0.004, stall_every: int = 97,
                 stall: float = 0.05) -> None:
        self.t = 100.0
        self.random = random.Random(seed)
        self.overshoot, self.stall_every, self.stall = overshoot, stall_every, stall
        self.sleeps = 0
        self.log: list[tuple[str, float, int]] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        extra = self.random.uniform(0.0, self.overshoot)
        if self.sleeps % self.stall_every == 0:
            extra += self.stall
        self.t += max(0.0, seconds) + extra

    def publish(self, msg: PlayMessage) -> None:
        self.t += 0.0002  # publishing takes time too
        self.log.append(('msg', self.t, msg.bag_time))

    def clock(self, stamp: int) -> None:
        self.log.append(('clock', self.t, stamp))


def odometry_run(seconds: float, hz: float = 20.0, origin: int = 50 * NS) -> list[PlayMessage]:
    return [message(origin + int(i * NS / hz)) for i in range(int(seconds * hz))]


@pytest.mark.parametrize('rate', [1.0, 2.5])
def test_play_keeps_the_schedule_without_drift(rate):
    bag = odometry_run(60.0)
    fake = FakeTime()
    timeline = Timeline(bag[0].bag_time, rate)
    stats = play(schedule([bag], timeline), timeline, publish=fake.publish, now=fake.now,
                 sleep=fake.sleep)
    start = 100.0
    lags = [t - start - timeline.due(stamp) for kind, t, stamp in fake.log]
    assert min(lags) >= 0.0  # never early
    # Sleeping message by message would be late by the sum of 1200 overshoots (~2.4 s);
    # scheduling against the start keeps every message within one overshoot (+ a stall).
    assert max(lags) < 0.06
    assert sum(lags[-100:]) / 100 < 0.01
    assert stats.messages == len(bag)
    assert stats.achieved_rate == pytest.approx(rate, rel=0.01)


def test_clock_ticks_while_waiting_and_is_never_behind_the_data():
    bag = odometry_run(5.0, hz=2.0)  # 0.5 s gaps: several 40 Hz ticks in between
    fake = FakeTime(overshoot=0.002, stall_every=10**9)
    timeline = Timeline(bag[0].bag_time, 1.0)
    play(schedule([bag], timeline), timeline, publish=fake.publish, publish_clock=fake.clock,
         clock_hz=40.0, now=fake.now, sleep=fake.sleep)
    clocks = [(t, stamp) for kind, t, stamp in fake.log if kind == 'clock']
    assert clocks[0][1] == bag[0].bag_time  # the clock starts at the bag's start
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(clocks))  # monotonic
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(clocks)]
    assert max(gaps) < 1 / 40 + 0.005  # 40 Hz in wall time
    assert len(clocks) >= 40 * 4.5
    last_clock = None
    upcoming = iter(m.bag_time for m in bag)
    next_message = next(upcoming)
    for kind, _, stamp in fake.log:
        if kind == 'clock':
            assert stamp <= next_message  # the clock never runs ahead of unsent data
            last_clock = stamp
        else:
            assert last_clock is not None and last_clock >= stamp  # data never ahead of it
            next_message = next(upcoming, math.inf)


def test_clock_jumps_back_at_each_pass_of_a_loop():
    bag = odometry_run(2.0, hz=5.0)
    fake = FakeTime(overshoot=0.001, stall_every=10**9)
    timeline = Timeline(bag[0].bag_time, 4.0,
                        period=loop_period(bag[0].bag_time, bag[-1].bag_time, len(bag)))
    stats = play(schedule([bag, bag, bag], timeline), timeline, publish=fake.publish,
                 publish_clock=fake.clock, now=fake.now, sleep=fake.sleep)
    clocks = [stamp for kind, _, stamp in fake.log if kind == 'clock']
    backwards = [i for i, (a, b) in enumerate(itertools.pairwise(clocks)) if b < a]
    assert len(backwards) == 2
    assert all(clocks[i + 1] == bag[0].bag_time for i in backwards)
    assert stats.passes == 3 and stats.messages == 3 * len(bag)


def test_rate_max_never_waits_and_stop_is_honoured():
    bag = odometry_run(30.0)
    fake = FakeTime()
    timeline = Timeline(bag[0].bag_time, math.inf)
    stats = play(schedule([bag], timeline), timeline, publish=fake.publish,
                 publish_clock=fake.clock, now=fake.now, sleep=fake.sleep)
    assert fake.sleeps == 0 and stats.messages == len(bag)
    assert stats.clock_messages == len(bag)  # one before each (newer) message
    stopped = play(schedule([bag], timeline), timeline, publish=fake.publish, now=fake.now,
                   sleep=fake.sleep, should_stop=lambda: len(fake.log) >= 2 * len(bag) + 10)
    assert stopped.messages == 10


# ---------------------------------------------------------------------- reading real bags
@functools.cache
def recorded_bag(directory: str, storage: str, seconds: float, namespace: str = '',
                 camera=(160, 120)) -> pathlib.Path:
    """Record a simulator bag once per test session (the recorder is deterministic)."""
    path = pathlib.Path(directory) / f'{storage}-{seconds:g}-{namespace or "root"}'
    if not path.exists():
        record(path, seconds / 60, 'boxes', 4, storage, namespace=namespace,
               camera_size=camera, progress=False)
    return path


@pytest.fixture(scope='module')
def bag_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp('bags'))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_read_pass_yields_the_recorded_bytes_in_bag_order(bag_dir, storage):
    path = recorded_bag(bag_dir, storage, 4.0)
    with BagReader(path) as bag:
        plans = plan_topics(bag_connections(bag), namespace='n', topics=['/odom', '/clock'],
                            clock=True)
        got = list(read_pass(bag, plans))
    with Reader(path) as reader:
        expected = [(c.topic, t, bytes(d)) for c, t, d in reader.messages()
                    if c.topic == '/odom']
    assert [(m.topic, m.bag_time, m.data) for m in got] == [
        ('/n/odom', t, d) for _, t, d in expected]
    assert all(type(m.data) is bytes for m in got)


# ---------------------------------------------------------------------- over DDS
def replay_command(*argv: str) -> list[str]:
    return [sys.executable, '-m', 'ssl_obstacle.commands.replay', *argv]


class Listener(Node):
    """Collects what the replay and the labeler publish."""

    def __init__(self, context, topics: dict[str, type] | None = None) -> None:
        super().__init__('replay_listener', context=context)
        self.clock: list[tuple[float, int]] = []  # (wall arrival, stamp ns)
        self.frames: list[LabeledFrame] = []
        self.received: dict[str, list[tuple[float, object]]] = {}
        self.create_subscription(Clock, '/clock', self._on_clock, RELIABLE)
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self.frames.append,
                                 RELIABLE)
        for topic, cls in (topics or {}).items():
            self.received[topic] = []
            self.create_subscription(cls, topic, functools.partial(self._on, topic), RELIABLE)

    def _on_clock(self, msg: Clock) -> None:
        self.clock.append((time.monotonic(), msg.clock.sec * NS + msg.clock.nanosec))

    def _on(self, topic: str, msg: object) -> None:
        self.received[topic].append((time.monotonic(), msg))


def compare_with_export(frames: list[LabeledFrame], data: dict) -> tuple[int, int, int, int]:
    """Return (matched frames, cells known in either, cells that agree, labeler frames)."""
    by_stamp = {int(s): i for i, s in enumerate(data['stamps'])}
    matched = known = agree = 0
    for msg in frames:
        got = labeled_frame_arrays(msg)
        index = by_stamp.get(got['stamp'])
        if index is None:
            continue
        matched += 1
        theirs_known = data['counts'][index] > 0
        ours_known = got['counts'] > 0
        either = theirs_known | ours_known
        same = (theirs_known == ours_known) & (
            np.abs(np.nan_to_num(got['labels'] - data['labels'][index], nan=1.0)) < 1e-6)
        known += int(either.sum())
        agree += int((same & either).sum())
    return matched, known, agree, len(frames)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_labeler_fed_by_replay_publishes_the_labels_export_computes(bag_dir, tmp_path,
                                                                    storage):
    bag = recorded_bag(bag_dir, storage, 20.0)
    report = export_bag(bag, tmp_path / 'data.h5')
    data = read_dataset(tmp_path / 'data.h5', images=False)
    assert report.frames_written > 100
    with ros_context() as context:
        # Best-effort sensor subscriptions: a deep history for the camera too (as
        # config/replay.yaml has it) keeps a loaded test machine from dropping a burst.
        labeler = LabelerNode(context=context, parameter_overrides=[
            Parameter('use_sim_time', value=True), Parameter('sensor_qos_depth', value=100),
            Parameter('camera_qos_depth', value=50), Parameter('camera_queue_size', value=50)])
        listener = Listener(context)
        with spinning(context, labeler, listener):
            # --wait-for: DDS discovery takes up to 3 s here; start when the labeler is seen
            # (and give the labeler's side a second to see the player too).
            done = subprocess.run(replay_command(
                str(bag), '--clock', '--wait-for', 'camera/image_raw', 'odom',
                *(f'proximity/{name}' for name in labeler.params.sensor_names), '--delay', '1'),
                capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            time.sleep(1.0)  # the labeler's last frames, in flight
            time_source_now = labeler.get_clock().now().nanoseconds
        labeler.close()
        counters = labeler.pipeline.labeler.counters.as_dict()
        pending = labeler.pipeline.labeler.pending_frames
        labeler.destroy_node()
        listener.destroy_node()
    assert 'played' in done.stdout and '/clock messages' in done.stdout
    # /clock: published from the bag's time, monotonic, and followed by the labeler.
    stamps = [stamp for _, stamp in listener.clock]
    with Reader(bag) as reader:
        first, last = reader.start_time, reader.end_time - 1
    assert len(stamps) > 20 * 40 * 0.9
    assert all(b >= a for a, b in itertools.pairwise(stamps))
    assert first <= stamps[0] and stamps[-1] <= last
    assert stamps[-1] >= last - NS // 10
    assert first <= time_source_now <= last  # use_sim_time: the node's clock is bag time
    matched, known, agree, received = compare_with_export(listener.frames, data)
    print(f'{storage}: labeler {received} frames, export {report.frames_written}, '
          f'matched {matched}, cells {agree}/{known} agree; frames in {counters["frames_in"]}, '
          f'readings in {counters["readings_in"]}, odometry in {counters["odometry_in"]}')
    # Every camera frame of the bag reached the labeler (a few may be lost to discovery).
    assert counters['frames_in'] >= 0.98 * report.counters['frames_in']
    # The live labeler never flushes: frames of the last seconds stay pending; the others
    # are the exported ones, with the same labels.
    assert received + pending >= 0.95 * report.frames_written
    assert received >= 0.5 * report.frames_written
    assert matched >= 0.99 * received
    assert agree >= 0.99 * known


def test_rate_namespace_remap_loop_and_ctrl_c(bag_dir):
    bag = recorded_bag(bag_dir, 'mcap', 4.0)
    with Reader(bag) as reader:
        span = (reader.end_time - 1 - reader.start_time) / NS
    topics = {'/r7/odometry': Odometry, '/r7/proximity/left': Range, '/odom': Odometry}
    with ros_context() as context:
        listener = Listener(context, topics)
        with spinning(context, listener):
            process = subprocess.Popen(
                replay_command(str(bag), '--rate', '4', '--loop', '--clock', '--namespace',
                               'r7', '--remap', 'odom:=odometry', '/tf:=tf',
                               '--topics', 'odom', 'proximity/left', '/tf',
                               '--wait-for', 'odometry', '--delay', '1'),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                # Two jumps back: the second pass was played whole (a 4 s bag at rate 4
                # takes about a second per pass).
                assert wait_for(lambda: sum(
                    1 for a, b in itertools.pairwise(listener.clock) if b[1] < a[1]) >= 2,
                    timeout=60.0), 'the clock did not jump back twice (loop)'
                publishers = {topic: listener.count_publishers(topic) for topic in (
                    '/r7/odometry', '/r7/proximity/left', '/r7/tf', '/odom', '/r7/odom', '/tf',
                    '/r7/camera/image_raw', '/clock')}
            finally:
                process.send_signal(signal.SIGINT)
                try:
                    out, err = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:  # never leave a looping player behind
                    process.kill()
                    raise
        listener.destroy_node()
    assert process.returncode == 130, err
    assert 'interrupted after playing' in out and 'passes' in out
    assert 'Traceback' not in err
    assert publishers == {'/r7/odometry': 1, '/r7/proximity/left': 1, '/r7/tf': 1, '/odom': 0,
                          '/r7/odom': 0, '/tf': 0, '/clock': 1,
                          '/r7/camera/image_raw': 0}  # not selected
    assert not listener.received['/odom']
    odometry = listener.received['/r7/odometry']
    assert len(odometry) > 2 * 20 * span * 0.9  # the first two passes, whole
    assert odometry[0][1].header.frame_id == 'odom'  # the recorded bytes, typed
    # Rate: bag time advances about four times as fast as wall time within one pass.
    stamps = [msg.header.stamp.sec * NS + msg.header.stamp.nanosec for _, msg in odometry]
    jump = next(i for i, (a, b) in enumerate(itertools.pairwise(stamps)) if b < a) + 1
    second = odometry[jump:]
    restart = next((i for i, (a, b) in enumerate(itertools.pairwise(stamps[jump:]))
                    if b < a), len(second) - 1)
    wall = second[restart][0] - second[0][0]
    bag_span = (stamps[jump + restart] - stamps[jump]) / NS
    assert bag_span > 0.9 * span
    assert wall < 0.6 * bag_span  # rate 4: about a quarter (1.0 would be real time)
    assert wall > 0.2 * bag_span  # …and paced, not as fast as possible


# ---------------------------------------------------------------------- unknown types
THING = 'replay_test_msgs/msg/Thing'


def bag_with_an_unknown_type(path: pathlib.Path) -> None:
    """Write odometry and a topic of a type no ROS package here provides."""
    store = get_typestore(Stores.ROS2_JAZZY)  # a fresh store: the shared one stays clean
    store.register(get_types_from_msg('int32 value', THING))
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        odom = writer.add_connection('/odom', 'nav_msgs/msg/Odometry', typestore=store)
        thing = writer.add_connection('/thing', THING, typestore=store)
        for msg in messages_from_events(generate_run(2.0, 0, image_shape=(24, 32))):
            if msg.topic == '/odom':
                writer.write(odom, msg.stamp, store.serialize_cdr(msg.message, msg.msgtype))
                writer.write(thing, msg.stamp,
                             store.serialize_cdr(store.types[THING](value=7), THING))


def test_topics_of_unknown_types_are_skipped_with_one_warning(tmp_path):
    bag = tmp_path / 'bag'
    bag_with_an_unknown_type(bag)
    done = subprocess.run(replay_command(str(bag), '--rate', 'max', '--delay', '0'),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if '/thing' in line]
    assert len(warnings) == 1 and THING in warnings[0] and 'not installed' in warnings[0]
    assert 'messages of 1 topics' in done.stdout and '/thing' in done.stdout


# ---------------------------------------------------------------------- bad bags and options
def replay_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def check_failure(capsys, *argv: str, words=()) -> str:
    code = replay_cli(*argv, '--no-progress', '--delay', '0')
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    for word in words:
        assert word in lines[0]
    return lines[0]


def scripted_bag(path: pathlib.Path, storage: str) -> pathlib.Path:
    write_bag(path, messages_from_events(generate_run(10.0, 0, image_shape=(48, 64))),
              storage)
    return path


def test_missing_and_corrupt_bags_fail_with_one_line(tmp_path, capsys):
    check_failure(capsys, str(tmp_path / 'nope'), words=['does not exist'])
    bag = scripted_bag(tmp_path / 'm', 'mcap')
    path = bag / 'm.mcap'
    os.truncate(path, path.stat().st_size // 2)
    check_failure(capsys, str(bag), words=['cannot open bag', 'truncated or corrupt'])
    bag = scripted_bag(tmp_path / 's', 'sqlite3')
    path = bag / 's.db3'
    path.write_bytes(b'this is not a database' * 1000)
    check_failure(capsys, str(bag), words=['cannot open bag', 'not a database'])
    bag = scripted_bag(tmp_path / 'nometa', 'sqlite3')
    (bag / 'metadata.yaml').unlink()
    check_failure(capsys, str(bag), words=['metadata.yaml'])


def test_corruption_found_while_playing_fails_with_one_line(tmp_path, capsys):
    bag = scripted_bag(tmp_path / 'bag', 'mcap')
    path = bag / 'bag.mcap'
    data = bytearray(path.read_bytes())
    record_at = data.find(b'\x05\x00\x00\x00odom\x00', len(data) // 2) - 12 - 31
    assert data[record_at] == 0x05  # an odometry record in the second half (see export test)
    data[record_at + 1:record_at + 9] = (1 << 40).to_bytes(8, 'little')
    path.write_bytes(bytes(data))
    check_failure(capsys, str(bag), '--rate', 'max', words=['cannot read bag'])


def test_bad_options_fail_with_one_line(tmp_path, capsys):
    bag = scripted_bag(tmp_path / 'bag', 'sqlite3')
    check_failure(capsys, str(bag), '--remap', 'odom', words=['FROM:=TO'])
    check_failure(capsys, str(bag), '--rate', '-2', words=['rate'])
    check_failure(capsys, str(bag), '--topics', '/nope', words=['/nope', '/odom'])
    check_failure(capsys, str(bag), '--clock', '0', words=['--clock'])
    check_failure(capsys, str(bag), '--namespace', 'a b', words=['namespace'])
    check_failure(capsys, str(bag), '--topics', '/odom', '--wait-for', '/camera/image_raw',
                  words=['--wait-for /camera/image_raw', '/odom'])


def test_single_storage_file_without_metadata_plays(tmp_path, capsys):
    bag = scripted_bag(tmp_path / 'bag', 'mcap')
    code = replay_cli(str(bag / 'bag.mcap'), '--rate', 'max', '--no-progress', '--delay', '0')
    out = capsys.readouterr().out
    assert code == 0
    assert 'played' in out and '(mcap)' in out
