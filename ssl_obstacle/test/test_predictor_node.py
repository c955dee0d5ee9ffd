"""The predictor node over real DDS: camera frames and models in, numpy predictions out."""

from __future__ import annotations

import functools
import math
import pathlib
import signal
import struct
import subprocess
import sys
import threading
import zlib

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import CompressedImage, Image
from ssl_obstacle.core.model import ModelConfig
from ssl_obstacle.core.model_config import state_shapes
from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings
from ssl_obstacle.io.conversions import compressed_to_rgb, resize_rgb
from ssl_obstacle.io.messages import compressed_image_msg, rgb_to_image_msg, time_from_ns
from ssl_obstacle.io.model_messages import MODEL_FIXES, model_weights_msg
from ssl_obstacle.nodes.predictor_node import PredictorNode
from ssl_obstacle.nodes.qos import MODEL_QOS
from ssl_obstacle_msgs.msg import ModelWeights, ObstaclePrediction
from std_msgs.msg import Header
from test_trainer_node import (camera_frame, DISTANCES, HEIGHT, predicted, SENSORS, stamp_of,
                               stop, synthetic_frame, torch_predictions, WIDTH)
import torch
from visualization_msgs.msg import MarkerArray

CONFIG = ModelConfig(image_height=HEIGHT, image_width=WIDTH)
GRID = {'sensor_names': SENSORS, 'distances': DISTANCES}


@functools.cache
def trained(seed: int = 0, steps: int = 5) -> OnlineTrainer:
    """
    Return a trainer that took a few steps and published them (it predicts with them).

    One per arguments, shared (tests only read them). One torch thread, as the trainer node
    trains: two threads on two loaded cores took seconds for these few steps.
    """
    torch.set_num_threads(1)
    trainer = OnlineTrainer(CONFIG, TrainerSettings(min_buffer=4, batch_size=4, seed=seed))
    rng = np.random.default_rng(seed)
    frames = [synthetic_frame(rng, index) for index in range(8)]
    trainer.score_and_store(np.stack([f.payload for f in frames]),
                            np.stack([f.labels for f in frames]), [f.stamp for f in frames])
    trainer.train_steps(steps)
    trainer.published = trainer.publish()
    return trainer


def model_msg(trainer: OnlineTrainer, encoding: str = 'float32', *, config=CONFIG,
              sensors=SENSORS, distances=DISTANCES, state=None,
              confidence=None) -> ModelWeights:
    """Return the ModelWeights a trainer node publishes for ``trainer``'s published weights."""
    weights = trainer.published
    return model_weights_msg(Header(stamp=time_from_ns(1)), config, sensors, distances,
                             weights.state if state is None else state, weights.updates,
                             weights.version, f'/test/trainer@{trainer.settings.seed}',
                             encoding, weights.cell_confidence if confidence is None
                             else confidence)


def confidence_of(prediction: ObstaclePrediction) -> np.ndarray:
    return np.reshape(prediction.confidence, (len(SENSORS), len(DISTANCES)))


def predictor_parameters(**overrides) -> list[Parameter]:
    values = {'status_period': 0.2, **overrides}
    return [Parameter(name, value=value) for name, value in values.items()]


def probabilities_of(prediction: ObstaclePrediction) -> np.ndarray:
    return np.reshape(prediction.probabilities, (len(SENSORS), len(DISTANCES)))


class Driver(Node):
    """A robot's camera and a trainer's model topic; watches the predictor's outputs."""

    def __init__(self, context, namespace: str = '', model_topic: bool = True) -> None:
        super().__init__('predictor_driver', context=context, namespace=namespace)
        self.camera = self.create_publisher(Image, 'camera/image_raw', 10)
        self.compressed = self.create_publisher(CompressedImage, 'camera/image_raw/compressed',
                                                10)
        self.model = (self.create_publisher(ModelWeights, 'ssl/model', MODEL_QOS)
                      if model_topic else None)
        self.predictions: list[ObstaclePrediction] = []
        self.overlays: list[Image] = []
        self.markers: list[MarkerArray] = []
        self.create_subscription(ObstaclePrediction, 'ssl/predictions', self.predictions.append,
                                 100)
        self.create_subscription(Image, 'ssl/prediction_image', self.overlays.append, 10)
        self.create_subscription(MarkerArray, 'ssl/prediction_markers', self.markers.append, 10)
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_message = ''
        self._name = f'{namespace.rstrip("/")}/predictor: predicting'
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self._name:
                self.diagnostics = {value.key: value.value for value in status.values}
                self.diagnostics_message = status.message

    def reported(self, key: str) -> int:
        return int(self.diagnostics.get(key, -1))

    def stamps(self) -> list[int]:
        return [stamp_of(p) for p in self.predictions]


def delivered(node: PredictorNode, publisher, msg, timeout: float = 30.0) -> None:
    """Publish a camera frame until the predictor's callback has taken it (best effort)."""
    count = node.received['camera_frames']
    for _ in range(int(timeout / 3.0)):
        publisher.publish(msg)
        if wait_for(lambda: node.received['camera_frames'] > count, 3.0):
            return
    raise AssertionError('the predictor never received the camera frame')


def load(driver: Driver, node: PredictorNode, msg: ModelWeights, counter: str = 'models_loaded',
         timeout: float = 30.0) -> None:
    """Publish a model and wait until the predictor's worker has counted it under ``counter``."""
    before = node.counters[counter]
    driver.model.publish(msg)
    assert wait_for(lambda: node.counters[counter] == before + 1, timeout), (counter,
                                                                             node.counters)


# ---------------------------------------------------------------------- predictions

def test_numpy_predictions_over_dds_equal_the_trainers_torch_predictions():
    trainer = trained()
    rng = np.random.default_rng(10)
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters())
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                load(driver, node, model_msg(trainer))
                # Frames at the model's size and larger ones (resized by area first).
                for index, (height, width) in enumerate([(HEIGHT, WIDTH), (64, 80), (480, 640),
                                                         (HEIGHT, WIDTH)]):
                    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                    image[height // 4:, :width // 3] = (220, 30, 30)
                    stamp = 5_000_000_000 + index * 33_000_000
                    prediction = predicted(driver, driver.camera, camera_frame(image, stamp))
                    np.testing.assert_allclose(
                        probabilities_of(prediction),
                        trainer.predict(resize_rgb(image, WIDTH, HEIGHT)), atol=1e-5)
                    assert prediction.model_updates == trainer.updates
                    assert prediction.header.frame_id == 'thymio/camera_link'
                    assert wait_for(lambda stamp=stamp: stamp in {
                        stamp_of(m) for m in driver.overlays} and stamp in {
                        stamp_of(m.markers[0]) for m in driver.markers}, 20.0)
                    overlay = next(m for m in driver.overlays if stamp_of(m) == stamp)
                    assert (overlay.height, overlay.width) == (height, width)
                assert wait_for(lambda: driver.reported('predicted') == 4, 20.0), \
                    driver.diagnostics
                assert driver.reported('model_updates') == trainer.updates
                assert driver.diagnostics['torch_loaded'] in ('True', 'False')
        finally:
            stop(node, driver)
    prediction = driver.predictions[0]
    assert list(prediction.sensor_names) == SENSORS
    np.testing.assert_allclose(prediction.distances, DISTANCES, atol=1e-6)
    assert all(0.0 <= p <= 1.0 for p in prediction.probabilities)
    # Each cell's skill travels with the weights; every prediction's confidence is that
    # skill times the prediction's own certainty |2P - 1|, in [0, 1].
    skill = trainer.published.cell_confidence
    assert skill is not None and 0 < skill.max() <= 1 and skill.min() < skill.max()
    for each in driver.predictions:
        confidence = confidence_of(each)
        assert ((confidence >= 0) & (confidence <= 1)).all()
        np.testing.assert_allclose(confidence,
                                   skill * np.abs(2 * probabilities_of(each) - 1), atol=1e-6)
    marker = driver.markers[0].markers[0]
    assert marker.header.frame_id == 'thymio/base_link'
    assert len(marker.points) == len(SENSORS) * len(DISTANCES)


def test_only_the_newest_frame_is_predicted_and_every_frame_is_accounted_for(monkeypatch):
    """A worker held up on one frame skips those that came meanwhile but the newest."""
    trainer = trained()
    rng = np.random.default_rng(11)
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters())
        driver = Driver(context)
        gate, entered = threading.Event(), threading.Event()
        predict = node._predict

        def slow_predict(msg, model):
            entered.set()
            gate.wait(60.0)  # e.g. the robot's computer busy elsewhere
            return predict(msg, model)

        monkeypatch.setattr(node, '_predict', slow_predict)
        frames = [camera_frame(synthetic_frame(rng, index).payload, 6_000_000_000 + index)
                  for index in range(7)]
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                delivered(node, driver.camera, frames[0])  # no model yet: counted, skipped
                assert wait_for(lambda: node.counters['no_model'] == 1, 20.0)
                assert wait_for(lambda: 'no model yet' in driver.diagnostics_message, 20.0)
                load(driver, node, model_msg(trainer))
                delivered(node, driver.camera, frames[1])
                assert entered.wait(30.0)  # the worker predicts frame 1...
                for frame in frames[2:]:  # ...while five more arrive, each replacing the last
                    delivered(node, driver.camera, frame)
                assert node.received['stale_dropped'] == 4
                gate.set()
                assert wait_for(lambda: node.counters['predicted'] == 2, 30.0)
                assert wait_for(lambda: len(driver.predictions) == 2, 30.0)
                assert driver.stamps() == [stamp_of(frames[1]), stamp_of(frames[6])]
                # predicted + stale + no model + refused: every frame received, once.
                assert wait_for(lambda: driver.reported('predicted') == 2, 20.0)
                values = {k: driver.reported(k) for k in ('camera_frames', 'predicted',
                                                          'stale_dropped', 'no_model',
                                                          'camera_refused')}
                assert values == {'camera_frames': 7, 'predicted': 2, 'stale_dropped': 4,
                                  'no_model': 1, 'camera_refused': 0}, driver.diagnostics
        finally:
            gate.set()
            stop(node, driver)


def test_a_float16_model_is_taken_and_predicts_as_its_decoded_weights():
    first, second = trained(seed=0), trained(seed=1, steps=9)
    rng = np.random.default_rng(12)
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters())
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                load(driver, node, model_msg(first))
                half = model_msg(second, encoding='float16')
                assert len(half.data) * 2 == len(model_msg(second).data)  # half the bytes
                load(driver, node, half)
                image = synthetic_frame(rng, 0).payload
                prediction = predicted(driver, driver.camera, camera_frame(image, 7_000_000_000))
                assert prediction.model_updates == second.updates != first.updates
                got = probabilities_of(prediction)
                np.testing.assert_allclose(got, torch_predictions(half, image)[0], atol=1e-5)
                np.testing.assert_allclose(got, second.predict(image), atol=5e-3)
                assert not np.allclose(got, first.predict(image), atol=1e-3)
        finally:
            stop(node, driver)


# ---------------------------------------------------------------------- refused models

def weights_with(trainer: OnlineTrainer, name: str, value) -> dict[str, np.ndarray]:
    state = {k: v.copy() for k, v in trainer.published.state.items()}
    state[name] = value(state[name]) if callable(value) else value
    return state


def random_state(config: ModelConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(0.0, 0.1, size=shape).astype(np.float32)
            for name, shape in state_shapes(config).items()}


def with_nan(array: np.ndarray) -> np.ndarray:
    array.flat[0] = math.nan
    return array


def with_inf(array: np.ndarray) -> np.ndarray:
    array.flat[-1] = math.inf
    return array


def changed(msg: ModelWeights, **fields) -> ModelWeights:
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


SHORT = ModelConfig(num_distances=len(DISTANCES) - 1, image_height=HEIGHT, image_width=WIDTH)

#: Models a predictor refuses, by what is wrong with them, and the counter that reports it.
BAD_MODELS = {
    'other distances': (lambda t: model_msg(t, distances=np.asarray(DISTANCES) + 0.005),
                        'model_grid'),
    'a distance fewer': (lambda t: model_msg(t, config=SHORT, distances=DISTANCES[:-1],
                                             state=random_state(SHORT)), 'model_grid'),
    'sensor names in another order': (lambda t: model_msg(t, sensors=SENSORS[::-1]),
                                      'model_grid'),
    'other sensor names': (lambda t: model_msg(t, sensors=['a', 'b', 'c', 'd', 'e']),
                           'model_grid'),
    'an image too small for the network': (lambda t: changed(model_msg(t), image_height=4),
                                           'model_config'),
    'a tensor of the wrong shape': (lambda t: model_msg(t, state=weights_with(
        t, 'head.2.weight', lambda w: w[:, :-1])), 'model_layout'),
    'a tensor missing': (lambda t: model_msg(t, state={
        k: v for k, v in t.published.state.items() if k != 'head.4.bias'}), 'model_layout'),
    'other filters than its tensors': (lambda t: changed(model_msg(t), filters=[10, 10, 9]),
                                       'model_layout'),
    'data cut short': (lambda t: changed(model_msg(t), data=bytes(model_msg(t).data)[:-4]),
                       'model_layout'),
    'ranks that do not add up': (lambda t: changed(model_msg(t), tensor_ranks=bytes(
        [4] * len(t.published.state))), 'model_layout'),
    "encoding 'bfloat16'": (lambda t: changed(model_msg(t), encoding='bfloat16'),
                            'model_encoding'),
    'a NaN weight': (lambda t: model_msg(t, state=weights_with(t, 'features.0.weight', with_nan)),
                     'model_values'),
    'an infinite weight': (lambda t: model_msg(t, state=weights_with(t, 'head.4.bias',
                                                                     with_inf)), 'model_values'),
    'a cell confidence above 1': (lambda t: model_msg(t, confidence=np.full(
        (len(SENSORS), len(DISTANCES)), 1.5, np.float32)), 'model_values'),
    'cell confidences of another grid': (lambda t: model_msg(t, confidence=np.full(
        3, 0.5, np.float32)), 'model_values'),
}


def test_every_refused_model_kind_has_a_case_over_dds():
    assert {kind for _, kind in BAD_MODELS.values()} == set(MODEL_FIXES)


@pytest.fixture(scope='class')
def running_predictor():
    """Run a predictor with a good model (every log line kept) and a driver."""
    trainer = trained()
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters(
            max_image_pixels=6000))  # 80x64 fits, 100x100 does not
        driver = Driver(context)
        logged: list[str] = []
        emit = node._log_bad._emit

        def keep(message: str) -> None:
            logged.append(message)
            emit(message)

        node._log_bad._emit, node._log_bad._period = keep, 0.0  # every line, not 1 per 5 s
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                load(driver, node, model_msg(trainer))
                yield node, driver, trainer, logged
        finally:
            stop(node, driver)


class TestARunningPredictor:
    """Bad models and bad camera frames: refused, counted, and predicting goes on."""

    stamp = 8_000_000_000

    def predicts_with(self, driver: Driver, trainer: OnlineTrainer) -> None:
        """Check that the next frame is predicted with ``trainer``'s model."""
        TestARunningPredictor.stamp += 1_000_000
        image = synthetic_frame(np.random.default_rng(self.stamp), 0).payload
        prediction = predicted(driver, driver.camera, camera_frame(image, self.stamp))
        assert prediction.model_updates == trainer.updates
        np.testing.assert_allclose(probabilities_of(prediction), trainer.predict(image),
                                   atol=1e-5)

    @pytest.mark.parametrize('case', list(BAD_MODELS))
    def test_a_bad_model_is_refused_and_the_previous_one_kept(self, running_predictor, case):
        node, driver, trainer, logged = running_predictor
        build, kind = BAD_MODELS[case]
        other = trained(seed=2, steps=3)  # weights that would change every prediction
        model = node.model
        counted, refused = node.counters[kind], node.counters['model_refused']
        lines = len(logged)
        load(driver, node, build(other), counter=kind)
        assert node.counters['model_refused'] == refused + 1
        assert node.model is model and node.counters['models_loaded'] == 1
        assert wait_for(lambda: driver.reported(kind) == counted + 1, 20.0), driver.diagnostics
        assert f'({kind}: {counted + 1} so far)' in '\n'.join(logged[lines:])
        assert 'predicting with the previous model' in logged[-1]
        assert kind[6:].replace('_', ' ') in driver.diagnostics_message
        self.predicts_with(driver, trainer)

    @pytest.mark.parametrize('change, kind', [
        (lambda m: rgb_to_image_msg(np.full((100, 100, 3), 90, np.uint8), m.header),
         'image_too_large'),
        (lambda m: Image(header=m.header, height=32, width=40, encoding='rgb8', step=120,
                         data=bytes(100)), 'image_size'),
        (lambda m: Image(header=m.header, height=32, width=40, encoding='rgb8', step=100,
                         data=bytes(3200)), 'image_size'),
        (lambda m: Image(header=m.header, height=2, width=2, encoding='32FC1', step=16,
                         data=bytes(32)), 'image_encoding'),
    ], ids=['over max_image_pixels', 'data short', 'step short', 'encoding 32FC1'])
    def test_a_bad_camera_frame_gets_no_prediction_and_the_next_does(
            self, running_predictor, change, kind):
        node, driver, trainer, _ = running_predictor
        counted = node.counters[f'camera_{kind}']
        TestARunningPredictor.stamp += 1_000_000
        bad = change(camera_frame(synthetic_frame(np.random.default_rng(0), 0).payload,
                                  self.stamp))
        delivered(node, driver.camera, bad)
        assert wait_for(lambda: node.counters[f'camera_{kind}'] == counted + 1, 20.0)
        assert wait_for(lambda: driver.reported(f'camera_{kind}') == counted + 1, 20.0)
        self.predicts_with(driver, trainer)
        assert stamp_of(bad) not in driver.stamps()


def png_bomb(width: int, height: int) -> bytes:
    """Return a real PNG of black rgb pixels: a few hundred kB declaring width x height."""
    packer = zlib.compressobj(9)
    row = b'\x00' * (1 + 3 * width)  # filter byte 0, then the row's pixels
    data = b''.join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)  # 8-bit rgb
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', data)
            + chunk(b'IEND', b''))


def test_a_png_bomb_and_garbage_on_the_compressed_camera_are_refused_and_predicting_goes_on():
    """8000x8000 declared (192 MB decoded) in 190 kB: refused from its header, counted."""
    trainer = trained()

    def header(stamp: int) -> Header:
        return Header(stamp=time_from_ns(stamp), frame_id='camera_link')

    bomb = CompressedImage(header=header(21_000_000_000), format='png',
                           data=png_bomb(8000, 8000))
    garbage = CompressedImage(header=header(22_000_000_000), format='jpeg',
                              data=b'\xff\xd8\xff\xe0 not really a jpeg')
    image = synthetic_frame(np.random.default_rng(0), 0).payload
    good = compressed_image_msg(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1),
                                header(23_000_000_000))
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters(
            camera_transport='compressed'))
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.compressed], node=node)
                load(driver, node, model_msg(trainer))
                delivered(node, driver.compressed, bomb)
                assert wait_for(lambda: driver.reported('camera_image_too_large') == 1, 30.0), \
                    driver.diagnostics
                delivered(node, driver.compressed, garbage)
                assert wait_for(lambda: driver.reported('camera_image_decode') == 1, 30.0), \
                    driver.diagnostics
                prediction = predicted(driver, driver.compressed, good)
                expected = trainer.predict(resize_rgb(compressed_to_rgb(good), WIDTH, HEIGHT))
                np.testing.assert_allclose(probabilities_of(prediction), expected, atol=1e-5)
                assert wait_for(lambda: driver.reported('camera_refused') == 2, 20.0)
        finally:
            stop(node, driver)
    assert driver.stamps() == [23_000_000_000]
    assert node.counters['predicted'] == 1


# ---------------------------------------------------------------------- model_file

def test_a_model_file_predicts_from_the_start_without_any_trainer(tmp_path):
    trainer = trained()
    path = tmp_path / 'trainer.pt'
    trainer.save(path, GRID)
    image = synthetic_frame(np.random.default_rng(13), 1).payload
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters(
            model_file=str(path)))
        driver = Driver(context, model_topic=False)  # nothing on ssl/model
        try:
            assert node.model is not None and node.model_updates == trainer.updates
            assert str(path) in node.model_source
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                prediction = predicted(driver, driver.camera, camera_frame(image, 9_000_000_000))
                assert prediction.model_updates == trainer.updates
                np.testing.assert_allclose(probabilities_of(prediction), trainer.predict(image),
                                           atol=1e-5)
                np.testing.assert_allclose(
                    confidence_of(prediction),
                    trainer.cell_confidence * np.abs(2 * probabilities_of(prediction) - 1),
                    atol=1e-6)
                assert wait_for(lambda: driver.reported('predicted') == 1, 20.0)
                assert driver.reported('models_loaded') == 1
                assert driver.reported('models_received') == 0
                assert driver.reported('no_model') == 0
        finally:
            stop(node, driver)


def test_a_model_on_ssl_model_replaces_the_model_file(tmp_path):
    first, second = trained(seed=0), trained(seed=1, steps=8)
    path = tmp_path / 'trainer.pt'
    first.save(path, GRID)
    image = synthetic_frame(np.random.default_rng(14), 1).payload
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters(
            model_file=str(path)))
        driver = Driver(context)
        try:
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                prediction = predicted(driver, driver.camera, camera_frame(image, 9_100_000_000))
                assert prediction.model_updates == first.updates
                load(driver, node, model_msg(second))
                prediction = predicted(driver, driver.camera, camera_frame(image, 9_200_000_000))
                assert prediction.model_updates == second.updates
                np.testing.assert_allclose(probabilities_of(prediction), second.predict(image),
                                           atol=1e-5)
        finally:
            stop(node, driver)


def other_grid_checkpoint(path: pathlib.Path, num_distances: int, grid) -> None:
    trainer = OnlineTrainer(ModelConfig(num_distances=num_distances, image_height=HEIGHT,
                                        image_width=WIDTH))
    trainer.save(path, grid)


def truncated(path: pathlib.Path) -> None:
    trained().save(path, GRID)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


BAD_FILES = {
    'missing': lambda path: None,
    'not a checkpoint': lambda path: path.write_bytes(b'not a checkpoint'),
    'cut in half': truncated,
    'other distances': lambda path: other_grid_checkpoint(path, len(DISTANCES), {
        'sensor_names': SENSORS, 'distances': [d + 0.005 for d in DISTANCES]}),
    'a distance fewer': lambda path: other_grid_checkpoint(path, len(DISTANCES) - 1, {
        'sensor_names': SENSORS, 'distances': DISTANCES[:-1]}),
    'sensor names in another order': lambda path: other_grid_checkpoint(path, len(DISTANCES), {
        'sensor_names': SENSORS[::-1], 'distances': DISTANCES}),
    'no grid and another size': lambda path: other_grid_checkpoint(path, len(DISTANCES) - 1,
                                                                   None),
}


@pytest.mark.parametrize('case', list(BAD_FILES))
def test_a_bad_model_file_is_logged_and_the_predictor_waits_for_ssl_model(tmp_path, capfd,
                                                                          case):
    path = tmp_path / 'trainer.pt'
    BAD_FILES[case](path)
    trainer = trained()
    image = synthetic_frame(np.random.default_rng(15), 1).payload
    with ros_context() as context:
        node = PredictorNode(context=context, parameter_overrides=predictor_parameters(
            model_file=str(path)))
        driver = Driver(context)
        try:
            assert node.model is None and node.counters['models_loaded'] == 0
            assert wait_for(lambda: f'cannot predict with model_file {path}'
                            in capfd.readouterr().err, 10.0)
            with spinning(context, node, driver):
                wait_for_subscribers([driver.camera], node=node)
                delivered(node, driver.camera, camera_frame(image, 9_300_000_000))
                assert wait_for(lambda: node.counters['no_model'] == 1, 20.0)
                assert wait_for(lambda: 'no model yet' in driver.diagnostics_message, 20.0)
                load(driver, node, model_msg(trainer))
                prediction = predicted(driver, driver.camera, camera_frame(image, 9_400_000_000))
                assert prediction.model_updates == trainer.updates
        finally:
            stop(node, driver)
    assert driver.stamps() == [9_400_000_000]


# ---------------------------------------------------------------------- no torch

def test_the_predictor_process_imports_no_torch_and_predicts_from_its_model_file(tmp_path):
    """As on the robot's computer: a process of its own, over DDS, torch never loaded."""
    trainer = trained()
    path = tmp_path / 'trainer.pt'
    trainer.save(path, GRID)
    image = synthetic_frame(np.random.default_rng(16), 1).payload
    log = tmp_path / 'predictor.log'
    with open(log, 'w', encoding='utf-8') as output:
        process = subprocess.Popen(
            [sys.executable, '-m', 'ssl_obstacle.nodes.predictor_node', '--ros-args',
             '-r', '__ns:=/torchless', '-p', f'model_file:={path}', '-p', 'status_period:=0.2'],
            stdout=output, stderr=subprocess.STDOUT)  # this run's environment (conftest.py)
    try:
        with ros_context() as context:
            driver = Driver(context, namespace='/torchless', model_topic=False)
            try:
                with spinning(context, driver):
                    assert wait_for(lambda: driver.camera.get_subscription_count() >= 1, 60.0), \
                        log.read_text()
                    prediction = predicted(driver, driver.camera,
                                           camera_frame(image, 9_500_000_000), timeout=60.0)
                    assert prediction.model_updates == trainer.updates
                    np.testing.assert_allclose(probabilities_of(prediction),
                                               trainer.predict(image), atol=1e-5)
                    assert wait_for(lambda: driver.reported('predicted') >= 1, 30.0), \
                        log.read_text()
                    assert driver.diagnostics['torch_loaded'] == 'False'
                    assert driver.reported('models_loaded') == 1
            finally:
                driver.destroy_node()
        process.send_signal(signal.SIGINT)
        assert process.wait(30.0) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10.0)
    assert 'stopping after' in log.read_text()
