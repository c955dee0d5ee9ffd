"""
The bringups run for real: ``ssl-obstacle up`` in processes of their own, over DDS.

``up`` runs the trainer (PyTorch) in a child process of its own and every other node in its
own process; the tests find that child in the process tree (Linux /proc), check that only it
loaded PyTorch, and that the predictors predict with the models it publishes.

A fake Thymio driver in the test process publishes exactly as ``jeguzzi/ros-thymio`` does
(namespaced topics, reliable depth-1 QoS, ``range = -1.0`` when nothing is seen, the
``proximity/laser`` scan too) plus a camera driver's images; the package's processes see
nothing but DDS traffic, as on the robot.
"""

from __future__ import annotations

import math
import os
import pathlib
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, LaserScan, Range
from ssl_obstacle.commands.record import record
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.core.thymio import LASER_ORDER, SENSOR_NAMES
from ssl_obstacle.io.messages import (laser_msg, odometry_msg, range_msg, rgb_to_image_msg,
                                      time_from_ns)
from ssl_obstacle.nodes.qos import MODEL_QOS
from ssl_obstacle.sim.scripted_run import generate_run
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ModelWeights, ObstaclePrediction
from std_msgs.msg import Header

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
#: What the driver uses: reliable, keep last 1.
DRIVER_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
LISTEN_QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
#: The trainer's module, as ``up`` starts it in a child process.
TRAINER_MODULE = 'ssl_obstacle.nodes.trainer_node'


def start(*arguments: str, **options) -> subprocess.Popen:
    """Start ``ssl-obstacle ARGUMENTS`` as users do, in a process (and DDS participant)."""
    return subprocess.Popen([sys.executable, '-m', 'ssl_obstacle', *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=PACKAGE_DIR, **options)


def stop(process: subprocess.Popen) -> str:
    """Ctrl-C the process as a user would; return everything it printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    print(output)
    return output


class Listener(Node):
    """Collects what the package publishes in a namespace."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('bringup_listener', namespace=namespace, context=context)
        self.frames: list[LabeledFrame] = []
        self.predictions: list[ObstaclePrediction] = []
        self.status: list[LearnerStatus] = []
        self.commands: list[Twist] = []
        self.clock: list[Clock] = []
        self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self.frames.append,
                                 LISTEN_QOS)
        self.create_subscription(ObstaclePrediction, 'ssl/predictions',
                                 self.predictions.append, LISTEN_QOS)
        self.create_subscription(LearnerStatus, 'ssl/learner_status', self.status.append, 10)
        self.models: list[int] = []  # the updates behind each model received on ssl/model
        self.create_subscription(ModelWeights, 'ssl/model',
                                 lambda msg: self.models.append(msg.updates), MODEL_QOS)
        self.create_subscription(Twist, 'cmd_vel', self.commands.append, 10)
        self.create_subscription(Clock, '/clock', self.clock.append, 10)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_received = 0
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def trained_predictions(self) -> list[ObstaclePrediction]:
        """Return the predictions made with a model the trainer trained (not model_file's)."""
        return [p for p in self.predictions if p.model_updates > 0]

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics_received += 1
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}


class FakeThymioDriver(Node):
    """Publishes a scripted run as jeguzzi/ros-thymio and a camera driver would."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('thymio_driver', namespace=namespace, context=context)
        self.prefix = namespace.strip('/') + '/'
        self.odom = self.create_publisher(Odometry, 'odom', DRIVER_QOS)
        self.laser = self.create_publisher(LaserScan, 'proximity/laser', DRIVER_QOS)
        self.ranges = {name: self.create_publisher(Range, f'proximity/{name}', DRIVER_QOS)
                       for name in SENSOR_NAMES}
        self.camera = self.create_publisher(Image, 'camera/image_raw', DRIVER_QOS)
        self.camera_stamps: list[int] = []

    def publishers(self) -> list:
        """Return every publisher, to wait for the package's subscriptions."""
        return [self.odom, self.camera, *self.ranges.values()]

    def play(self, seconds: float, speed: float = 2.0) -> None:
        """Publish ``seconds`` of a run at ``speed`` times real time, paced by the stamps."""
        start_wall, start_stamp = time.monotonic(), None
        readings: dict[int, dict[str, float]] = {}
        for event in generate_run(seconds, seed=5, image_shape=(60, 80)):
            start_stamp = event.stamp if start_stamp is None else start_stamp
            delay = start_wall + (event.stamp - start_stamp) * 1e-9 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if event.kind == 'odom':
                self.odom.publish(odometry_msg(event.stamp, *event.pose,
                                               frame_id=self.prefix + 'odom',
                                               child_frame_id=self.prefix + 'base_link'))
            elif event.kind == 'frame':
                header = Header(stamp=time_from_ns(event.stamp), frame_id=self.prefix + 'camera')
                self.camera.publish(rgb_to_image_msg(event.image, header))
                self.camera_stamps.append(event.stamp)
            else:
                self.ranges[event.sensor].publish(
                    range_msg(event.sensor, event.stamp, event.value, frame_prefix=self.prefix))
                row = readings.setdefault(event.stamp, {})
                row[event.sensor] = event.value
                if len(row) == len(LASER_ORDER):
                    self.laser.publish(laser_msg(event.stamp, [row[n] for n in LASER_ORDER],
                                                 frame_prefix=self.prefix))
                    del readings[event.stamp]


def stamp_ns(header: Header) -> int:
    """Return a header's stamp in nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def assert_predictions_are_for_camera_frames(predictions, camera_stamps) -> None:
    """Check shape, names and that each prediction carries a stamp of a frame sent."""
    assert predictions
    sent = set(camera_stamps)
    for prediction in predictions:
        assert list(prediction.sensor_names) == list(SENSOR_NAMES)
        assert len(prediction.probabilities) == len(SENSOR_NAMES) * len(prediction.distances)
        assert math.isclose(prediction.distances[-1], 0.30, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in prediction.probabilities)
        assert stamp_ns(prediction.header) in sent


def child_processes(pid: int) -> dict[int, str]:
    """Return the live children of process ``pid``: PID -> command line (Linux /proc)."""
    children = {}
    for entry in pathlib.Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                command = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
                children[int(entry.name)] = command
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return children


def trainer_processes(process: subprocess.Popen) -> list[int]:
    """Return the PIDs of the trainer processes ``up`` started."""
    return [pid for pid, command in child_processes(process.pid).items()
            if f'-m {TRAINER_MODULE} ' in command]


def loads_torch(pid: int) -> bool:
    """Tell whether process ``pid`` has PyTorch's library mapped (imported torch)."""
    maps = pathlib.Path(f'/proc/{pid}/maps').read_text()
    return any('libtorch' in line for line in maps.splitlines())


def running(pid: int) -> bool:
    """Tell whether process ``pid`` exists (a zombie counts: not yet reaped by its parent)."""
    return pathlib.Path(f'/proc/{pid}').exists()


def make_model_file(path: pathlib.Path) -> pathlib.Path:
    """Write an untrained trainer checkpoint (0 updates) for ``--model-file``."""
    from ssl_obstacle.core.trainer import OnlineTrainer

    OnlineTrainer().save(path, {'sensor_names': list(SENSOR_NAMES),
                                'distances': [float(d) for d in LabelParams().distances]})
    return path


pytestmark = pytest.mark.skipif(not pathlib.Path('/proc/self/maps').exists(),
                                reason='the process checks read Linux /proc')


def test_up_sim_trains_in_a_process_of_its_own_and_predicts_with_its_models(tmp_path):
    process = start('up', 'sim', '--real-time-factor', '2', '--seed', '4',
                    '--checkpoint', str(tmp_path / 'sim.pt'))
    trainers: list[int] = []
    try:
        with ros_context() as context:
            listener = Listener(context, '')
            with spinning(context, listener):
                assert wait_for(lambda: listener.status, timeout=90.0), 'no trainer status'
                trainers = trainer_processes(process)
                assert wait_for(lambda: len(listener.frames) >= 20 and listener.models
                                and len(listener.trained_predictions()) >= 20,
                                timeout=120.0), (len(listener.frames), listener.models,
                                                 len(listener.predictions))
                torch_in_trainer = [loads_torch(pid) for pid in trainers]
                torch_in_up = loads_torch(process.pid)
            listener.destroy_node()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert ('labeler, predictor, explorer, simulator in namespace /; trainer in a process of '
            'its own') in output
    # One trainer, in a child process with a PID of its own: the only one with PyTorch.
    assert len(trainers) == 1 and trainers[0] != process.pid, trainers
    assert f'/trainer runs in process {trainers[0]}' in output
    assert torch_in_trainer == [True] and not torch_in_up
    assert not running(trainers[0])  # stopped with up, not left behind
    assert 'training steps' in output  # the trainer closed (Ctrl-C was handed on)
    predictions = listener.predictions
    assert [list(p.sensor_names) for p in predictions[:1]] == [list(SENSOR_NAMES)]
    assert all(len(p.probabilities) == 5 * 31 for p in predictions)
    stamps = [stamp_ns(p.header) for p in predictions]
    assert stamps == sorted(stamps)  # newest frame first, never an older one after it
    # the predictor's models are the trainer's: never more updates than it published
    assert max(p.model_updates for p in predictions) <= max(listener.models)
    assert listener.clock and listener.commands  # the simulator's clock; the explorer drives
    assert any(np.isfinite(np.asarray(f.labels)).any() for f in listener.frames)
    assert (tmp_path / 'sim.pt').is_file()  # the trainer checkpointed on Ctrl-C


def test_up_sim_fleet_each_robot_learns_with_the_one_trainer(tmp_path):
    process = start('up', 'sim', '--robots', '2', '--real-time-factor', '1', '--seed', '1')
    robots = ['robot1', 'robot2']
    try:
        with ros_context() as context:
            listeners = [Listener(context, robot) for robot in robots]
            outside = Listener(context, '')  # no robot of a fleet publishes at the root

            def learning() -> bool:
                # The model (1.5 MB) may reach a listener after the predictions it made:
                # wait for it too rather than assert it the moment predictions arrive.
                return all(len(listener.frames) >= 10 and listener.commands
                           and listener.status and len(listener.trained_predictions()) >= 5
                           and listener.models for listener in listeners)

            with spinning(context, *listeners, outside):
                assert wait_for(learning, timeout=240.0), [
                    (len(n.frames), len(n.commands), len(n.status),
                     len(n.trained_predictions()), len(n.models)) for n in listeners]
                trainers = trainer_processes(process)
            for node in (*listeners, outside):
                node.destroy_node()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert ('robots /robot1, /robot2 (each: labeler, predictor, explorer), simulator in '
            'namespace /; trainer in a process of its own for robots /robot1, /robot2') in output
    assert len(trainers) == 1, trainers  # one trainer for the fleet
    for robot, listener in zip(robots, listeners):
        assert {s.robot for s in listener.status} == {f'/{robot}'}  # scored per robot
        assert listener.models  # the one trainer's model reached each robot
        assert listener.frames[0].header.frame_id.startswith(f'{robot}/')
    # one clock, each robot in a world of its own: same stamps, other pictures
    first, second = ({stamp_ns(f.header): bytes(f.image.data) for f in n.frames}
                     for n in listeners)
    common = sorted(set(first) & set(second))
    assert common
    assert sum(first[t] != second[t] for t in common) > len(common) / 2
    assert not outside.frames and not outside.predictions and not outside.commands
    assert outside.clock  # the one /clock


def test_up_thymio_labels_and_predicts_from_a_namespaced_thymio_driver(tmp_path):
    model = make_model_file(tmp_path / 'model.pt')
    process = start('up', 'thymio', '--namespace', 'thymio10', '--explorer',
                    '--model-file', str(model), '--checkpoint', str(tmp_path / 'thymio10.pt'))
    try:
        with ros_context() as context:
            driver = FakeThymioDriver(context, 'thymio10')
            listener = Listener(context, 'thymio10')
            outside = Listener(context, '')  # nothing may leak out of the namespace
            with spinning(context, driver, listener, outside):
                wait_for_subscribers(driver.publishers(), timeout=60.0)
                assert wait_for(lambda: listener.status, timeout=60.0), 'no trainer status'
                driver.play(16.0)
                wait_for(lambda: len(listener.frames) >= 60, timeout=15.0)
            for node in (driver, listener, outside):
                node.destroy_node()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert ('labeler, predictor, explorer in namespace /thymio10; trainer in a process of its '
            'own') in output
    assert '/thymio10/trainer runs in process' in output
    assert len(listener.frames) >= 60, len(listener.frames)
    sent = set(driver.camera_stamps)
    assert all(stamp_ns(f.header) in sent for f in listener.frames)
    labels = np.concatenate([np.asarray(f.labels) for f in listener.frames])
    assert np.isfinite(labels).any() and (labels[np.isfinite(labels)] > 0).any()
    # model_file: predictions from the first frames on, before the trainer's first model
    assert_predictions_are_for_camera_frames(listener.predictions, driver.camera_stamps)
    assert listener.predictions[0].model_updates == 0
    assert listener.commands  # the explorer drove on /thymio10/cmd_vel
    # the trainer's process runs in the namespace too
    assert listener.status and not outside.status
    assert not outside.frames and not outside.predictions and not outside.commands
    assert (tmp_path / 'thymio10.pt').is_file()


def test_trainer_setup_on_a_second_machine_learns_for_the_robot(tmp_path):
    robot = start('up', 'thymio', '--namespace', 'thymio10', '--no-trainer',
                  '--proximity-source', 'laser')
    workstation = start('up', 'trainer', '--robots', 'thymio10',
                        '--checkpoint', str(tmp_path / 'ws.pt'))
    try:
        with ros_context() as context:
            driver = FakeThymioDriver(context, 'thymio10')
            listener = Listener(context, 'thymio10')
            with spinning(context, driver, listener):
                wait_for_subscribers([driver.laser, driver.odom, driver.camera], timeout=60.0)
                assert wait_for(lambda: listener.status, timeout=60.0), 'no trainer status'
                driver.play(30.0)
                wait_for(lambda: listener.status[-1].updates >= 20
                         and listener.status[-1].labeled_frames >= len(listener.frames)
                         and listener.trained_predictions(), timeout=30.0)
            driver.destroy_node()
            listener.destroy_node()
    finally:
        robot_output = stop(robot)
        trainer_output = stop(workstation)
    assert robot.returncode == 0, robot_output
    assert workstation.returncode == 0, trainer_output
    assert 'labeler, predictor in namespace /thymio10; parameters' in robot_output
    assert 'from laser proximity' in robot_output
    assert not trainer_processes(robot)
    # the robot names the command the workstation runs here
    assert 'no trainer here; on a machine with PyTorch in this ROS domain: ssl-obstacle up ' \
        'trainer --robots thymio10\n' in robot_output
    assert 'trainer in namespace / for robots /thymio10' in trainer_output
    status = listener.status[-1]
    assert status.robot == '/thymio10'
    assert len(listener.frames) >= 100
    # every labeled frame the robot published reached the trainer in the other process
    assert status.labeled_frames == len(listener.frames), (status.labeled_frames,
                                                           len(listener.frames))
    assert status.updates >= 20 and math.isfinite(status.recent_loss)
    # the robot's predictor predicts with the workstation's model, and with newer ones as
    # training goes on (a falling loss over 20 steps is too noisy a sign on a loaded CPU)
    assert listener.trained_predictions() and listener.models
    used = sorted({p.model_updates for p in listener.predictions if p.model_updates > 0})
    assert len(used) >= 2, used
    assert_predictions_are_for_camera_frames(listener.predictions, driver.camera_stamps)
    assert (tmp_path / 'ws.pt').is_file()


def test_up_replay_learns_from_a_bag_that_replay_plays_with_its_clock(tmp_path):
    bag = tmp_path / 'run'
    record(bag, 20 / 60, 'boxes', 2, 'mcap', namespace='thymio10', camera_size=(160, 120),
           progress=False)
    with AnyReader([bag]) as reader:
        camera = [c for c in reader.connections if c.topic == '/thymio10/camera/image_raw']
        camera_stamps = {stamp_ns(reader.deserialize(data, c.msgtype).header)
                         for c, _, data in reader.messages(camera)}
    nodes = start('up', 'replay', '--namespace', 'thymio10',
                  '--checkpoint', str(tmp_path / 'replay.pt'))
    player = None
    try:
        with ros_context() as context:
            listener = Listener(context, 'thymio10')
            with spinning(context, listener):
                # the trainer's process is up (and subscribed) before the bag plays
                assert wait_for(lambda: listener.status, timeout=90.0), 'no trainer status'
                player = start('replay', str(bag), '--clock', '--no-progress',
                               '--wait-for', '/thymio10/odom', '/thymio10/camera/image_raw')
                player.communicate(timeout=120)
                wait_for(lambda: listener.status
                         and listener.status[-1].labeled_frames >= len(listener.frames) > 0,
                         timeout=15.0)
            listener.destroy_node()
    finally:
        output = stop(nodes)
        if player is not None and player.poll() is None:
            stop(player)
    assert player.returncode == 0
    assert nodes.returncode == 0, output
    assert 'labeler, predictor in namespace /thymio10; trainer in a process of its own' in output
    assert len(listener.frames) >= 50
    assert all(stamp_ns(f.header) in camera_stamps for f in listener.frames)
    assert_predictions_are_for_camera_frames(listener.predictions, camera_stamps)
    assert listener.trained_predictions()  # with the trainer's model, learnt from the bag
    # the nodes ran on the bag's time (the trainer's process too): its status is stamped
    # inside the recording
    assert min(camera_stamps) <= stamp_ns(listener.status[-1].header) <= max(camera_stamps) \
        + 2_000_000_000
    assert listener.status[-1].labeled_frames == len(listener.frames), listener.diagnostics


def test_up_says_when_the_trainer_dies_and_keeps_the_robot_running(tmp_path):
    process = start('up', 'replay', '--checkpoint', str(tmp_path / 'c.pt'))
    try:
        with ros_context() as context:
            listener = Listener(context, '')
            with spinning(context, listener):
                assert wait_for(lambda: listener.status, timeout=90.0), 'no trainer status'
                (trainer,) = trainer_processes(process)
                os.kill(trainer, signal.SIGKILL)
                # up reaps it at once (its watcher waits on it) ...
                assert wait_for(lambda: not running(trainer), timeout=10.0)
                # ... and the labeler and the predictor go on (their /diagnostics)
                heard = listener.diagnostics_received
                assert wait_for(lambda: listener.diagnostics_received >= heard + 3,
                                timeout=30.0)
                alive = process.poll() is None
            listener.destroy_node()
    finally:
        output = stop(process)
    assert alive
    assert process.returncode == 1, output
    assert f'error: the trainer (process {trainer}) was killed by SIGKILL' in output
    assert 'the other nodes keep running' in output
    assert 'exit code 1' in output
    assert output.count('stopping:') >= 1  # the labeler still closed cleanly


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script leaves it


def test_nodes_stop_cleanly_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
    # ros2 launch stops its processes with SIGINT; a process inheriting SIGINT ignored
    # (started in the background by a script or CI) must still close and checkpoint.
    process = start('up', 'replay', '--checkpoint', str(tmp_path / 'a.pt'),
                    preexec_fn=_ignore_sigint)
    with ros_context() as context:
        listener = Listener(context, '')
        with spinning(context, listener):
            assert wait_for(lambda: listener.status, timeout=90.0), 'the trainer never started'
            trainers = trainer_processes(process)
        listener.destroy_node()
    output = stop(process)
    assert process.returncode == 0, output
    assert 'training steps' in output and (tmp_path / 'a.pt').is_file()
    assert trainers and not any(running(pid) for pid in trainers)


def test_sigterm_closes_the_nodes_like_ctrl_c(tmp_path):
    process = start('up', 'replay', '--checkpoint', str(tmp_path / 'b.pt'))
    with ros_context() as context:
        listener = Listener(context, '')
        with spinning(context, listener):
            assert wait_for(lambda: listener.status, timeout=90.0), 'the trainer never started'
        listener.destroy_node()
    process.terminate()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    # the labeler and the predictor closed, then the trainer (SIGINT handed on)
    assert 'stopping:' in output and 'predictions' in output and 'training steps' in output
    assert (tmp_path / 'b.pt').is_file()
