"""
The online learners' logic (core/online.py, online_process.py): order, learning, state.

Prequential order, learning, threads, the training process, checkpoints and resets.

A small network (32×40 input, 3 sensors, 4 distances) keeps these fast; it is the real
ObstacleNet and the real training path, only sized down.
"""

import gc
import threading
import time

import numpy as np
import pytest
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.metrics import auc_by_distance, roc_auc
from ssl_obstacle.core.model import ModelConfig, ObstacleNet, predict_probabilities
from ssl_obstacle.core.online import LearnerSettings, OnlineLearner, window_aucs
from ssl_obstacle.core.online_process import ProcessOnlineLearner, SNAPSHOT_POOL
import torch

CONFIG = ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=40)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Predict in one thread, and restore this thread's count afterwards for other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings(**overrides) -> LearnerSettings:
    values = {'batch_size': 64, 'min_buffer': 8, 'buffer_size': 500,
              'max_updates_per_second': 0.0, 'auc_window': 200, 'seed': 0}
    values.update(overrides)
    return LearnerSettings(**values)


def synthetic(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Return frames where a coloured square decides the labels.

    A red square is an obstacle in front of the sensor on its side (left, centre or right
    third of the image); a big one is seen at every distance, a small one only at the far
    ones (0.5 … 1 of the range). A blue square is no obstacle at all. About 10 % of the
    cells are unknown.
    """
    height, width = CONFIG.image_height, CONFIG.image_width
    images = rng.integers(60, 140, size=(count, height, width, 3)).astype(np.uint8)
    labels = np.zeros((count, CONFIG.num_sensors, CONFIG.num_distances), dtype=np.float32)
    for i in range(count):
        sensor = int(rng.integers(0, 3))
        big = bool(rng.random() < 0.5)
        red = bool(rng.random() < 0.5)
        side = 12 if big else 5
        x0 = sensor * width // 3 + int(rng.integers(0, width // 3 - side + 1))
        y0 = int(rng.integers(0, height - side + 1))
        colour = (220, 30, 30) if red else (30, 30, 220)
        images[i, y0:y0 + side, x0:x0 + side] = colour
        if red:
            labels[i, sensor, (0 if big else 2):] = 1.0
    labels[rng.random(labels.shape) < 0.1] = np.nan
    return images, labels


def fill(learner: OnlineLearner, count: int, seed: int = 1, start: int = 0) -> None:
    images, labels = synthetic(np.random.default_rng(seed), count)
    for i in range(count):
        learner.add_labeled(images[i], labels[i], start + i)


def held_in(learner: OnlineLearner, stamp: int) -> bool:
    return stamp in learner.buffer.stamps[:len(learner.buffer)].tolist()


def test_a_frame_is_scored_before_it_is_stored_or_trained_on():
    learner = OnlineLearner(CONFIG, settings(augment=False))
    fill(learner, 32)
    assert learner.train_steps(5) == 5
    image, labels = (array[0] for array in synthetic(np.random.default_rng(99), 1))
    expected = learner.predict(image)  # what the model before the add says
    seen_at_add = []
    original_add = learner.buffer.add

    def add_spy(*args, **kwargs):
        probs, scored = learner.prequential_window()
        seen_at_add.append((len(probs), probs[-1].copy(), scored[-1].copy()))
        return original_add(*args, **kwargs)

    learner.buffer.add = add_spy
    updates = learner.updates
    assert not held_in(learner, 12345)
    returned = learner.add_labeled(image, labels, 12345)
    # Scored by the pre-add model, recorded in the window, and only then stored.
    np.testing.assert_array_equal(returned, expected)
    assert len(seen_at_add) == 1
    count, window_probs, window_labels = seen_at_add[0]
    assert count == 33
    np.testing.assert_array_equal(window_probs, expected)
    np.testing.assert_array_equal(window_labels, labels)
    assert held_in(learner, 12345)
    # add_labeled never trains; training afterwards moves the prediction.
    assert learner.updates == updates
    learner.train_steps(20)
    assert not np.allclose(learner.predict(image), returned)


def test_frames_without_known_cells_are_scored_but_not_stored():
    learner = OnlineLearner(CONFIG, settings())
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    unknown = np.full((3, 4), np.nan, dtype=np.float32)
    prediction = learner.add_labeled(image, unknown, 1)
    assert prediction.shape == (3, 4) and np.isfinite(prediction).all()
    assert learner.labeled_frames == 1 and len(learner.buffer) == 0
    with pytest.raises(ValueError):
        learner.add_labeled(image, np.zeros((3, 5)), 2)
    with pytest.raises(ValueError):  # the camera's size, not the model's
        learner.predict(np.zeros((48, 40, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        learner.predict(image.astype(np.float32))
    assert learner.labeled_frames == 1


def test_training_targets_are_completed_but_scores_use_the_observed_labels():
    learner = OnlineLearner(CONFIG, settings())
    seen: list[np.ndarray] = []

    def fill_far(labels: np.ndarray) -> np.ndarray:
        seen.append(labels.copy())
        out = labels.copy()
        out[:, -1] = 1.0
        return out

    learner.label_completion = fill_far
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    observed = np.array([[0, 1, np.nan, np.nan]] * 3, dtype=np.float32)
    learner.add_labeled(image, observed, 7)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], observed)
    np.testing.assert_array_equal(learner.buffer.labels[0], [[0, 1, np.nan, 1]] * 3)
    np.testing.assert_array_equal(learner._window_labels[0], observed)  # scored as observed
    # A frame with nothing known is neither stored nor completed into something.
    learner.add_labeled(image, np.full((3, 4), np.nan, np.float32), 8)
    assert len(seen) == 1 and len(learner.buffer) == 1


def test_no_training_below_min_buffer():
    learner = OnlineLearner(CONFIG, settings(min_buffer=20))
    fill(learner, 19)
    assert learner.train_steps(3) == 0 and learner.updates == 0
    fill(learner, 1, seed=2, start=100)
    assert learner.train_steps(3) == 3 and learner.updates == 3


def test_learns_the_synthetic_task_to_auc_095_on_held_out_frames():
    torch.manual_seed(0)  # dropout
    learner = OnlineLearner(CONFIG, settings(buffer_size=2000, auc_window=2000))
    fill(learner, 1500, seed=3)
    test_images, test_labels = synthetic(np.random.default_rng(4), 400)
    auc = float('nan')
    for _ in range(15):  # at most 15 × 100 = 1500 updates of batch 64
        assert learner.train_steps(100) == 100
        probabilities = learner.predict(test_images)
        auc = roc_auc(probabilities, test_labels)
        if auc >= 0.95:
            break
    assert auc >= 0.95, f'held-out AUC {auc:.3f} after {learner.updates} updates'
    print(f'held-out AUC {auc:.3f} after {learner.updates} updates')
    # Per distance too, and the prequential figures are well defined.
    assert np.nanmin(auc_by_distance(probabilities, test_labels)) > 0.9
    status = learner.status()
    assert status.updates == learner.updates <= 1500
    assert status.labeled_frames == 1500 and status.replay_size == 1500
    assert status.auc_by_distance.shape == (4,) and 0.0 <= status.auc <= 1.0
    assert np.isfinite(status.recent_loss)


def test_running_auc_covers_the_last_window_and_is_nan_without_both_classes():
    learner = OnlineLearner(CONFIG, settings(auc_window=50))
    status = learner.status()
    assert np.isnan(status.auc) and np.isnan(status.recent_loss)
    assert status.auc_by_distance.shape == (4,) and np.isnan(status.auc_by_distance).all()
    fill(learner, 120)
    probs, labels = learner.prequential_window()
    assert probs.shape == labels.shape == (50, 3, 4)
    status = learner.status()
    assert status.window_frames == 50 and status.labeled_frames == 120
    np.testing.assert_allclose(status.auc_by_distance, auc_by_distance(probs, labels))
    assert status.auc == pytest.approx(roc_auc(probs, labels))
    # Labels only negative at distance 0: NaN there, defined elsewhere.
    learner = OnlineLearner(CONFIG, settings(auc_window=50))
    images, labels = synthetic(np.random.default_rng(5), 60)
    labels[:, :, 0] = 0.0
    for i in range(60):
        learner.add_labeled(images[i], labels[i], i)
    by_distance = learner.status().auc_by_distance
    assert np.isnan(by_distance[0]) and np.isfinite(by_distance[1:]).all()


class RecordingLearner(OnlineLearner):
    """Keep an independent copy of the weights of every published version."""

    def _publish(self) -> None:
        super()._publish()
        if not hasattr(self, 'published'):
            self.published = {}
        self.published[self._snapshot.version] = {
            key: value.detach().clone()
            for key, value in self.predicting_model().state_dict().items()}


def test_background_training_with_concurrent_adds_and_consistent_predictions():
    learner = RecordingLearner(CONFIG, settings(train_threads=1))
    fill(learner, 16)
    errors: list[BaseException] = []
    records: list[tuple[int, np.ndarray, int]] = []
    seen_versions: set[int] = set()
    stop = threading.Event()
    images, labels = synthetic(np.random.default_rng(6), 400)

    def adder() -> None:
        try:
            i = 0
            while not stop.is_set():
                learner.add_labeled(images[i % 400], labels[i % 400], 1000 + i)
                i += 1
                time.sleep(0.002)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    def predictor() -> None:
        try:
            i = 0
            while not stop.is_set():
                probabilities, version = learner.predict_with_version(images[i % 400])
                records.append((i % 400, probabilities, version))
                seen_versions.add(version)
                i += 1
        except Exception as error:  # reported by the main thread
            errors.append(error)

    learner.start()
    threads = [threading.Thread(target=adder), threading.Thread(target=predictor)]
    for thread in threads:
        thread.start()
    # Run until training, adding and predicting have all overlapped enough, however busy the
    # machine (a fixed 2 s was too short beside two CPU-bound processes).
    assert wait(lambda: errors or (learner.updates > 0 and learner.labeled_frames > 100
                                   and len(seen_versions) > 1), timeout=120.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert learner.stop(timeout=5.0)
    assert not errors, errors
    assert learner.error is None and not learner.running
    assert learner.updates > 0 and learner.labeled_frames > 100
    assert all(np.isfinite(probs).all() for _, probs, _ in records)
    versions = [version for _, _, version in records]
    assert len(set(versions)) > 1, 'predictions should have seen several snapshots'
    # Every prediction equals a recomputation with the weights of the version it reports:
    # no prediction ever ran on a mix of two versions.
    model = ObstacleNet(CONFIG)
    step = max(1, len(records) // 150)
    for index, probabilities, version in records[::step]:
        model.load_state_dict(learner.published[version])
        again = predict_probabilities(model, images[index][None])[0]
        np.testing.assert_allclose(probabilities, again, rtol=0, atol=1e-5)


def test_pause_stops_updates_and_resume_restarts_them():
    learner = OnlineLearner(CONFIG, settings(max_updates_per_second=50.0))
    fill(learner, 16)
    learner.start()
    try:
        deadline = time.monotonic() + 10.0
        while learner.updates == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert learner.updates > 0
        learner.pause()  # returns after a step in progress has ended
        assert learner.paused and learner.status().paused
        frozen = learner.updates
        fill(learner, 8, seed=7, start=100)  # frames still arrive and are scored
        time.sleep(0.4)  # not a wait for anything: steps would happen meanwhile
        assert learner.updates == frozen
        assert learner.labeled_frames == 24
        learner.resume()
        deadline = time.monotonic() + 10.0
        while learner.updates == frozen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert learner.updates > frozen and not learner.paused
    finally:
        assert learner.stop()


def test_pause_returns_only_after_the_step_in_progress():
    """After pause() no step ends: a test (or the node's service) needs no sleep to be sure."""
    learner = OnlineLearner(CONFIG, settings())
    fill(learner, 16)
    in_step = threading.Event()
    step = learner._train_once

    def slow_step() -> float:
        with learner._train_lock:
            in_step.set()
            time.sleep(0.3)  # a step on a busy machine
            return step()

    learner._train_once = slow_step
    learner.start()
    try:
        assert in_step.wait(30.0)
        learner.pause()
        frozen = learner.updates
        assert frozen >= 1  # the step under way when pause() was called has ended
        time.sleep(0.5)  # not a wait for anything: a step would end meanwhile
        assert learner.updates == frozen
    finally:
        assert learner.stop()


def test_labels_outside_zero_one_are_refused_before_scoring_or_storing():
    """BCE on a target of 7 or -3 has no lower bound: such a frame must never be trained on."""
    learner = OnlineLearner(CONFIG, settings())
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    for value in (7.0, -3.0, 1.0001, np.inf, -np.inf):
        labels = np.full((3, 4), np.nan, dtype=np.float32)
        labels[0, 0], labels[1, 1] = 0.5, value
        with pytest.raises(ValueError, match=r'\[0, 1\]'):
            learner.add_labeled(image, labels, 1)
    assert learner.labeled_frames == 0 and len(learner.buffer) == 0
    edges = np.array([[0.0, 1.0, np.nan, 0.5]] * 3, dtype=np.float32)
    learner.add_labeled(image, edges, 2)  # 0, 1 and NaN (unknown) are fine
    assert learner.labeled_frames == 1 and len(learner.buffer) == 1


def test_update_rate_cap_is_respected():
    learner = OnlineLearner(CONFIG, settings(max_updates_per_second=10.0, batch_size=8))
    fill(learner, 16)
    started = time.monotonic()
    learner.start()
    # Uncapped, 5 steps of this size take a few ms; at 10 per second at least 0.4 s. Waiting
    # for them (not for a fixed second) holds on a busy machine, where steps come late.
    assert wait(lambda: learner.updates >= 5, timeout=60.0)
    assert learner.stop()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.35 and learner.updates <= 10.0 * elapsed + 2, (learner.updates, elapsed)


def test_reset_model_changes_predictions_and_keeps_the_buffer():
    learner = OnlineLearner(CONFIG, settings())
    fill(learner, 64)
    learner.train_steps(10)
    image = synthetic(np.random.default_rng(8), 1)[0][0]
    before, version = learner.predict_with_version(image)
    learner.reset_model()
    after, new_version = learner.predict_with_version(image)
    assert new_version > version
    assert not np.allclose(before, after)
    status = learner.status()
    assert status.replay_size == 64 and status.labeled_frames == 64
    assert status.updates == 10 and status.resets == 1 and status.window_frames == 0
    assert learner.train_steps(2) == 2  # trains again from the kept buffer


def test_state_dict_save_and_load_reproduce_predictions_and_counters(tmp_path):
    learner = OnlineLearner(CONFIG, settings())
    fill(learner, 64)
    learner.train_steps(12)
    images = synthetic(np.random.default_rng(9), 10)[0]
    expected = learner.predict(images)
    assert expected.shape == (10, 3, 4)

    copy = OnlineLearner(CONFIG, settings(seed=5))
    assert not np.allclose(copy.predict(images), expected)
    copy.load_state_dict(learner.state_dict())
    np.testing.assert_array_equal(copy.predict(images), expected)
    assert (copy.updates, copy.labeled_frames) == (12, 64)

    path = tmp_path / 'learner.pt'
    learner.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ['learner.pt']  # no temporary left
    loaded = OnlineLearner(CONFIG, settings(seed=7))
    loaded.load(path)
    np.testing.assert_array_equal(loaded.predict(images), expected)
    assert (loaded.updates, loaded.labeled_frames) == (12, 64)
    restored = OnlineLearner.from_checkpoint(path, settings())
    assert restored.config == CONFIG
    np.testing.assert_array_equal(restored.predict(images), expected)
    # The optimiser state came back too: Adam's moments match.
    original = learner.state_dict()['optimizer_state']['state']
    again = loaded.state_dict()['optimizer_state']['state']
    for key in original:
        torch.testing.assert_close(original[key]['exp_avg'], again[key]['exp_avg'])
    # Training goes on from the loaded state.
    fill(loaded, 64)
    assert loaded.train_steps(2) == 2 and loaded.updates == 14


def trained_states(learner: OnlineLearner, steps: int) -> list[dict[str, torch.Tensor]]:
    """Take single steps; return the trained (not averaged) weights after each."""
    states = []
    for _ in range(steps):
        assert learner.train_steps(1) == 1
        states.append({key: value.clone().contiguous()
                       for key, value in learner.state_dict()['model_state'].items()})
    return states


def test_predictions_come_from_the_moving_average_of_the_trained_weights():
    decay = 0.6
    learner = OnlineLearner(CONFIG, settings(average_decay=decay))
    fill(learner, 64)
    states = trained_states(learner, 8)
    # By hand: the first step's weights, then blended with the warm-up rule of the docs.
    expected = dict(states[0])
    for count, state in enumerate(states[1:], start=1):
        step_decay = min(decay, (1 + count) / (10 + count))
        expected = {key: expected[key] + (state[key] - expected[key]) * (1 - step_decay)
                    for key in expected}
    published = learner.snapshot().model.state_dict()
    average = learner.state_dict()['average_state']
    for key, value in expected.items():
        torch.testing.assert_close(published[key].contiguous(), value, rtol=0, atol=1e-6)
        torch.testing.assert_close(average[key].contiguous(), value, rtol=0, atol=1e-6)
    # ...and they differ from the last step's weights, which would be the naive choice.
    assert any(not torch.allclose(published[key], states[-1][key]) for key in published)


def test_average_decay_zero_predicts_with_the_latest_weights():
    learner = OnlineLearner(CONFIG, settings(average_decay=0.0))
    fill(learner, 64)
    last = trained_states(learner, 3)[-1]
    published = learner.snapshot().model.state_dict()
    for key, value in last.items():
        torch.testing.assert_close(published[key].contiguous(), value, rtol=0, atol=0)
    assert learner.state_dict()['average_state'] is None


def test_a_checkpoint_keeps_both_the_trained_and_the_averaged_weights(tmp_path):
    learner = OnlineLearner(CONFIG, settings(average_decay=0.9))
    fill(learner, 64)
    trained_states(learner, 6)
    path = tmp_path / 'learner.pt'
    learner.save(path)
    checkpoint = load_checkpoint(path)
    images = synthetic(np.random.default_rng(9), 10)[0]
    # evaluate's model is the one that predicted online; averaged=False gives the other.
    np.testing.assert_allclose(predict_probabilities(build_model(checkpoint), images),
                               learner.predict(images), rtol=0, atol=1e-6)
    trained = build_model(checkpoint, averaged=False).state_dict()
    for key, value in learner.state_dict()['model_state'].items():
        torch.testing.assert_close(trained[key], value.contiguous(), rtol=0, atol=0)
    assert not np.allclose(predict_probabilities(build_model(checkpoint, averaged=False),
                                                 images), learner.predict(images))
    # Resumed, the average goes on blending as if never stopped (7th step: count 6 in the
    # warm-up rule) rather than restarting from the trained weights.
    resumed = OnlineLearner.from_checkpoint(path, settings(average_decay=0.9))
    np.testing.assert_allclose(resumed.predict(images), learner.predict(images), atol=1e-6)
    fill(resumed, 64)  # the replay buffer is not in a checkpoint
    before = resumed.snapshot().model.state_dict()
    state = trained_states(resumed, 1)[0]
    after = resumed.snapshot().model.state_dict()
    for key in state:
        torch.testing.assert_close(after[key].contiguous(),
                                   before[key] + (state[key] - before[key]) * (1 - 7 / 16),
                                   rtol=0, atol=1e-6)


def test_loading_a_checkpoint_of_another_shape_is_refused():
    learner = OnlineLearner(CONFIG, settings())
    other = OnlineLearner(ModelConfig(num_sensors=3, num_distances=5, image_height=32,
                                      image_width=40), settings())
    with pytest.raises(ValueError):
        other.load_state_dict(learner.state_dict())


def test_predict_sets_the_calling_threads_torch_threads_only():
    learner = OnlineLearner(CONFIG, settings(predict_threads=1))
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    seen = []

    def worker() -> None:
        torch.set_num_threads(2)
        learner.predict(image)
        seen.append(torch.get_num_threads())

    torch.set_num_threads(2)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]
    assert torch.get_num_threads() == 2  # torch's OpenMP thread count is per thread


class RecordingProcessLearner(ProcessOnlineLearner):
    """Keep an independent copy of the weights of every snapshot the parent publishes."""

    def _set_snapshot(self, model, updates) -> None:
        if not hasattr(self, 'published'):
            self.published = {}
        state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        super()._set_snapshot(model, updates)
        self.published[self._snapshot.version] = state


def test_process_learner_keeps_the_learner_contract(tmp_path):
    learner = RecordingProcessLearner(CONFIG, settings(augment=False))
    try:
        pid = learner.pid
        reference = OnlineLearner(CONFIG, settings(augment=False))
        image, labels = (array[0] for array in synthetic(np.random.default_rng(99), 1))
        # Both start from the same seeded weights.
        np.testing.assert_array_equal(learner.predict(image), reference.predict(image))
        fill(learner, 32)
        assert learner.train_steps(0) == 0
        assert learner.train_steps(5) == 5 and learner.updates == 5
        # Prequential: the frame is scored by the model before the add, then stored.
        expected = learner.predict(image)
        returned = learner.add_labeled(image, labels, 12345)
        np.testing.assert_array_equal(returned, expected)
        probs, scored = learner.prequential_window()
        np.testing.assert_array_equal(probs[-1], expected)
        np.testing.assert_array_equal(scored[-1], labels)
        assert learner.train_steps(20) == 20
        assert not np.allclose(learner.predict(image), returned)
        status = learner.status()
        assert status.updates == 25 and status.labeled_frames == 33
        assert status.replay_size == 33 and np.isfinite(status.recent_loss)
        assert len(learner.buffer) == 33 and learner.buffer.counters()['added'] == 33
        # Concurrent prediction during background training: every prediction equals a
        # recomputation with the weights of the snapshot version it reports.
        records = []
        seen_versions = set()
        stop = threading.Event()
        images = synthetic(np.random.default_rng(6), 50)[0]

        def predictor() -> None:
            i = 0
            while not stop.is_set():
                records.append((i % 50, *learner.predict_with_version(images[i % 50])))
                seen_versions.add(records[-1][2])
                i += 1

        learner.start()
        thread = threading.Thread(target=predictor)
        thread.start()
        # Predict while several snapshots come in, however long the machine takes for them.
        assert wait(lambda: learner.updates >= 20 and len(seen_versions) > 1, timeout=120.0)
        learner.pause()  # returns once the trainer stopped between two steps
        frozen = learner.updates
        time.sleep(0.5)  # not a wait for anything: steps would happen meanwhile
        assert learner.updates == frozen and learner.status().paused
        learner.resume()
        assert wait(lambda: learner.updates > frozen)
        stop.set()
        thread.join()
        assert learner.stop() and not learner.running
        assert learner.error is None
        versions = {version for _, _, version in records}
        assert len(versions) > 1, 'predictions should have seen several snapshots'
        model = ObstacleNet(CONFIG)
        for index, probabilities, version in records[::max(1, len(records) // 100)]:
            model.load_state_dict(learner.published[version])
            again = predict_probabilities(model, images[index][None])[0]
            np.testing.assert_allclose(probabilities, again, rtol=0, atol=1e-5)
        # Checkpoints are the same files as the in-process learner's, both ways.
        path = tmp_path / 'learner.pt'
        learner.save(path)
        expected = learner.predict(images)
        loaded = OnlineLearner(CONFIG, settings(seed=3))
        loaded.load(path)
        np.testing.assert_array_equal(loaded.predict(images), expected)
        assert (loaded.updates, loaded.labeled_frames) == (learner.updates, 33)
        learner.reset_model()
        assert learner.status().resets == 1 and learner.status().window_frames == 0
        assert not np.allclose(learner.predict(images), expected)
        learner.load(path)
        np.testing.assert_array_equal(learner.predict(images), expected)
        copy = OnlineLearner(CONFIG, settings(seed=5))
        copy.load_state_dict(learner.state_dict())
        np.testing.assert_array_equal(copy.predict(images), expected)
        with pytest.raises(ValueError):
            learner.load_state_dict({**learner.state_dict(), 'config': ModelConfig()})
    finally:
        learner.close()
    assert not process_alive(pid), 'close() must end the training process'


def test_recycled_snapshot_models_revoke_their_lease_and_predictions_are_redone():
    learner = ProcessOnlineLearner(CONFIG, settings())
    try:
        image = synthetic(np.random.default_rng(3), 1)[0][0]
        first = learner.snapshot()
        size = first.model.state_dict()['head.4.bias'].numel()
        weights = [np.random.default_rng(seed).normal(0, 0.05, learner._pool[0][1].size)
                   .astype(np.float32) for seed in range(SNAPSHOT_POOL)]
        # The other models of the pool take the next updates; the first stays intact...
        for updates, values in enumerate(weights[:-1], start=1):
            learner._publish_weights(updates, values.tobytes())
        assert first.intact and learner.snapshot().updates == SNAPSHOT_POOL - 1
        # ...until its model comes round again, and then it is revoked first, then written.
        learner._publish_weights(SNAPSHOT_POOL, weights[-1].tobytes())
        current = learner.snapshot()
        assert not first.intact and current.intact and current.model is first.model
        assert current.model.state_dict()['head.4.bias'].numel() == size
        expected = ObstacleNet(CONFIG)
        expected.load_state_dict(current.model.state_dict())
        expected_probabilities = predict_probabilities(expected, image[None])[0]
        # A prediction whose weights are recycled while it runs is redone on the new ones.
        older = learner.snapshot()
        calls = []

        def recycle_during_forward(module, inputs, output):
            calls.append(1)
            if len(calls) == 1:  # the forward has read older's weights: now rewrite them all
                for updates, values in enumerate(weights, start=10):
                    learner._publish_weights(updates, (values * 2).tobytes())

        for model, _ in learner._pool:
            model.register_forward_hook(recycle_during_forward)
        raced, version = learner.predict_with_version(image)
        assert len(calls) == 2 and not older.intact
        assert version == learner.snapshot().version
        rewritten = ObstacleNet(CONFIG)
        rewritten.load_state_dict(learner.snapshot().model.state_dict())
        np.testing.assert_allclose(raced, predict_probabilities(rewritten, image[None])[0],
                                   rtol=0, atol=1e-6)
        assert not np.allclose(raced, expected_probabilities, atol=1e-4)
    finally:
        learner.close()


def test_the_process_learner_ranks_its_window_in_the_trainer_and_here_once_it_is_gone():
    learner = ProcessOnlineLearner(CONFIG, settings(augment=False))
    try:
        fill(learner, 120)
        learner.train_steps(10)
        fill(learner, 60)
        asked = []
        request = learner._request
        learner._request = lambda kind, *args, **kw: (asked.append(kind),
                                                      request(kind, *args, **kw))[1]
        status = learner.status()
        probs, labels = learner.prequential_window()
        by_distance, overall = window_aucs(probs, labels)
        assert asked == ['window_aucs']
        np.testing.assert_allclose(status.auc_by_distance, by_distance, rtol=0, atol=1e-12)
        assert status.auc == pytest.approx(overall, abs=1e-12) and 0.0 <= status.auc <= 1.0
        known = ~np.isnan(labels)
        assert status.auc == pytest.approx(roc_auc(probs[known], labels[known]), abs=1e-12)
        learner.close()
        gone = learner.status()  # computed here: the same figures
        np.testing.assert_allclose(gone.auc_by_distance, by_distance, rtol=0, atol=1e-12)
        assert gone.error is None and not gone.running
    finally:
        learner.close()


def test_a_garbage_collected_process_learner_ends_its_trainer():
    learner = ProcessOnlineLearner(CONFIG, settings())
    pid = learner.pid
    fill(learner, 8)
    assert learner.train_steps(1) == 1
    del learner
    gc.collect()
    assert wait(lambda: not process_alive(pid))


def wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def process_alive(pid: int) -> bool:
    """Return whether a process exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.parametrize('fraction', [0.0, 0.8])
def test_batches_hold_the_configured_share_of_obstacle_frames(fraction):
    config = ModelConfig(num_sensors=2, num_distances=3, image_height=8, image_width=10)
    learner = OnlineLearner(config, LearnerSettings(positive_sample_fraction=fraction,
                                                    buffer_size=200, augment=False))
    rng = np.random.default_rng(0)
    for index in range(100):  # one frame in ten sees an obstacle
        labels = np.zeros((2, 3), np.float32)
        labels[0, 0] = 1.0 if index % 10 == 0 else 0.0
        learner.add_labeled(rng.integers(0, 255, (8, 10, 3), dtype=np.uint8), labels, index)
    _, labels, _ = learner.buffer.sample(4000, np.random.default_rng(1))
    share = float((labels.reshape(len(labels), -1) > 0).any(axis=1).mean())
    assert share == pytest.approx(max(fraction, 0.1), abs=0.03)
