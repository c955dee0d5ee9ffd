"""Offline training and evaluation: learning a synthetic task, ``train`` and ``evaluate``."""

import json
import math
import time

import numpy as np
import pytest

from ssl_obstacle.cli import main
from ssl_obstacle.core.checkpoint import build_model, load_checkpoint
from ssl_obstacle.core.dataset import DatasetWriter
from ssl_obstacle.core.metrics import auc_grid, auc_mean
from ssl_obstacle.core.model import predict_probabilities
from ssl_obstacle.core.training import FileInfo, Frames, split_by_file, train_model
import torch

torch.set_num_threads(1)  # 2 threads spin badly when other tests share the CPUs

SENSORS = ('left', 'center', 'right')
DISTANCES = (0.0, 0.05, 0.1, 0.15, 0.2)


def synthetic_frames(count: int, rng: np.random.Generator, height: int = 32,
                     width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """
    Return frames whose coloured square decides the labels, like an obstacle would.

    A red square is an obstacle in front of the sensor on its side of the image (left,
    centre, right third): a big one is near (the first three distances positive, the rest
    negative), a small one far (the reverse). A blue square is nothing. 30 % of the cells
    are unknown, as in self-supervised labels.
    """
    images = rng.integers(90, 140, size=(count, height, width, 3)).astype(np.uint8)
    labels = np.zeros((count, len(SENSORS), len(DISTANCES)), dtype=np.float32)
    third = width // 3
    near = 3
    for i in range(count):
        column = int(rng.integers(3))
        big = bool(rng.random() < 0.5)
        red = bool(rng.random() < 0.5)
        size = int(rng.integers(10, 13) if big else rng.integers(4, 7))
        x = int(rng.integers(column * third, (column + 1) * third - size + 1))
        y = int(rng.integers(height // 3, height - size))
        images[i, y:y + size, x:x + size] = (200, 30, 30) if red else (30, 30, 200)
        if red:
            labels[i, column, :near] = 1.0 if big else 0.0
            labels[i, column, near:] = 0.0 if big else 1.0
    labels[rng.random(labels.shape) < 0.3] = np.nan
    return images, labels


def test_learns_the_synthetic_task_within_a_bounded_number_of_updates():
    rng = np.random.default_rng(0)
    train = Frames(*synthetic_frames(1200, rng))
    val = Frames(*synthetic_frames(300, rng))
    started = time.process_time()
    result = train_model(train, val, epochs=6, batch_size=64, lr=2e-3, seed=0,
                         max_updates=150)
    cpu = time.process_time() - started
    assert result.updates <= 150
    test_images, test_labels = synthetic_frames(600, np.random.default_rng(99))
    grid = auc_grid(predict_probabilities(result.model, test_images), test_labels)
    assert not np.isnan(grid).any()
    assert auc_mean(grid) >= 0.95, grid
    assert result.best_val_auc >= 0.95
    assert [h['epoch'] for h in result.history] == list(range(1, len(result.history) + 1))
    print(f'held-out AUC {auc_mean(grid):.4f} after {result.updates} updates, {cpu:.1f} s CPU')


def info(frames: int) -> FileInfo:
    return FileInfo('x.h5', frames, (8, 8, 3), list(SENSORS), list(DISTANCES))


def test_validation_is_split_by_file():
    infos = [info(100), info(50), info(30), info(20)]
    train, val = split_by_file(infos, 0.2)
    assert train == [(0, 0, 100), (1, 0, 50)] and val == [(2, 0, 30), (3, 0, 20)]
    assert split_by_file(infos, 0.1) == ([(0, 0, 100), (1, 0, 50), (2, 0, 30)], [(3, 0, 20)])
    assert split_by_file([info(10), info(500)], 0.2) == ([(0, 0, 10)], [(1, 0, 500)])
    assert split_by_file([info(100)], 0.2) == ([(0, 0, 80)], [(0, 80, 100)])
    assert split_by_file(infos, 0.0) == ([(i, 0, f.frames) for i, f in enumerate(infos)], [])


def write_dataset(path, images, labels, seed=0, sensors=SENSORS):
    with DatasetWriter(path, image_size=images.shape[1:3], sensor_names=sensors,
                       distances=DISTANCES, batch_frames=64) as writer:
        for i, (image, label) in enumerate(zip(images, labels)):
            counts = np.where(np.isnan(label), 0, 1).astype(np.uint8)
            writer.append(image, label, counts, 1_000_000_000 + i * 33_000_000,
                          (0.01 * i, 0.0, 0.0))


def is_png(path) -> bool:
    import matplotlib.image

    data = path.read_bytes()
    if not data.startswith(b'\x89PNG\r\n\x1a\n'):
        return False
    pixels = matplotlib.image.imread(path)
    return pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100 \
        and float(pixels[..., :3].std()) > 0.01


def test_train_and_evaluate_commands_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(1)
    first, second, held = (tmp_path / name for name in ('a.h5', 'b.h5', 'held.h5'))
    write_dataset(first, *synthetic_frames(500, rng))
    write_dataset(second, *synthetic_frames(150, rng))
    images, labels = synthetic_frames(300, rng)
    labels[:, 1, 4] = np.where(np.isnan(labels[:, 1, 4]), np.nan, 0.0)  # one class only
    write_dataset(held, images, labels)
    model_path = tmp_path / 'model.pt'

    code = main(['train', str(first), str(second), '--out', str(model_path), '--epochs', '4',
                 '--lr', '2e-3', '--no-progress'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'epoch 4/4' in out and 'val AUC' in out and 'wrote' in out
    checkpoint = load_checkpoint(model_path)
    assert checkpoint['params']['sensor_names'] == list(SENSORS)
    assert checkpoint['params']['distances'] == list(DISTANCES)
    assert checkpoint['params']['val_sources'] == [[str(second), 0, 150]]
    assert checkpoint['counters']['updates'] == 4 * math.ceil(500 / 64)
    assert checkpoint['config'].image_height == 32 and checkpoint['config'].num_sensors == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []

    report_dir = tmp_path / 'report'
    code = main(['evaluate', '--model', str(model_path), str(held), '--out', str(report_dir),
                 '--bootstrap', '50'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'mean AUC' in out and '0-10cm' in out
    report = json.loads((report_dir / 'report.json').read_text())
    for key in ('sensor_names', 'distances', 'auc', 'auc_ci_low', 'auc_ci_high', 'auc_mean',
                'auc_by_distance', 'auc_by_band', 'frames'):
        assert key in report, key
    assert report['sensor_names'] == list(SENSORS) and report['distances'] == list(DISTANCES)
    assert report['frames'] == 300
    assert len(report['auc']) == 3 and all(len(row) == 5 for row in report['auc'])
    assert report['auc'][1][4] is None and report['auc_ci_low'][1][4] is None
    defined = [(s, d) for s in range(3) for d in range(5) if (s, d) != (1, 4)]
    for s, d in defined:
        assert report['auc_ci_low'][s][d] <= report['auc'][s][d] <= report['auc_ci_high'][s][d]
    assert report['auc_mean'] >= 0.9
    assert set(report['auc_by_band']) == {'0-10cm', '10-20cm', '20-30cm'}
    assert len(report['auc_by_distance']) == 5
    # Same numbers as predicting directly.
    direct = auc_grid(predict_probabilities(build_model(checkpoint), images), labels)
    assert report['auc_mean'] == pytest.approx(auc_mean(direct))
    assert is_png(report_dir / 'auc_heatmap.png')
    assert is_png(report_dir / 'auc_by_distance.png')
    # Calibration: the ECE overall and per band, and the reliability diagram.
    assert 0.0 <= report['ece'] <= 1.0 and set(report['ece_by_band']) == set(report['auc_by_band'])
    assert 'calibration error (ECE' in out
    assert is_png(report_dir / 'calibration.png')
    assert [p.name for p in report_dir.iterdir() if p.name.startswith('.')] == []


def test_commands_report_bad_input_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(2)
    good, other = tmp_path / 'good.h5', tmp_path / 'other.h5'
    write_dataset(good, *synthetic_frames(40, rng))
    write_dataset(other, *synthetic_frames(40, rng), sensors=('a', 'b', 'c'))
    assert main(['train', str(good), str(other), '--out', str(tmp_path / 'm.pt')]) == 2
    assert 'does not match' in capsys.readouterr().err
    assert main(['train', str(tmp_path / 'missing.h5'), '--out', str(tmp_path / 'm.pt')]) == 2
    assert 'cannot read dataset' in capsys.readouterr().err
    (tmp_path / 'bad.pt').write_bytes(b'junk')
    assert main(['evaluate', '--model', str(tmp_path / 'bad.pt'), str(good), '--out',
                 str(tmp_path / 'r')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error:') and 'bad.pt' in err and len(err.splitlines()) == 1
    assert not (tmp_path / 'm.pt').exists()
