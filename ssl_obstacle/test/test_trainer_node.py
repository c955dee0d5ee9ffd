"""The trainer node over real DDS: labeled frames in, ModelWeights and statuses out; services."""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import Image
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.model import DEFAULT_AUGMENTATION
from ssl_obstacle.core.model_config import state_shapes
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.labeled_frames import KINDS
from ssl_obstacle.io.messages import labeled_frame_msg, rgb_to_image_msg, time_from_ns
from ssl_obstacle.io.model_messages import read_model_msg
from ssl_obstacle.nodes.predictor_node import PredictorNode
from ssl_obstacle.nodes.qos import LABELED_FRAMES_QOS, MODEL_QOS
from ssl_obstacle.nodes.trainer_node import TrainerNode
from ssl_obstacle_msgs.msg import LabeledFrame, LearnerStatus, ModelWeights, ObstaclePrediction
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

PARAMS = LabelParams()
SENSORS = list(PARAMS.sensor_names)
DISTANCES = [float(d) for d in PARAMS.distances]
#: Small model input (the default grid of 5 sensors x 31 distances): steps of a few ms.
WIDTH, HEIGHT = 40, 32


def synthetic_frame(rng: np.random.Generator, index: int, stamp: int | None = None
                    ) -> LabeledResult:
    """Return a labeled frame: a red block on the left means 'left' sees an obstacle."""
    image = rng.integers(60, 120, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    labels = np.full((len(SENSORS), len(DISTANCES)), np.nan, dtype=np.float32)
    obstacle = index % 2 == 0
    if obstacle:
        image[10:30, 0:15] = (220, 30, 30)
    labels[0, :10] = 1.0 if obstacle else 0.0
    labels[2, :10] = 0.0
    counts = np.where(np.isnan(labels), 0, 1).astype(np.uint8)
    return LabeledResult(stamp=stamp if stamp is not None else 1_000_000_000 + index * 50_000_000,
                         pose=np.zeros(3), payload=image, labels=labels, counts=counts,
                         reason='complete')


def labeled(frame: LabeledResult) -> LabeledFrame:
    """Return the LabeledFrame a labeler publishes for ``frame``."""
    return labeled_frame_msg(frame, SENSORS, DISTANCES, 'camera_link')


def trainer_parameters(**overrides) -> list[Parameter]:
    """Return a small, quick trainer's parameters (any of them overridden by keyword)."""
    values = {'image_width': WIDTH, 'image_height': HEIGHT, 'min_buffer': 8, 'batch_size': 8,
              'buffer_size': 500, 'max_updates_per_second': 20.0, 'publish_period': 0.2,
              'status_period': 0.2, 'checkpoint_path': '', 'checkpoint_period': 0.0}
    values.update(overrides)
    return [Parameter(name, value=value) for name, value in values.items()]


def topic(robot: str, name: str) -> str:
    """Return the name of a robot's topic, e.g. ``/a/ssl/model``; relative for no robot."""
    return f'{robot}/{name}' if robot else name


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def call(node: Node, client, request, timeout: float = 30.0):
    """Call a service from a node spun elsewhere; return the response."""
    assert client.wait_for_service(timeout_sec=timeout), f'{client.srv_name} not offered'
    future = client.call_async(request)
    assert wait_for(future.done, timeout, period=0.02), f'{client.srv_name} did not answer'
    return future.result()


class Driver(Node):
    """Feeds a trainer labeled frames (one robot or several) and watches what it publishes."""

    def __init__(self, context, robots: tuple[str, ...] = ('',), namespace: str = '',
                 diagnostics_of: str = '/trainer: training') -> None:
        super().__init__('trainer_driver', context=context, namespace=namespace)
        self.labeled = {r: self.create_publisher(LabeledFrame, topic(r, 'ssl/labeled_frames'),
                                                 LABELED_FRAMES_QOS) for r in robots}
        self.camera = self.create_publisher(Image, 'camera/image_raw', 10)
        self.models: dict[str, list[ModelWeights]] = {r: [] for r in robots}
        for robot in robots:
            self.create_subscription(ModelWeights, topic(robot, 'ssl/model'),
                                     self.models[robot].append, MODEL_QOS)
        #: Statuses by robot; '' is the pooled one on the trainer's own ssl/learner_status.
        self.status: dict[str, list[LearnerStatus]] = {'': []}
        self.create_subscription(LearnerStatus, 'ssl/learner_status', self.status[''].append,
                                 50)
        for robot in robots:
            if robot:
                self.status[robot] = []
                self.create_subscription(LearnerStatus, topic(robot, 'ssl/learner_status'),
                                         self.status[robot].append, 50)
        self.predictions: list[ObstaclePrediction] = []
        self.create_subscription(ObstaclePrediction, 'ssl/predictions', self.predictions.append,
                                 100)
        #: The watched node's latest /diagnostics values (strings, as they travel).
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_message = ''
        self._diagnostics_of = diagnostics_of
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self.pause = self.create_client(SetBool, 'ssl/pause_learning')
        self.save = self.create_client(Trigger, 'ssl/save_checkpoint')
        self.reset = self.create_client(Trigger, 'ssl/reset_model')

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self._diagnostics_of:
                self.diagnostics = {value.key: value.value for value in status.values}
                self.diagnostics_message = status.message

    def reported(self, key: str) -> int:
        """Return a counter as last reported on /diagnostics (-1: not yet)."""
        return int(self.diagnostics.get(key, -1))

    def last_status(self, robot: str = '') -> LearnerStatus | None:
        statuses = self.status[robot]
        return statuses[-1] if statuses else None


def status_shows(driver: Driver, check: Callable[[LearnerStatus], bool], robot: str = '',
                 timeout: float = 30.0) -> bool:
    """Wait until the newest status of ``robot`` (pooled: '') satisfies ``check``."""
    return wait_for(lambda: driver.last_status(robot) is not None
                    and check(driver.last_status(robot)), timeout)


def settled_after_pause(node: TrainerNode, driver: Driver, robots=('',),
                        timeout: float = 30.0) -> bool:
    """Wait until a paused trainer has published a model holding every update it made."""
    return wait_for(lambda: node.trainer.paused and node.trainer.updates > 0 and all(
        driver.models[r] and driver.models[r][-1].updates == node.trainer.updates
        and driver.models[r][-1].version == node.trainer.version for r in robots)
        and node.latest_status() is not None and node.latest_status().paused, timeout)


def torch_predictions(msg: ModelWeights, images: np.ndarray) -> np.ndarray:
    """Return the predictions of a received model, computed with torch as the trainer does."""
    import torch
    from ssl_obstacle.core.model import ObstacleNet, predict_probabilities

    received = read_model_msg(msg, SENSORS, DISTANCES)
    model = ObstacleNet(received.config)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in
                           received.state.items()})
    return predict_probabilities(model.eval(), np.asarray(images))


def camera_frame(image: np.ndarray, stamp: int) -> Image:
    return rgb_to_image_msg(image, Header(stamp=time_from_ns(stamp),
                                          frame_id='thymio/camera_link'))


def predicted(driver, publisher, msg, timeout: float = 30.0) -> ObstaclePrediction:
    """
    Publish a camera frame until its prediction arrives (the camera is best effort); return it.

    A frame lost by best-effort transport is sent again, stamp unchanged, every 3 s.
    """
    stamp = stamp_of(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(msg)
        if wait_for(lambda: any(stamp_of(p) == stamp for p in driver.predictions), 3.0):
            return next(p for p in driver.predictions if stamp_of(p) == stamp)
    raise AssertionError(f'no prediction for the frame stamped {stamp}')


def stop(*nodes: Node) -> None:
    for node in nodes:
        if hasattr(node, 'close'):
            node.close()
        node.destroy_node()


# ---------------------------------------------------------------------- training and weights

def test_the_trainer_publishes_the_weights_it_holds_and_a_late_predictor_gets_them():
    rng = np.random.default_rng(0)
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters())
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                for index in range(30):
                    driver.labeled[''].publish(labeled(synthetic_frame(rng, index)))
                assert status_shows(driver, lambda s: s.labeled_frames == 30 and s.updates > 3)
                assert wait_for(lambda: len(driver.models['']) >= 2, 30.0)
                # Updates grow from status to status while it trains.
                growing = driver.last_status().updates
                assert status_shows(driver, lambda s: s.updates > growing)

                response = call(driver, driver.pause, SetBool.Request(data=True))
                assert response.success and response.message == 'learning paused'
                assert settled_after_pause(node, driver)
                msg = driver.models[''][-1]
                assert status_shows(driver, lambda s: s.paused and s.updates == msg.updates
                                    and s.model_version == msg.version)

                # The message describes the trainer's network and grid...
                assert (msg.image_width, msg.image_height) == (WIDTH, HEIGHT)
                assert list(msg.filters) == list(node.config.filters)
                assert msg.dense == node.config.dense
                assert list(msg.sensor_names) == SENSORS
                np.testing.assert_allclose(msg.distances, DISTANCES, atol=1e-6)
                assert msg.encoding == 'float32' and msg.trainer == node.trainer_id
                assert list(msg.tensor_names) == list(state_shapes(node.config))
                # ...and its tensors are exactly those the trainer published (and scores with).
                received = read_model_msg(msg, SENSORS, DISTANCES)
                held = node.trainer._scoring_model.state_dict()
                assert set(received.state) == set(held)
                for name, tensor in held.items():
                    np.testing.assert_array_equal(received.state[name], tensor.numpy(),
                                                  err_msg=name)
                versions = [m.version for m in driver.models['']]
                assert versions == sorted(set(versions))  # one new version per publication
                updates = [m.updates for m in driver.models['']]
                assert updates == sorted(updates) and updates[0] > 0  # never an untrained one

                # A predictor started now gets that model from the topic's durable history:
                # nothing is published meanwhile (paused, every update already out).
                published = node.counters_copy()['models_published']
                predictor = PredictorNode(context=context, parameter_overrides=[
                    Parameter('status_period', value=0.2)])
                try:
                    with spinning(context, predictor):
                        assert wait_for(lambda: predictor.model_updates == msg.updates, 30.0)
                        assert predictor.counters['models_loaded'] == 1
                        # Its numpy forward pass gives the trainer's torch predictions.
                        wait_for_subscribers([driver.camera], node=predictor)
                        image = synthetic_frame(rng, 0).payload
                        prediction = predicted(driver, driver.camera,
                                               camera_frame(image, 5_000_000_000))
                        assert prediction.model_updates == msg.updates
                        np.testing.assert_allclose(
                            np.reshape(prediction.probabilities, (len(SENSORS), -1)),
                            node.trainer.predict(image), atol=1e-5)
                finally:
                    stop(predictor)
                assert node.counters_copy()['models_published'] == published
        finally:
            stop(node, driver)


def test_each_robots_frames_are_scored_with_the_published_weights_before_they_are_trained_on():
    """Prequential order per robot: scored by the model the robots have, stored, then drawn."""
    rng = np.random.default_rng(1)
    robots = ('/a', '/b')
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=[
            *trainer_parameters(), Parameter('robots', value=['a', '/b/'])])
        driver = Driver(context, robots=robots)
        try:
            assert node.robots == list(robots)
            with spinning(context, node, driver):
                wait_for_subscribers(list(driver.labeled.values()), node=node)
                for index in range(24):
                    driver.labeled[robots[index % 3 == 2]].publish(
                        labeled(synthetic_frame(rng, index)))
                assert status_shows(driver, lambda s: s.labeled_frames == 24 and s.updates > 0)
                assert call(driver, driver.pause, SetBool.Request(data=True)).success
                # Every robot's model topic carries the same newest weights.
                assert settled_after_pause(node, driver, robots)
                model = driver.models['/a'][-1]
                assert driver.models['/b'][-1].version == model.version

                before = node.latest_status()
                new = {'/a': [synthetic_frame(rng, i, stamp=9_000_000_000 + i) for i in range(5)],
                       '/b': [synthetic_frame(rng, i, stamp=9_100_000_000 + i) for i in range(3)]}
                for robot, frames in new.items():
                    for frame in frames:
                        driver.labeled[robot].publish(labeled(frame))
                assert wait_for(lambda: node.latest_status().labeled_frames == 32
                                and node.latest_status().replay_size
                                == before.replay_size + 8, 30.0)
                assert status_shows(driver, lambda s: s.labeled_frames == 32)
                # Per-robot statuses count each robot's own frames.
                assert status_shows(driver, lambda s: s.labeled_frames == 16 + 5, '/a')
                assert status_shows(driver, lambda s: s.labeled_frames == 8 + 3, '/b')
                assert driver.last_status('/a').robot == '/a'
                assert driver.last_status('/b').robot == '/b'
                assert driver.last_status().robot == ''
                assert driver.last_status('/a').updates == driver.last_status().updates

                # Each window scored its robot's new frames with the weights on ssl/model...
                for robot, frames in new.items():
                    probabilities, labels = node.trainer._windows[robot].arrays()
                    np.testing.assert_array_equal(labels[-len(frames):],
                                                  np.stack([f.labels for f in frames]))
                    np.testing.assert_allclose(
                        probabilities[-len(frames):],
                        torch_predictions(model, np.stack([f.payload for f in frames])),
                        atol=1e-5)
                # ...then stored them, not yet drawn for training (paused)...
                buffer = node.trainer.buffer
                stamps = [f.stamp for frames in new.values() for f in frames]
                slots = np.flatnonzero(np.isin(buffer.stamps[:buffer.capacity], stamps))
                assert len(slots) == 8 and (buffer.draws[slots] == 0).all()
                # ...and trains on them once resumed.
                assert call(driver, driver.pause, SetBool.Request(data=False)).success
                assert wait_for(lambda: (buffer.draws[slots] > 0).all(), 60.0)
        finally:
            stop(node, driver)


def test_a_reset_while_paused_publishes_the_fresh_weights_it_scores_with():
    """The robots get the fresh model at once: frames are scored with what they predict with."""
    rng = np.random.default_rng(5)
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters())
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                for index in range(16):
                    driver.labeled[''].publish(labeled(synthetic_frame(rng, index)))
                assert status_shows(driver, lambda s: s.labeled_frames == 16 and s.updates > 0)
                assert call(driver, driver.pause, SetBool.Request(data=True)).success
                assert settled_after_pause(node, driver)
                trained = driver.models[''][-1]
                assert call(driver, driver.reset, Trigger.Request()).success
                assert wait_for(lambda: driver.models[''][-1].version > trained.version, 30.0)
                fresh = driver.models[''][-1]
                assert not np.allclose(torch_predictions(fresh, synthetic_frame(rng, 0).payload),
                                       torch_predictions(trained, synthetic_frame(rng, 0).payload))
                frames = [synthetic_frame(rng, i, stamp=8_000_000_000 + i) for i in range(4)]
                for frame in frames:
                    driver.labeled[''].publish(labeled(frame))
                assert wait_for(lambda: node.latest_status().labeled_frames == 20, 30.0)
                probabilities, _ = node.trainer._pooled.arrays()
                np.testing.assert_allclose(
                    probabilities[-4:],
                    torch_predictions(fresh, np.stack([f.payload for f in frames])), atol=1e-5)
                assert node.trainer.paused and node.trainer.updates == trained.updates
        finally:
            stop(node, driver)


def test_a_float16_trainer_publishes_half_the_bytes_and_a_predictor_takes_them():
    rng = np.random.default_rng(6)
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            model_encoding='float16'))
        predictor = PredictorNode(context=context)
        driver = Driver(context)
        try:
            with spinning(context, node, predictor, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                for index in range(16):
                    driver.labeled[''].publish(labeled(synthetic_frame(rng, index)))
                assert status_shows(driver, lambda s: s.updates > 0)
                assert call(driver, driver.pause, SetBool.Request(data=True)).success
                assert settled_after_pause(node, driver)
                msg = driver.models[''][-1]
                assert msg.encoding == 'float16'
                assert len(msg.data) == 2 * sum(int(np.prod(shape)) for shape in
                                                state_shapes(node.config).values())
                received = read_model_msg(msg, SENSORS, DISTANCES)
                for name, tensor in node.trainer._scoring_model.state_dict().items():
                    np.testing.assert_allclose(received.state[name], tensor.numpy(), rtol=1e-3,
                                               atol=1e-4, err_msg=name)
                assert wait_for(lambda: predictor.model_updates == msg.updates, 30.0)
                assert predictor.counters['model_refused'] == 0
        finally:
            stop(node, predictor, driver)


def test_an_unknown_model_encoding_is_refused_at_start():
    with ros_context() as context, pytest.raises(ValueError, match='model_encoding'):
        TrainerNode(context=context, parameter_overrides=trainer_parameters(
            model_encoding='bfloat16'))


def test_the_hue_shuffle_parameter_sets_the_augmentation_and_a_bad_one_is_refused():
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            hue_shuffle=0.4))
        try:
            assert node.trainer.settings.augmentation.channel_shuffle == 0.4
            assert node.trainer.settings.augmentation.gain == DEFAULT_AUGMENTATION.gain
        finally:
            stop(node)
        with pytest.raises(ValueError, match='channel_shuffle'):
            TrainerNode(context=context, parameter_overrides=trainer_parameters(
                hue_shuffle=1.5))


def test_a_robot_listed_twice_or_an_empty_robot_is_refused_at_start():
    with ros_context() as context:
        for robots in (['a', '/a/'], ['a', ' ']):
            with pytest.raises(ValueError, match='robots'):
                TrainerNode(context=context, parameter_overrides=[
                    *trainer_parameters(), Parameter('robots', value=robots)])


class Streamer(threading.Thread):
    """Publishes labeled frames at about 40 Hz until stopped."""

    def __init__(self, publisher, seed: int = 2) -> None:
        super().__init__(daemon=True)
        self.publisher = publisher
        self.rng = np.random.default_rng(seed)
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.025):
            self.publisher.publish(labeled(synthetic_frame(self.rng, self.sent)))
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5.0)


def test_services_are_answered_while_frames_stream_and_a_restart_resumes(tmp_path):
    path = tmp_path / 'trainer.pt'
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            checkpoint_path=str(path)))
        driver = Driver(context)
        streamer = Streamer(driver.labeled[''])
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                streamer.start()
                assert status_shows(driver, lambda s: s.updates > 3)

                # Pause: training stops while frames are still taken in and scored.
                response = call(driver, driver.pause, SetBool.Request(data=True))
                assert response.success and response.message == 'learning paused'
                assert status_shows(driver, lambda s: s.paused)
                first = len(driver.status['']) - 1
                frozen, seen = (driver.status[''][first].updates,
                                driver.status[''][first].labeled_frames)
                assert status_shows(driver, lambda s: s.labeled_frames >= seen + 20)
                assert {s.updates for s in driver.status[''][first:]} == {frozen}
                assert node.trainer.updates == frozen

                # Resume: training goes on.
                response = call(driver, driver.pause, SetBool.Request(data=False))
                assert response.success and response.message == 'learning resumed'
                assert status_shows(driver, lambda s: not s.paused and s.updates > frozen + 3)

                # Save: a checkpoint the torch loader reads, with the grid and the counters.
                response = call(driver, driver.save, Trigger.Request())
                assert response.success and response.message == f'saved {path}'
                checkpoint = load_checkpoint(path)
                assert frozen < checkpoint['counters']['updates'] <= node.trainer.updates
                assert checkpoint['config'] == node.config
                assert checkpoint['params']['sensor_names'] == SENSORS
                assert checkpoint['params']['distances'] == pytest.approx(DISTANCES)
                build_model(checkpoint)  # the weights fit the config

                # Reset: fresh weights, published as a new version.
                assert wait_for(lambda: bool(driver.models['']), 30.0)
                old = read_model_msg(driver.models[''][-1], SENSORS, DISTANCES)
                response = call(driver, driver.reset, Trigger.Request())
                assert response.success and response.message == 'model reset to fresh weights'
                version = node.trainer.version  # published after the reset from here on
                assert node.trainer.resets == 1
                assert wait_for(lambda: driver.models[''][-1].version > version, 30.0)
                fresh = read_model_msg(driver.models[''][-1], SENSORS, DISTANCES)
                assert not np.allclose(fresh.state['head.4.weight'], old.state['head.4.weight'])
                assert status_shows(driver, lambda s: s.model_version > version)

                sent = streamer.sent
                streamer.stop()
                assert status_shows(driver, lambda s: s.labeled_frames == streamer.sent)
                assert sent > 40 and driver.last_status().labeled_dropped == 0
                assert driver.last_status().labeled_refused == 0
        finally:
            streamer.stop()
            stop(node, driver)  # close() writes the last checkpoint
        assert not node._worker.is_alive()
        updates_at_close = node.trainer.updates
        assert load_checkpoint(path)['counters']['updates'] == updates_at_close

        resumed = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            checkpoint_path=str(path)))
        try:
            assert resumed.trainer.updates == updates_at_close
            assert resumed.trainer.resets == 1
        finally:
            stop(resumed)
        afresh = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            checkpoint_path=str(path), resume=False))
        try:
            assert afresh.trainer.updates == 0
        finally:
            stop(afresh)


def test_intake_and_diagnostics_go_on_while_the_worker_is_stuck(monkeypatch):
    """
    Callbacks only enqueue (a full queue drops and counts); diagnostics never wait.

    A service waits for the worker on the executor's second thread: frames are still taken
    in meanwhile, and the answer comes once the worker is free.
    """
    rng = np.random.default_rng(4)
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            labeled_queue_size=10))
        driver = Driver(context)
        release = threading.Event()
        stuck = threading.Event()
        score_and_store = node.trainer.score_and_store

        def slow_score_and_store(*args, **kwargs):
            stuck.set()
            release.wait(60.0)  # e.g. a long stall of the trainer's computer
            return score_and_store(*args, **kwargs)

        monkeypatch.setattr(node.trainer, 'score_and_store', slow_score_and_store)
        try:
            with spinning(context, node, driver) as executors:
                assert isinstance(executors[0], MultiThreadedExecutor)  # executor_threads = 2
                wait_for_subscribers([driver.labeled['']], node=node)
                driver.labeled[''].publish(labeled(synthetic_frame(rng, 0)))
                assert stuck.wait(30.0)
                assert driver.pause.wait_for_service(timeout_sec=30.0)
                pausing = driver.pause.call_async(SetBool.Request(data=True))
                assert wait_for(lambda: len(node._commands) == 1, 30.0)  # the service waits
                for index in range(1, 31):
                    driver.labeled[''].publish(labeled(synthetic_frame(rng, index)))
                assert wait_for(lambda: node.frames_received() == 31, 30.0)
                # The queue holds 10, the 20 others are dropped and counted at once.
                assert wait_for(lambda: driver.reported('labeled_dropped') == 20
                                and driver.reported('labeled_waiting') == 10
                                and float(driver.diagnostics['worker_busy_s']) >= 1.0, 30.0), \
                    driver.diagnostics
                assert 'labeled dropped' in driver.diagnostics_message
                assert not pausing.done()
                release.set()
                assert wait_for(pausing.done, 30.0) and pausing.result().success
                assert status_shows(driver, lambda s: s.labeled_frames == 11
                                    and s.labeled_dropped == 20)
                assert wait_for(lambda: driver.diagnostics.get('worker_busy_s') == '0.0', 30.0)
        finally:
            release.set()
            stop(node, driver)


@pytest.mark.parametrize('implied', [True, False])
def test_a_centre_sighting_over_dds_trains_the_cells_behind_it_as_obstacles(implied):
    image = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    labels = np.full((len(SENSORS), len(DISTANCES)), np.nan, dtype=np.float32)
    labels[:, :9] = 0.0
    labels[2, 5] = 1.0  # the centre sensor saw something from 5 cm ahead; robot turned at 8
    frame = LabeledResult(stamp=1_000_000_000, pose=np.zeros(3), payload=image, labels=labels,
                          counts=np.where(np.isnan(labels), 0, 1).astype(np.uint8),
                          reason='complete')
    with ros_context() as context:
        node = TrainerNode(context=context, parameter_overrides=trainer_parameters(
            implied_blocking=implied, min_buffer=1000))
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                driver.labeled[''].publish(labeled(frame))
                assert wait_for(lambda: len(node.trainer.buffer) == 1, 30.0)
                assert status_shows(driver, lambda s: s.labeled_frames == 1)
            stored = node.trainer.buffer.labels[0].copy()
            scored = node.trainer._pooled.arrays()[1][0]
        finally:
            stop(node, driver)
    np.testing.assert_array_equal(stored[:, :9], labels[:, :9])  # observed cells as sent
    np.testing.assert_array_equal(scored, labels)  # scoring keeps the observed labels
    if implied:  # 0.05 + 0.132 m: from 19 cm on, every sensor
        assert np.isnan(stored[:, 9:19]).all() and (stored[:, 19:] == 1.0).all()
    else:
        assert np.isnan(stored[:, 9:]).all()


# ---------------------------------------------------------------------- bad labeled frames

def known_labels(value: float, every: int = 1):
    """Set every ``every``-th cell that has readings (counts > 0) to ``value``."""
    def change(msg: LabeledFrame) -> None:
        labels = np.array(msg.labels, dtype=np.float32)
        seen = np.flatnonzero(np.frombuffer(bytes(msg.counts), dtype=np.uint8) > 0)
        labels[seen[::every]] = value
        msg.labels = labels
    return change


def label_without_readings(msg: LabeledFrame) -> None:
    labels = np.array(msg.labels, dtype=np.float32)
    unseen = np.flatnonzero(np.frombuffer(bytes(msg.counts), dtype=np.uint8) == 0)
    labels[unseen[0]] = 0.5
    msg.labels = labels


def image_of_size(width: int, height: int):
    def change(msg: LabeledFrame) -> None:
        msg.image = rgb_to_image_msg(np.full((height, width, 3), 90, dtype=np.uint8),
                                     msg.header)
    return change


def encoding(name: str):
    def change(msg: LabeledFrame) -> None:
        msg.image.encoding = name
    return change


def short_data(msg: LabeledFrame) -> None:
    msg.image.data = bytes(msg.image.data)[:-WIDTH * 3]


def short_step(msg: LabeledFrame) -> None:
    msg.image.step = WIDTH * 3 - 3


def names(values: list[str]):
    def change(msg: LabeledFrame) -> None:
        msg.sensor_names = values
    return change


def distances(values) -> Callable:
    def change(msg: LabeledFrame) -> None:
        msg.distances = np.asarray(values, dtype=np.float32)
    return change


def short_labels(msg: LabeledFrame) -> None:
    msg.labels = np.array(msg.labels, dtype=np.float32)[:-1]


def long_counts(msg: LabeledFrame) -> None:
    msg.counts = bytes(msg.counts) + b'\x01'


#: Every bad kind the trainer refuses (io/labeled_frames.py KINDS), with a change that makes
#: a good frame one of them (reversed sensor names are mapped instead: see their own test).
REFUSED = {
    'labels 7.0': (known_labels(7.0), 'labels_range'),
    'labels -3.0': (known_labels(-3.0), 'labels_range'),
    'labels NaN where counts > 0': (known_labels(math.nan, every=2), 'labels_nan'),
    'a label where counts = 0': (label_without_readings, 'labels_unknown'),
    'a 13x7 image': (image_of_size(13, 7), 'image_size'),
    'a 50x50 image, over max_image_pixels': (image_of_size(50, 50), 'image_too_large'),
    "image encoding 'bayer_zz'": (encoding('bayer_zz'), 'image_encoding'),
    "image encoding 'mono8'": (encoding('mono8'), 'image_encoding'),
    'image data a row short': (short_data, 'image_data'),
    'image step under width x 3': (short_step, 'image_data'),
    'unknown sensor_names': (names(['a', 'b', 'c', 'd', 'e']), 'sensor_names'),
    'a repeated sensor name': (names([SENSORS[1], *SENSORS[1:]]), 'sensor_names'),
    "distances other than the node's": (distances(np.asarray(DISTANCES) + 0.005), 'distances'),
    'a distance fewer': (distances(DISTANCES[:-1]), 'distances'),
    'a label fewer': (short_labels, 'grid_shape'),
    'a count more': (long_counts, 'grid_shape'),
}


def test_every_refused_kind_has_a_case_over_dds():
    assert {kind for _, kind in REFUSED.values()} == set(KINDS)


@pytest.fixture(scope='class')
def running_trainer():
    """Run a training trainer (its own namespace) and a driver; feed 20 good frames first."""
    with ros_context() as context:
        node = TrainerNode(context=context, namespace='validation',
                           parameter_overrides=trainer_parameters(max_image_pixels=2000))
        driver = Driver(context, namespace='/validation',
                        diagnostics_of='/validation/trainer: training')
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.labeled['']], node=node)
                rng = np.random.default_rng(3)
                for index in range(20):
                    driver.labeled[''].publish(labeled(synthetic_frame(rng, index)))
                assert wait_for(lambda: node.latest_status() is not None
                                and node.latest_status().labeled_frames == 20
                                and node.latest_status().updates > 0, 60.0)
                assert wait_for(lambda: driver.reported('labeled_in') >= 20, 30.0)
                yield node, driver
        finally:
            stop(node, driver)


class TestBadLabeledFramesIntoARunningTrainer:
    """Six of each bad kind over DDS: counted by kind on /diagnostics, never scored or stored."""

    @pytest.mark.parametrize('case', list(REFUSED))
    def test_a_bad_labeled_frame_is_counted_by_kind_and_not_stored(self, running_trainer, case):
        node, driver = running_trainer
        change, kind = REFUSED[case]
        rng = np.random.default_rng(len(case))
        before = node.latest_status()
        counted = max(0, driver.reported(f'bad_{kind}'))
        refused = driver.reported('labeled_refused')
        statuses = len(driver.status[''])
        for index in range(6):
            msg = labeled(synthetic_frame(rng, index))
            change(msg)
            driver.labeled[''].publish(msg)
        driver.labeled[''].publish(labeled(synthetic_frame(rng, 7)))  # handled after the six
        assert wait_for(lambda: driver.reported(f'bad_{kind}') == counted + 6
                        and driver.reported('labeled_refused') == refused + 6, 30.0), \
            (kind, driver.diagnostics)
        assert wait_for(lambda: node.latest_status().labeled_frames
                        == before.labeled_frames + 1, 30.0)
        after = node.latest_status()
        assert after.labeled_frames == before.labeled_frames + 1  # the good one only
        assert after.replay_size == before.replay_size + 1
        assert status_shows(driver, lambda s: s.labeled_refused == refused + 6)
        assert kind.replace('_', ' ') in driver.diagnostics_message
        # Training goes on, on frames whose loss is a cross-entropy: never negative.
        assert wait_for(lambda: len(driver.status['']) > statuses + 2, 10.0)
        assert driver.last_status().updates > before.updates
        losses = [status.recent_loss for status in driver.status['']]
        assert all(math.isnan(loss) or loss >= 0.0 for loss in losses), min(losses)

    def test_reversed_sensor_names_are_mapped_into_the_trainers_order(self, running_trainer):
        """The names say which row is which sensor: the reversed rows are put back, counted."""
        node, driver = running_trainer
        rng = np.random.default_rng(11)
        before = node.latest_status()
        mapped = max(0, driver.reported('sensor_names_mapped'))
        frames = [synthetic_frame(rng, index) for index in range(6)]
        for frame in frames:
            reversed_rows = LabeledResult(
                stamp=frame.stamp, pose=frame.pose, payload=frame.payload,
                labels=frame.labels[::-1].copy(), counts=frame.counts[::-1].copy(),
                reason=frame.reason)
            driver.labeled[''].publish(labeled_frame_msg(reversed_rows, SENSORS[::-1],
                                                         DISTANCES, 'camera_link'))
        assert wait_for(lambda: driver.reported('sensor_names_mapped') == mapped + 6, 30.0), \
            driver.diagnostics
        assert wait_for(lambda: node.latest_status().labeled_frames
                        == before.labeled_frames + 6
                        and node.latest_status().replay_size == before.replay_size + 6, 30.0)
        _, scored = node.trainer._pooled.arrays()
        np.testing.assert_array_equal(scored[-6:], np.stack([f.labels for f in frames]))

    def test_saving_without_a_checkpoint_path_says_so(self, running_trainer):
        node, driver = running_trainer
        response = call(driver, driver.save, Trigger.Request())
        assert not response.success and response.message == 'no checkpoint_path set'
