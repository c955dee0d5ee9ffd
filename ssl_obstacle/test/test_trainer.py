"""
The online trainer's logic (core/trainer.py): order, windows, learning, weights, state.

One thread owns an :class:`OnlineTrainer`, so these tests call it as the trainer node's
worker does: ``score_and_store``, ``train_step(s)``, ``publish``, ``status``, ``reset``,
``save`` and ``load``, with no threads and no sleeps. A small network (32×40 input,
3 sensors, 4 distances) keeps them fast; it is the real ObstacleNet and the real training
path, only sized down.
"""

import numpy as np
import pytest
from ssl_obstacle.core import trainer as trainer_module
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.metrics import auc_by_distance, roc_auc
from ssl_obstacle.core.model import Augmentation, DEFAULT_AUGMENTATION, ModelConfig, \
    ObstacleNet, predict_probabilities
from ssl_obstacle.core.prequential import PrequentialWindow
from ssl_obstacle.core.trainer import check_labels, fresh_model, OnlineTrainer, \
    PublishedWeights, TrainerSettings
import torch

CONFIG = ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=40)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Compute in one thread (two busy cores are shared), and restore the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings(**overrides) -> TrainerSettings:
    values = {'batch_size': 64, 'min_buffer': 8, 'buffer_size': 500, 'auc_window': 200,
              'seed': 0}
    values.update(overrides)
    return TrainerSettings(**values)


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


def fill(trainer: OnlineTrainer, count: int, seed: int = 1, start: int = 0,
         robot='') -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score and store ``count`` synthetic frames; return images, labels and predictions."""
    images, labels = synthetic(np.random.default_rng(seed), count)
    probabilities = trainer.score_and_store(images, labels, range(start, start + count), robot)
    return images, labels, probabilities


def held_in(trainer: OnlineTrainer, stamp: int) -> bool:
    return stamp in trainer.buffer.stamps[:len(trainer.buffer)].tolist()


def window(trainer: OnlineTrainer, robot: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the frames held for a robot, or for all when None, oldest first."""
    held = trainer._pooled if robot is None else trainer._windows[robot]
    return held.arrays()


def published_model(weights: PublishedWeights) -> ObstacleNet:
    """Return an ObstacleNet with the published weights, as a robot's predictor builds it."""
    model = ObstacleNet(CONFIG)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in
                           weights.state.items()})
    return model.eval()


def trained_weights(trainer: OnlineTrainer, path) -> dict[str, torch.Tensor]:
    """Return the trained (not averaged) weights, through a checkpoint."""
    trainer.save(path)
    return {key: value.contiguous() for key, value in
            load_checkpoint(path)['model_state'].items()}


def test_a_frame_is_scored_with_the_published_weights_before_it_is_stored():
    trainer = OnlineTrainer(CONFIG, settings(augment=False))
    fill(trainer, 32)
    assert trainer.train_steps(5) == 5
    published = trainer.publish()
    assert trainer.train_steps(5) == 5  # the live average moves on, unpublished
    image, labels = (array[:1] for array in synthetic(np.random.default_rng(99), 1))
    expected = trainer.predict(image)
    # The weights the robots received, not the live average.
    np.testing.assert_allclose(predict_probabilities(published_model(published), image),
                               expected, rtol=0, atol=1e-6)
    seen_at_add = []
    original_add = trainer.buffer.add

    def add_spy(*args, **kwargs):
        status = trainer.status()
        probabilities, scored = window(trainer)
        seen_at_add.append((status.window_frames, status.labeled_frames,
                            probabilities[-1].copy(), scored[-1].copy()))
        return original_add(*args, **kwargs)

    trainer.buffer.add = add_spy
    assert not held_in(trainer, 12345)
    returned = trainer.score_and_store(image, labels, [12345])
    # Scored by the published weights, recorded in the window, and only then stored.
    np.testing.assert_array_equal(returned, expected)
    assert len(seen_at_add) == 1
    frames, labeled, window_probs, window_labels = seen_at_add[0]
    assert (frames, labeled) == (33, 33)
    np.testing.assert_array_equal(window_probs, expected[0])
    np.testing.assert_array_equal(window_labels, labels[0])
    assert held_in(trainer, 12345)
    # score_and_store never trains; training and publishing afterwards move the prediction.
    assert trainer.updates == 10
    trainer.train_steps(20)
    trainer.publish()
    assert not np.allclose(trainer.predict(image), returned)


def test_training_without_publish_leaves_predictions_and_publish_changes_them():
    trainer = OnlineTrainer(CONFIG, settings())
    images, _, scored = fill(trainer, 64)
    before = trainer.predict(images)
    np.testing.assert_array_equal(before, scored)
    assert trainer.train_steps(10) == 10
    np.testing.assert_array_equal(trainer.predict(images), before)
    assert trainer.status().model_version == 0
    weights = trainer.publish()
    assert weights.version == 1 and trainer.status().model_version == 1
    after = trainer.predict(images)
    assert not np.allclose(after, before, atol=1e-4)
    # New frames are scored with the newly published weights.
    again = trainer.score_and_store(images[:5], np.zeros((5, 3, 4), np.float32), range(5))
    np.testing.assert_array_equal(again, trainer.predict(images[:5]))
    np.testing.assert_allclose(again, after[:5], rtol=0, atol=1e-6)


def test_each_robot_window_holds_its_own_frames_and_the_pooled_one_all():
    trainer = OnlineTrainer(CONFIG, settings(auc_window=30))
    rng = np.random.default_rng(11)
    images, labels = synthetic(rng, 70)
    robots = [str(name) for name in rng.choice(['a', 'b'], size=40)]
    order = []  # (robot, prediction, labels) in the order of scoring
    # One call with frames of both robots, interleaved...
    probabilities = trainer.score_and_store(images[:40], labels[:40], range(40), robots)
    order += zip(robots, probabilities, labels[:40])
    _, c_labels, c_probabilities = fill(trainer, 64, seed=12, start=1000, robot='c')
    order += [('c', p, grid) for p, grid in zip(c_probabilities, c_labels)]
    trainer.train_steps(10)
    trainer.publish()  # the later frames are scored by other weights
    # ...then one call per robot.
    for robot, rows in (('b', slice(40, 55)), ('a', slice(55, 70))):
        probabilities = trainer.score_and_store(images[rows], labels[rows],
                                                range(rows.start, rows.stop), robot)
        order += [(robot, p, grid) for p, grid in zip(probabilities, labels[rows])]
    status = trainer.status()
    assert set(status.robots) == {'a', 'b', 'c'}
    assert status.labeled_frames == 134
    for robot in ('a', 'b'):
        mine = [(p, grid) for r, p, grid in order if r == robot]
        probs = np.stack([p for p, _ in mine])[-30:]
        grids = np.stack([grid for _, grid in mine])[-30:]
        held_probs, held_labels = window(trainer, robot)
        np.testing.assert_array_equal(held_probs, probs)
        np.testing.assert_array_equal(held_labels, grids)
        by_hand = PrequentialWindow(30, 3, 4)
        for p, grid in mine:
            by_hand.add(p, grid)
        scores = status.robots[robot]
        assert scores.labeled_frames == len(mine) and scores.window_frames == len(probs)
        np.testing.assert_allclose(scores.auc_by_distance, by_hand.aucs()[0])
        np.testing.assert_allclose(scores.auc_by_distance, auc_by_distance(probs, grids))
        assert scores.auc == pytest.approx(by_hand.aucs()[1])
        assert scores.auc == pytest.approx(roc_auc(probs, grids))
        assert scores.auc != pytest.approx(status.auc)  # not the pooled figure
    assert status.robots['a'].labeled_frames + status.robots['b'].labeled_frames == 70
    assert status.robots['c'].labeled_frames == 64
    # The pooled window holds every robot's newest frames, in the order they were scored.
    pooled_probs, pooled_labels = window(trainer)
    np.testing.assert_array_equal(pooled_probs, np.stack([p for _, p, _ in order])[-30:])
    np.testing.assert_array_equal(pooled_labels, np.stack([g for _, _, g in order])[-30:])
    assert status.window_frames == 30
    assert status.auc == pytest.approx(roc_auc(pooled_probs, pooled_labels))


def test_one_stamp_and_one_robot_name_per_frame():
    trainer = OnlineTrainer(CONFIG, settings())
    images, labels = synthetic(np.random.default_rng(2), 3)
    for stamps, robots, count in ((range(3), ['a', 'b'], 3), (range(2), 'a', 3),
                                  (range(3), 'a', 2)):
        with pytest.raises(ValueError):
            trainer.score_and_store(images, labels[:count], stamps, robots)
    status = trainer.status()
    assert status.labeled_frames == 0 and status.window_frames == 0 and not status.robots
    assert len(trainer.buffer) == 0
    assert trainer.score_and_store(images[:0], labels[:0], [], 'a').shape == (0, 3, 4)
    assert trainer.status().labeled_frames == 0


def test_frames_without_known_cells_are_scored_but_not_stored():
    trainer = OnlineTrainer(CONFIG, settings())
    images = np.zeros((2, 32, 40, 3), dtype=np.uint8)
    labels = np.full((2, 3, 4), np.nan, dtype=np.float32)
    labels[1, 2, 3] = 0.0
    prediction = trainer.score_and_store(images, labels, [1, 2], 'a')
    assert prediction.shape == (2, 3, 4) and np.isfinite(prediction).all()
    status = trainer.status()
    assert status.labeled_frames == 2 and status.robots['a'].labeled_frames == 2
    assert status.window_frames == 2 and len(trainer.buffer) == 1
    assert not held_in(trainer, 1) and held_in(trainer, 2)
    with pytest.raises(ValueError):
        trainer.score_and_store(images[:1], np.zeros((1, 3, 5)), [3])
    with pytest.raises(ValueError):  # the camera's size, not the model's
        trainer.score_and_store(np.zeros((1, 48, 40, 3), np.uint8), labels[:1], [4])
    with pytest.raises(ValueError):
        trainer.predict(images[0].astype(np.float32))
    assert trainer.predict(images[0]).shape == (3, 4)  # one frame (H, W, 3)
    status = trainer.status()
    assert status.labeled_frames == 2 and status.window_frames == 2
    assert len(trainer.buffer) == 1


def test_training_targets_are_completed_but_scores_use_the_observed_labels():
    seen: list[np.ndarray] = []

    def fill_far(labels: np.ndarray) -> np.ndarray:
        seen.append(labels.copy())
        out = labels.copy()
        out[:, -1] = 1.0
        return out

    trainer = OnlineTrainer(CONFIG, settings(), label_completion=fill_far)
    image = np.zeros((1, 32, 40, 3), dtype=np.uint8)
    observed = np.array([[[0, 1, np.nan, np.nan]] * 3], dtype=np.float32)
    trainer.score_and_store(image, observed, [7])
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], observed[0])
    np.testing.assert_array_equal(trainer.buffer.labels[0], [[0, 1, np.nan, 1]] * 3)
    np.testing.assert_array_equal(window(trainer)[1], observed)  # scored as observed
    np.testing.assert_array_equal(window(trainer, '')[1], observed)
    # A frame with nothing known is neither stored nor completed into something.
    trainer.score_and_store(image, np.full((1, 3, 4), np.nan, np.float32), [8])
    assert len(seen) == 1 and len(trainer.buffer) == 1


def test_no_training_below_min_buffer():
    trainer = OnlineTrainer(CONFIG, settings(min_buffer=20))
    fill(trainer, 19)
    # Frames with nothing known are not stored, so they do not count either.
    trainer.score_and_store(np.zeros((3, 32, 40, 3), np.uint8),
                            np.full((3, 3, 4), np.nan, np.float32), [50, 51, 52])
    assert not trainer.can_train
    assert trainer.train_steps(3) == 0 and trainer.updates == 0
    fill(trainer, 1, seed=2, start=100)
    assert trainer.can_train
    assert trainer.train_steps(3) == 3 and trainer.updates == 3


def test_learns_the_synthetic_task_to_auc_095_on_held_out_frames():
    torch.manual_seed(0)  # dropout
    trainer = OnlineTrainer(CONFIG, settings(buffer_size=2000, auc_window=2000))
    for start in range(0, 1500, 250):
        fill(trainer, 250, seed=3 + start, start=start)
    test_images, test_labels = synthetic(np.random.default_rng(4), 400)
    auc = roc_auc(trainer.predict(test_images), test_labels)
    assert auc < 0.8, f'untrained AUC {auc:.3f}: the task would prove nothing'
    for _ in range(15):  # at most 15 × 100 = 1500 updates of batch 64
        assert trainer.train_steps(100) == 100
        trainer.publish()
        probabilities = trainer.predict(test_images)
        auc = roc_auc(probabilities, test_labels)
        if auc >= 0.95:
            break
    assert auc >= 0.95, f'held-out AUC {auc:.3f} after {trainer.updates} updates'
    print(f'held-out AUC {auc:.3f} after {trainer.updates} updates')
    # Per distance too, and the prequential figures are well defined.
    assert np.nanmin(auc_by_distance(probabilities, test_labels)) > 0.9
    status = trainer.status()
    assert status.updates == trainer.updates <= 1500
    assert status.labeled_frames == 1500 and status.replay_size == 1500
    assert status.auc_by_distance.shape == (4,) and 0.0 <= status.auc <= 1.0
    assert np.isfinite(status.recent_loss)


def test_running_auc_covers_the_last_window_and_is_nan_without_both_classes():
    trainer = OnlineTrainer(CONFIG, settings(auc_window=50))
    status = trainer.status()
    assert np.isnan(status.auc) and np.isnan(status.recent_loss)
    assert status.auc_by_distance.shape == (4,) and np.isnan(status.auc_by_distance).all()
    assert status.window_frames == 0 and not status.robots
    _, every_label, probabilities = fill(trainer, 120)
    probs, labels = probabilities[-50:], every_label[-50:]
    status = trainer.status()
    assert status.window_frames == 50 and status.labeled_frames == 120
    np.testing.assert_allclose(status.auc_by_distance, auc_by_distance(probs, labels))
    assert status.auc == pytest.approx(roc_auc(probs, labels))
    assert status.auc != pytest.approx(roc_auc(probabilities, every_label))  # not all 120
    # Labels only negative at distance 0: NaN there, defined elsewhere.
    trainer = OnlineTrainer(CONFIG, settings(auc_window=50))
    images, labels = synthetic(np.random.default_rng(5), 60)
    labels[:, :, 0] = 0.0
    trainer.score_and_store(images, labels, range(60), 'a')
    for by_distance in (trainer.status().auc_by_distance,
                        trainer.status().robots['a'].auc_by_distance):
        assert np.isnan(by_distance[0]) and np.isfinite(by_distance[1:]).all()


def test_pause_stops_training_while_frames_are_still_scored_and_stored():
    trainer = OnlineTrainer(CONFIG, settings())
    fill(trainer, 16)
    assert trainer.can_train and not trainer.status().paused
    trainer.paused = True
    assert not trainer.can_train and trainer.status().paused
    _, _, scored = fill(trainer, 8, seed=7, start=100)
    assert scored.shape == (8, 3, 4)
    status = trainer.status()
    assert status.labeled_frames == 24 and status.replay_size == 24
    assert status.window_frames == 24 and held_in(trainer, 107)
    assert not trainer.can_train and status.updates == 0
    trainer.paused = False
    assert trainer.can_train and not trainer.status().paused


def test_labels_outside_zero_one_are_refused_before_scoring_or_storing():
    """BCE on a target of 7 or -3 has no lower bound: such a frame must never be trained on."""
    trainer = OnlineTrainer(CONFIG, settings())
    fill(trainer, 10, robot='a')

    def state():
        status = trainer.status()
        return (status.labeled_frames, status.window_frames, status.replay_size,
                {name: scores.labeled_frames for name, scores in status.robots.items()},
                trainer.buffer.counters(), window(trainer)[0].tobytes(),
                window(trainer, 'a')[0].tobytes())

    before = state()
    images = np.zeros((3, 32, 40, 3), dtype=np.uint8)
    for value in (7.0, -3.0, 1.0001, np.inf, -np.inf):
        labels = np.full((3, 3, 4), np.nan, dtype=np.float32)
        labels[:, 0, 0], labels[1, 1, 1] = 0.5, value  # one bad frame of three
        with pytest.raises(ValueError, match=r'\[0, 1\]'):
            trainer.score_and_store(images, labels, [1, 2, 3], ['a', 'b', 'a'])
    assert state() == before and 'b' not in trainer.status().robots
    edges = np.array([[0.0, 1.0, np.nan, 0.5]] * 3, dtype=np.float32)
    trainer.score_and_store(images[:1], edges[None], [2], 'b')  # 0, 1 and NaN are fine
    status = trainer.status()
    assert status.labeled_frames == 11 and status.replay_size == 11
    assert status.robots['b'].labeled_frames == 1


def test_check_labels():
    grid = check_labels([[0, 1, np.nan, 0.25]] * 3, (3, 4))
    assert grid.dtype == np.float32 and grid.shape == (3, 4)
    check_labels(np.full((3, 4), np.nan), (3, 4))
    with pytest.raises(ValueError, match='labels must be'):
        check_labels(np.zeros((4, 3)), (3, 4))
    with pytest.raises(ValueError, match=r'from -0\.5 to 2'):
        check_labels([[0, 2, -0.5, 1]] * 3, (3, 4))


def test_fresh_model_is_seeded_by_reset_count_and_leaves_the_global_rng_alone():
    values = settings(seed=4)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, optimizer = fresh_model(CONFIG, values, 0, torch.device('cpu'))
    again, _ = fresh_model(CONFIG, values, 0, torch.device('cpu'))
    other, _ = fresh_model(CONFIG, values, 1, torch.device('cpu'))
    torch.testing.assert_close(torch.rand(3), expected_next, rtol=0, atol=0)
    weights = [model.state_dict()['head.4.weight'] for model in (first, again, other)]
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    assert not torch.allclose(weights[0], weights[2])
    assert optimizer.param_groups[0]['lr'] == values.learning_rate
    assert {id(p) for p in optimizer.param_groups[0]['params']} == \
        {id(p) for p in first.parameters()}


def test_reset_changes_predictions_once_published_and_keeps_the_buffer_and_counters():
    trainer = OnlineTrainer(CONFIG, settings())
    fill(trainer, 64, robot='a')
    trainer.train_steps(10)
    before_version = trainer.publish().version
    image = synthetic(np.random.default_rng(8), 1)[0]
    before = trainer.predict(image)
    trainer.reset()
    weights = trainer.publish()
    after = trainer.predict(image)
    assert weights.version == before_version + 1 and weights.updates == 10
    assert not np.allclose(before, after)
    status = trainer.status()
    assert status.replay_size == 64 and status.labeled_frames == 64
    assert status.updates == 10 and status.resets == 1 and status.window_frames == 0
    assert status.robots['a'].window_frames == 0 and status.robots['a'].labeled_frames == 64
    assert np.isnan(status.auc) and np.isnan(status.recent_loss)
    assert trainer.train_steps(2) == 2  # trains again from the kept buffer
    # Fresh weights, and not those the trainer started with either.
    initial = OnlineTrainer(CONFIG, settings()).predict(image)
    assert not np.allclose(initial, after)


def test_save_and_load_reproduce_predictions_counters_and_optimiser(tmp_path):
    trainer = OnlineTrainer(CONFIG, settings())
    fill(trainer, 64)
    trainer.train_steps(12)
    trainer.publish()
    images = synthetic(np.random.default_rng(9), 10)[0]
    expected = trainer.predict(images)
    assert expected.shape == (10, 3, 4)

    path = tmp_path / 'trainer.pt'
    trainer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ['trainer.pt']  # no temporary left
    loaded = OnlineTrainer(CONFIG, settings(seed=7))
    fill(loaded, 20, seed=5)
    assert not np.allclose(loaded.predict(images), expected)
    loaded.load(path)
    np.testing.assert_array_equal(loaded.predict(images), expected)
    assert (loaded.updates, loaded.labeled_frames, loaded.resets) == (12, 64, 0)
    assert loaded.status().window_frames == 0  # windows cleared: they scored other weights
    copy = OnlineTrainer(CONFIG, settings(seed=5))
    copy.load_state(load_checkpoint(path))
    np.testing.assert_array_equal(copy.predict(images), expected)
    # The optimiser state came back too: Adam's moments match.
    loaded.save(tmp_path / 'again.pt')
    original = load_checkpoint(path)['optimizer_state']['state']
    again = load_checkpoint(tmp_path / 'again.pt')['optimizer_state']['state']
    assert original.keys() == again.keys() and original
    for key in original:
        torch.testing.assert_close(original[key]['exp_avg'], again[key]['exp_avg'])
        torch.testing.assert_close(original[key]['exp_avg_sq'], again[key]['exp_avg_sq'])
    # Training goes on from the loaded state.
    fill(loaded, 64)
    assert loaded.train_steps(2) == 2 and loaded.updates == 14
    # A reset is counted in the checkpoint and restored.
    trainer.reset()
    trainer.save(path)
    loaded.load(path)
    assert loaded.resets == 1 and loaded.updates == 12


def test_save_stores_the_grid_with_the_settings(tmp_path):
    trainer = OnlineTrainer(CONFIG, settings(learning_rate=5e-4))
    grid = {'sensor_names': ['left', 'centre', 'right'], 'distances': [0.0, 0.1, 0.2, 0.3]}
    trainer.save(tmp_path / 'grid.pt', grid)
    params = load_checkpoint(tmp_path / 'grid.pt')['params']
    assert params['sensor_names'] == grid['sensor_names']
    assert params['distances'] == grid['distances']
    assert params['learning_rate'] == 5e-4 and params['auc_window'] == 200
    trainer.save(tmp_path / 'plain.pt')
    assert 'sensor_names' not in load_checkpoint(tmp_path / 'plain.pt')['params']


@pytest.mark.parametrize('other', [
    ModelConfig(num_sensors=3, num_distances=5, image_height=32, image_width=40),
    ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=48),
    ModelConfig(num_sensors=3, num_distances=4, image_height=32, image_width=40, dense=64)])
def test_loading_a_checkpoint_of_another_shape_is_refused(tmp_path, other):
    OnlineTrainer(CONFIG, settings()).save(tmp_path / 'small.pt')
    trainer = OnlineTrainer(other, settings(seed=3))
    image = np.zeros((other.image_height, other.image_width, 3), np.uint8)
    before = trainer.predict(image)
    with pytest.raises(ValueError, match='does not match'):
        trainer.load(tmp_path / 'small.pt')
    np.testing.assert_array_equal(trainer.predict(image), before)
    assert trainer.updates == 0


def test_predictions_come_from_the_moving_average_of_the_trained_weights(tmp_path):
    decay = 0.3  # the warm-up rule's (1 + n) / (10 + n) passes it at n = 3
    trainer = OnlineTrainer(CONFIG, settings(average_decay=decay))
    fill(trainer, 64)
    states = []
    for _ in range(8):
        assert trainer.train_steps(1) == 1
        states.append(trained_weights(trainer, tmp_path / 'step.pt'))
    # By hand: the first step's weights, then blended with the warm-up rule of the docs.
    expected = dict(states[0])
    for count, state in enumerate(states[1:], start=1):
        step_decay = min(decay, (1 + count) / (10 + count))
        expected = {key: expected[key] + (state[key] - expected[key]) * (1 - step_decay)
                    for key in expected}
    published = trainer.publish().state
    average = load_checkpoint(tmp_path / 'step.pt')['average_state']
    for key, value in expected.items():
        torch.testing.assert_close(torch.from_numpy(published[key]), value, rtol=0, atol=1e-6)
        torch.testing.assert_close(average[key].contiguous(), value, rtol=0, atol=1e-6)
    # ...and they differ from the last step's weights, which would be the naive choice.
    assert any(not torch.allclose(torch.from_numpy(published[key]), states[-1][key])
               for key in published)


def test_average_decay_zero_predicts_with_the_latest_weights(tmp_path):
    trainer = OnlineTrainer(CONFIG, settings(average_decay=0.0))
    fill(trainer, 64)
    assert trainer.train_steps(3) == 3
    last = trained_weights(trainer, tmp_path / 'last.pt')
    published = trainer.publish().state
    for key, value in last.items():
        torch.testing.assert_close(torch.from_numpy(published[key]), value, rtol=0, atol=0)
    assert load_checkpoint(tmp_path / 'last.pt')['average_state'] is None


def test_a_checkpoint_keeps_both_the_trained_and_the_averaged_weights(tmp_path):
    trainer = OnlineTrainer(CONFIG, settings(average_decay=0.9))
    fill(trainer, 64)
    assert trainer.train_steps(6) == 6
    trainer.publish()
    path = tmp_path / 'trainer.pt'
    trainer.save(path)
    checkpoint = load_checkpoint(path)
    images = synthetic(np.random.default_rng(9), 10)[0]
    # evaluate's model is the one that predicted online; averaged=False gives the other.
    np.testing.assert_allclose(predict_probabilities(build_model(checkpoint), images),
                               trainer.predict(images), rtol=0, atol=1e-6)
    trained = build_model(checkpoint, averaged=False).state_dict()
    for key, value in trained_weights(trainer, tmp_path / 'trained.pt').items():
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0)
    assert not np.allclose(predict_probabilities(build_model(checkpoint, averaged=False),
                                                 images), trainer.predict(images))
    # Resumed, the average goes on blending as if never stopped (7th step: count 6 in the
    # warm-up rule) rather than restarting from the trained weights.
    resumed = OnlineTrainer(CONFIG, settings(average_decay=0.9, seed=2))
    resumed.load(path)
    np.testing.assert_allclose(resumed.predict(images), trainer.predict(images), atol=1e-6)
    fill(resumed, 64)  # the replay buffer is not in a checkpoint
    before = {key: torch.from_numpy(value) for key, value in resumed.publish().state.items()}
    assert resumed.train_steps(1) == 1
    state = trained_weights(resumed, tmp_path / 'resumed.pt')
    after = resumed.publish().state
    for key in state:
        torch.testing.assert_close(torch.from_numpy(after[key]),
                                   before[key] + (state[key] - before[key]) * (1 - 7 / 16),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize('augmentation', [None, Augmentation(channel_shuffle=0.3)])
def test_a_training_step_perturbs_its_batch_as_the_settings_say(monkeypatch, augmentation):
    seen, real_augment = [], trainer_module.augment

    def spy(images, labels, rng, how):
        seen.append(how)
        return real_augment(images, labels, rng, how)

    monkeypatch.setattr(trainer_module, 'augment', spy)
    chosen = {} if augmentation is None else {'augmentation': augmentation}
    trainer = OnlineTrainer(CONFIG, settings(**chosen))
    fill(trainer, 16)
    trainer.train_steps(2)
    assert seen == [augmentation or DEFAULT_AUGMENTATION] * 2


@pytest.mark.parametrize('fraction', [0.0, 0.8])
def test_batches_hold_the_configured_share_of_obstacle_frames(fraction):
    config = ModelConfig(num_sensors=2, num_distances=3, image_height=8, image_width=10)
    trainer = OnlineTrainer(config, TrainerSettings(positive_sample_fraction=fraction,
                                                    buffer_size=200, augment=False))
    rng = np.random.default_rng(0)
    labels = np.zeros((100, 2, 3), np.float32)
    labels[::10, 0, 0] = 1.0  # one frame in ten sees an obstacle
    trainer.score_and_store(rng.integers(0, 255, (100, 8, 10, 3), dtype=np.uint8), labels,
                            range(100))
    _, labels, _ = trainer.buffer.sample(4000, np.random.default_rng(1))
    share = float((labels.reshape(len(labels), -1) > 0).any(axis=1).mean())
    assert share == pytest.approx(max(fraction, 0.1), abs=0.03)


def test_publish_returns_float32_arrays_named_as_the_state_dict_with_increasing_versions():
    trainer = OnlineTrainer(CONFIG, settings())
    fill(trainer, 32)
    reference = ObstacleNet(CONFIG).state_dict()
    images = synthetic(np.random.default_rng(10), 6)[0]
    versions = []
    for steps in (0, 3, 0, 2):
        trainer.train_steps(steps)
        weights = trainer.publish()
        assert isinstance(weights, PublishedWeights)
        assert list(weights.state) == list(reference)
        for name, value in weights.state.items():
            assert type(value) is np.ndarray and value.dtype == np.float32
            assert value.shape == tuple(reference[name].shape)
        assert weights.updates == trainer.updates == trainer.status().updates
        assert trainer.status().model_version == weights.version
        versions.append(weights.version)
        # A robot building the network from these arrays predicts as the trainer scores.
        np.testing.assert_allclose(predict_probabilities(published_model(weights), images),
                                   trainer.predict(images), rtol=0, atol=1e-6)
    assert versions == [1, 2, 3, 4]
    # The arrays are the receiver's own: changing them changes nothing in the trainer.
    expected = trainer.predict(images)
    for value in weights.state.values():
        value[...] = 0.0
    np.testing.assert_array_equal(trainer.predict(images), expected)
