"""The simulated robot over real DDS: what it publishes, and the labeler fed by it."""

from __future__ import annotations

import itertools
import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Range
from ssl_obstacle.io.messages import labeled_frame_arrays
from ssl_obstacle.nodes.explorer_node import ExplorerNode
from ssl_obstacle.nodes.labeler_node import LabelerNode
from ssl_obstacle.nodes.simulator_node import SimulatorNode
from ssl_obstacle_msgs.msg import LabeledFrame
from tf2_msgs.msg import TFMessage

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)


class Recorder(Node):
    """Keeps every message of the topics it is asked to watch."""

    def __init__(self, context, topics: dict[str, type], namespace: str = '') -> None:
        super().__init__('recorder', namespace=namespace, context=context)
        self.received: dict[str, list] = {topic: [] for topic in topics}
        for topic, msg_type in topics.items():
            qos = BEST_EFFORT if msg_type in (Image, Range) else RELIABLE
            self.create_subscription(msg_type, topic, self.received[topic].append, qos)


def simulator(context, namespace: str = '', **parameters) -> SimulatorNode:
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    return SimulatorNode(context=context, namespace=namespace, parameter_overrides=overrides)


def wait_quiet(recorder: Recorder, quiet: float = 0.3, timeout: float = 10.0) -> bool:
    """
    Wait until the recorder has received nothing for ``quiet`` seconds.

    Before its executor is stopped: Jazzy's ``Executor.shutdown`` destroys its guard
    condition without waiting for the spin thread (ros2/rclpy#968), and a thread still
    taking messages then dies at teardown with "'NoneType' object has no attribute
    'handle'" or "InvalidHandle: cannot use Destroyable". Publishers are stopped first.
    """
    last = [-1, time.monotonic()]

    def settled() -> bool:
        count = sum(len(messages) for messages in recorder.received.values())
        now = time.monotonic()
        if count != last[0]:
            last[:] = [count, now]
        return now - last[1] >= quiet

    return wait_for(settled, timeout)


def test_publishes_what_the_thymio_driver_and_a_camera_publish():
    topics = {'/clock': Clock, 'camera/image_raw': Image, 'camera/camera_info': CameraInfo,
              'proximity/center': Range, 'proximity/left': Range, 'odom': Odometry,
              'ground_truth/odom': Odometry, 'ground_truth/labels': LabeledFrame,
              '/tf': TFMessage}
    with ros_context() as context:
        recorder = Recorder(context, topics, namespace='thymio10')
        with spinning(context, recorder):
            time.sleep(1.0)
            sim = simulator(context, 'thymio10', world='walls', seed=2, real_time_factor=4.0,
                            duration=4.0, odom_noise=0.0)
            with spinning(context, sim):
                assert sim.finished.wait(15.0)
                time.sleep(0.5)
            sim.close()
            sim.destroy_node()
        recorder.destroy_node()
    got = recorder.received
    stamps = [c.clock.sec + 1e-9 * c.clock.nanosec for c in got['/clock']]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] > 3.0
    image = got['camera/image_raw'][-1]
    assert (image.width, image.height, image.encoding) == (320, 240, 'rgb8')
    assert len(image.data) == 240 * image.step
    info = got['camera/camera_info'][-1]
    fx = info.k[0]
    assert math.isclose(2 * math.degrees(math.atan(info.width / 2 / fx)), 45.0, abs_tol=0.5)
    # Roughly the rates: camera 15 Hz, proximity 10 Hz, odometry 20 Hz over ~4 s.
    assert 45 <= len(got['camera/image_raw']) <= 62
    assert 30 <= len(got['proximity/center']) <= 42
    assert 60 <= len(got['odom']) <= 82
    center = got['proximity/center'][-1]
    assert center.header.frame_id == 'thymio10/proximity_center_link'
    assert (center.min_range, center.max_range) == pytest.approx((0.0215, 0.14))
    assert all(r.range == -1.0 or 0.0215 <= r.range <= 0.14 for r in got['proximity/center'])
    odom = got['odom'][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ('thymio10/odom', 'thymio10/base_link')
    transform = got['/tf'][-1].transforms[0]
    assert transform.child_frame_id == 'thymio10/base_link'
    labels = got['ground_truth/labels'][-1]
    assert len(labels.labels) == 5 * 31 and set(bytes(labels.counts)) == {1}
    assert set(np.asarray(labels.labels)) <= {0.0, 1.0}


def test_cmd_vel_drives_the_robot_and_a_timeout_stops_it():
    with ros_context() as context:
        recorder = Recorder(context, {'ground_truth/odom': Odometry})
        driver = Node('driver', context=context)
        cmd = driver.create_publisher(Twist, 'cmd_vel', 10)
        sim = simulator(context, world='boxes', seed=1, real_time_factor=2.0,
                        odom_noise=0.0, cmd_timeout=0.5, ground_truth=False)
        with spinning(context, recorder, driver, sim):
            assert wait_for(lambda: cmd.get_subscription_count() > 0, 10.0)
            assert wait_for(lambda: len(recorder.received['ground_truth/odom']) > 5, 10.0)
            start = recorder.received['ground_truth/odom'][-1].pose.pose.position
            twist = Twist()
            twist.angular.z = 1.0
            for _ in range(10):  # 1 s of wall time = ~2 s simulated
                cmd.publish(twist)
                time.sleep(0.1)
            time.sleep(1.0)  # no command: the timeout stops the robot
            bad = Twist()
            bad.linear.x = math.nan
            cmd.publish(bad)  # ignored safely: the robot stays stopped
            assert wait_for(lambda: sim.bad_commands == 1, 5.0)
            before = recorder.received['ground_truth/odom'][-1].pose.pose
            time.sleep(0.5)
            after = recorder.received['ground_truth/odom'][-1].pose.pose
            sim.close()  # nothing in flight when the executors stop
            assert wait_quiet(recorder)
        for node in (recorder, driver, sim):
            node.destroy_node()
    yaw = 2 * math.atan2(before.orientation.z, before.orientation.w)
    assert abs(yaw) > 0.5  # it turned (on the spot: the position barely changed)
    assert math.hypot(before.position.x - start.x, before.position.y - start.y) < 0.02
    assert after.orientation.z == pytest.approx(before.orientation.z, abs=1e-9)


def test_labeler_fed_by_the_simulator_agrees_with_ground_truth():
    """The self-supervised labels, where known, match the simulator's exact labels."""
    with ros_context() as context:
        recorder = Recorder(context, {'ssl/labeled_frames': LabeledFrame,
                                      'ground_truth/labels': LabeledFrame,
                                      '/diagnostics': DiagnosticArray})
        labeler = LabelerNode(context=context, parameter_overrides=[
            Parameter('use_sim_time', value=True), Parameter('sensor_qos_depth', value=100),
            Parameter('camera_qos_depth', value=100)])
        explorer = ExplorerNode(context=context, parameter_overrides=[
            Parameter('use_sim_time', value=True)])
        with spinning(context, recorder, labeler, explorer):
            time.sleep(1.0)
            sim = simulator(context, world='boxes', seed=4, real_time_factor=3.0,
                            duration=75.0, odom_noise=0.0)
            with spinning(context, sim):
                assert sim.finished.wait(60.0)
                time.sleep(1.0)
            sim.close()
            collisions = sim.sim.collisions
            sim.destroy_node()
            assert wait_quiet(recorder)  # the labeler's backlog, before the executors stop
        labeler.close()
        for node in (recorder, labeler, explorer):
            node.destroy_node()
    truth = {labeled_frame_arrays(m)['stamp']: labeled_frame_arrays(m)['labels']
             for m in recorder.received['ground_truth/labels']}
    frames = [labeled_frame_arrays(m) for m in recorder.received['ssl/labeled_frames']]
    assert len(frames) > 300, f'only {len(frames)} labeled frames'
    agree = total = positives = 0
    for frame in frames:
        expected = truth[frame['stamp']]  # every labeled frame has its ground truth
        known = frame['counts'] > 0
        agree += int(((frame['labels'][known] >= 0.5) == (expected[known] >= 0.5)).sum())
        total += int(known.sum())
        positives += int((frame['labels'][known] >= 0.5).sum())
    assert total > 2000
    assert positives > 100, 'the run should approach obstacles'
    print(f'ground-truth agreement {agree / total:.4f} on {total} known cells '
          f'of {len(frames)} frames')
    assert agree / total >= 0.95, f'agreement {agree / total:.3f} on {total} cells'
    assert collisions == 0


def test_sim_command_runs_simulator_and_explorer_under_a_namespace():
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, '-m', 'ssl_obstacle', 'sim', '--world', 'pillars', '--seed', '3',
         '--real-time-factor', '4', '--namespace', 'thymio3'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ''
    try:
        with ros_context() as context:
            recorder = Recorder(context, {'cmd_vel': Twist, 'ground_truth/odom': Odometry,
                                          '/clock': Clock}, namespace='thymio3')
            with spinning(context, recorder):
                moving = wait_for(lambda: any(t.linear.x > 0.05 for t in
                                              recorder.received['cmd_vel']), 30.0)
                time.sleep(2.0)
                # Stopped while the recorder still spins: nothing in flight at its teardown.
                process.send_signal(signal.SIGINT)
                output, _ = process.communicate(timeout=30)
                assert wait_quiet(recorder)
            recorder.destroy_node()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=30)
    assert moving, output
    poses = recorder.received['ground_truth/odom']
    first, last = poses[0].pose.pose.position, poses[-1].pose.pose.position
    assert math.hypot(last.x - first.x, last.y - first.y) > 0.05  # the explorer drove it
    assert process.returncode == 0, output
    assert "world 'pillars'" in output and 'exploring at' in output
    assert 'collision' in output  # the simulator's closing line


FLEET = ('r1', 'r2', 'r3')
FLEET_WORLDS = ('boxes', 'pillars', 'walls')


def turned(odom: Odometry, start: Odometry) -> float:
    """Return the angle (rad, unsigned, wrapped) between two odometry headings."""
    def yaw(msg: Odometry) -> float:
        return 2 * math.atan2(msg.pose.pose.orientation.z, msg.pose.pose.orientation.w)

    return abs(math.remainder(yaw(odom) - yaw(start), math.tau))


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_a_fleet_runs_each_robot_in_its_own_world_under_its_namespace_on_one_clock():
    streams = {'camera/image_raw': Image, 'odom': Odometry, 'proximity/center': Range,
               'ground_truth/odom': Odometry, 'ground_truth/labels': LabeledFrame}
    topics = {'/clock': Clock, '/tf': TFMessage,
              **{f'/{ns}/{topic}': msg_type for ns in FLEET
                 for topic, msg_type in streams.items()}}
    with ros_context() as context:
        recorder = Recorder(context, topics)
        got = recorder.received
        driver = Node('driver', context=context)
        cmd = driver.create_publisher(Twist, '/r2/cmd_vel', 10)
        sim = simulator(context, robots=list(FLEET), worlds=list(FLEET_WORLDS), seed=7,
                        real_time_factor=2.0, odom_noise=0.0, cmd_timeout=0.5)
        with spinning(context, recorder, driver, sim):
            assert wait_for(lambda: cmd.get_subscription_count() > 0, 10.0)

            def flowing() -> bool:
                instants = [{stamp_ns(m) for m in got[f'/{ns}/camera/image_raw']}
                            for ns in FLEET]
                return all(len(got[topic]) >= 5 for topic in topics) and \
                    bool(set.intersection(*instants))

            assert wait_for(flowing, 30.0), {topic: len(got[topic]) for topic in topics}
            publishers_of_clock = recorder.count_publishers('/clock')
            still = {ns: got[f'/{ns}/odom'][-1] for ns in FLEET}
            turn = Twist()
            turn.angular.z = 1.0

            def r2_turned() -> bool:
                cmd.publish(turn)  # 10 Hz of wall time: within the 0.5 s timeout at x2
                return turned(got['/r2/odom'][-1], still['r2']) > 0.3

            assert wait_for(r2_turned, 20.0, period=0.1), 'r2 did not obey /r2/cmd_vel'
            after = {ns: got[f'/{ns}/odom'][-1] for ns in FLEET}
            sim.close()  # nothing in flight when the executors stop
            assert wait_quiet(recorder)
        for node in (recorder, driver, sim):
            node.destroy_node()
    assert sim.namespaces == ['/r1', '/r2', '/r3']
    assert [s.world.name for s in sim.sims] == list(FLEET_WORLDS)
    assert [s.seed for s in sim.sims] == [7, 8, 9] and sim.sim is sim.sims[0]
    assert len({s.now_ns for s in sim.sims}) == 1  # stepped in lockstep
    # Each robot's streams under its namespace, its frames prefixed with it.
    for ns in FLEET:
        odom = got[f'/{ns}/odom'][-1]
        assert (odom.header.frame_id, odom.child_frame_id) == (f'{ns}/odom', f'{ns}/base_link')
        assert got[f'/{ns}/ground_truth/odom'][-1].child_frame_id == f'{ns}/base_link'
        assert got[f'/{ns}/camera/image_raw'][-1].header.frame_id == f'{ns}/camera_link'
        assert got[f'/{ns}/proximity/center'][-1].header.frame_id == \
            f'{ns}/proximity_center_link'
        labels = got[f'/{ns}/ground_truth/labels'][-1]
        assert labels.header.frame_id == f'{ns}/camera_link' and len(labels.labels) == 5 * 31
    children = {t.child_frame_id for m in got['/tf'] for t in m.transforms}
    assert {f'{ns}/base_link' for ns in FLEET} <= children
    # One /clock, published once per tick, whose ticks every robot's messages share.
    assert publishers_of_clock == 1
    clock = [c.clock.sec * 1_000_000_000 + c.clock.nanosec for c in got['/clock']]
    assert all(a < b for a, b in itertools.pairwise(clock)), 'a tick published /clock twice'
    odom_stamps = {ns: {stamp_ns(m) for m in got[f'/{ns}/odom']} for ns in FLEET}
    shared = set.intersection(*odom_stamps.values())
    assert len(shared) >= 0.8 * min(len(s) for s in odom_stamps.values()) > 0
    assert max(shared) < clock[-1]  # a tick's /clock goes out before its messages
    # Different worlds (and seeds): the robots' camera images of one instant differ.
    images = {ns: {stamp_ns(m): bytes(m.data) for m in got[f'/{ns}/camera/image_raw']}
              for ns in FLEET}
    instant = max(set.intersection(*(set(by_stamp) for by_stamp in images.values())))
    pictures = [images[ns][instant] for ns in FLEET]
    assert len(set(pictures)) == 3
    # /r2/cmd_vel turned r2 only: the others' odometry stood still, exactly.
    assert turned(after['r2'], still['r2']) > 0.3
    for ns in ('r1', 'r3'):
        assert stamp_ns(after[ns]) > stamp_ns(still[ns])  # time went on for them too
        assert after[ns].pose.pose == still[ns].pose.pose
        assert after[ns].twist.twist.angular.z == 0.0


def test_fleet_parameters_name_each_robot_and_a_wrong_worlds_list_is_refused():
    with ros_context() as context:
        with pytest.raises(ValueError, match=r'worlds has 2 layout\(s\) for 3 robot\(s\)'):
            simulator(context, robots=list(FLEET), worlds=['boxes', 'pillars'])
        with pytest.raises(ValueError, match=r"namespace '/r1' given twice"):
            simulator(context, robots=['r1', '/r1'])
        with pytest.raises(ValueError, match='unknown world'):
            simulator(context, robots=['r1'], worlds=['moon'])
        single = simulator(context, 'thymio4', seed=3, world='pillars', duration=0.2,
                           real_time_factor=0.0)
        assert single.finished.wait(10.0)
        single.close()
        assert single.namespaces == ['/thymio4'] and single.sims == [single.sim]
        assert (single.sim.world.name, single.sim.seed) == ('pillars', 3)
        single.destroy_node()
        # With or without a leading slash; worlds unset: `world` for all, seeds seed + i.
        fleet = simulator(context, 'ignored', robots=['/a', 'b/'], seed=3, world='walls',
                          duration=0.2, real_time_factor=0.0)
        assert fleet.finished.wait(10.0)
        fleet.close()
        assert fleet.namespaces == ['/a', '/b']
        assert [(s.world.name, s.seed) for s in fleet.sims] == [('walls', 3), ('walls', 4)]
        assert wait_for(lambda: {'/a/odom', '/b/cmd_vel'} <= {
            name for name, _ in fleet.get_topic_names_and_types()}, 5.0)
        names = {name for name, _ in fleet.get_topic_names_and_types()}
        assert not any(name.startswith('/ignored/') for name in names)
        fleet.destroy_node()
