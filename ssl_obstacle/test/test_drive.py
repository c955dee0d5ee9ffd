"""Closed-loop driving in the built-in world: metrics, the oracle, ``ssl-obstacle drive``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from ssl_obstacle.commands.drive import drive_run, ModelPredictor
from ssl_obstacle.core.avoider import AvoiderSettings
from ssl_obstacle.core.checkpoint import save_checkpoint
from ssl_obstacle.core.model import ModelConfig, ObstacleNet
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.sim.drive_metrics import DriveMetrics
from ssl_obstacle.sim.simulator import SimEvent
import torch

SENSORS = LabelParams().sensor_names


def tick(stamp_s: float, **readings: float) -> list[SimEvent]:
    """Return one proximity tick: every sensor, -1 (nothing) unless given."""
    stamp = int(stamp_s * 1e9)
    return [SimEvent(stamp, 'range', sensor=name, value=readings.get(name, -1.0))
            for name in SENSORS]


def pose(stamp_s: float, x: float, speed: float = 0.1) -> SimEvent:
    return SimEvent(int(stamp_s * 1e9), 'ground_truth_odom', pose=(x, 0.0, 0.0),
                    twist=(speed, 0.0))


def test_near_hits_are_rising_edges_and_close_time_adds_up():
    metrics = DriveMetrics(SENSORS, proximity_period=0.1)
    readings = [{}, {'left': 0.06}, {'left': 0.04, 'center': 0.05}, {'left': 0.1}, {},
                {'right': 0.03}, {'right': 0.03}]
    for index, values in enumerate(readings):
        metrics.observe(pose(0.1 * index, 0.01 * index))
        for event in tick(0.1 * index, **values):
            metrics.observe(event)
    summary = metrics.summary(collisions=0)
    assert summary['near_hits'] == 2  # the left episode (two ticks) and the right one
    assert summary['near_hits_by_sensor'] == {'left': 1, 'center_left': 0, 'center': 0,
                                              'center_right': 0, 'right': 1}
    assert summary['time_within_5cm'] == pytest.approx(0.3)  # 0.04, 0.03, 0.03
    assert summary['distance_m'] == pytest.approx(0.06)
    assert summary['mean_speed'] == pytest.approx(0.06 / 0.6)
    assert summary['near_hits_per_m'] == pytest.approx(2 / 0.06, rel=1e-3)
    assert summary['area_visited_m2'] == pytest.approx(0.01)  # one 10 cm square


def test_the_oracle_drives_without_near_hits_where_the_explorer_has_many():
    """The avoider fed the simulator's exact labels: what driving by sight can do at best."""
    oracle = drive_run('pillars', 1003, 2.0, 'oracle').report
    explorer = drive_run('pillars', 1003, 2.0, 'explorer').report
    assert oracle['collisions'] == 0 and explorer['collisions'] == 0
    assert explorer['near_hits'] >= 10 and oracle['near_hits'] <= explorer['near_hits'] / 5
    # With exact grids, reversing a turn into a blocked side is right: then none at all.
    reversing = drive_run('pillars', 1003, 2.0, 'oracle',
                          settings=AvoiderSettings(reverse_blocked_turns=True)).report
    assert reversing['near_hits'] <= 1 and reversing['collisions'] == 0
    assert oracle['distance_m'] > 0.5 * explorer['distance_m']  # it drove, it did not hide
    assert oracle['avoider']['predictions'] > 1700  # every frame of 2 minutes at 15 Hz
    assert oracle['avoider']['bad_predictions'] == 0


def test_runs_are_deterministic_for_a_seed():
    first = drive_run('walls', 5, 0.5, 'explorer').report
    again = drive_run('walls', 5, 0.5, 'explorer').report
    other = drive_run('walls', 6, 0.5, 'explorer').report
    assert first == again and first != other


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Return an untrained model's checkpoint: drive must work with any model, good or not."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('model') / 'model.pt'
    params = LabelParams()
    save_checkpoint(path, ObstacleNet(ModelConfig()), counters={'updates': 7},
                    params={'sensor_names': list(params.sensor_names),
                            'distances': list(params.distances)})
    return path


def test_the_avoider_gets_each_predictions_confidence_as_the_robots_predictor_sends_it(
        tmp_path, checkpoint):
    params = LabelParams()
    skill = np.full((len(params.sensor_names), len(params.distances)), 0.8)
    skill[0] = 0.0  # the left sensor: not learnt to rank at all
    skilled = tmp_path / 'skilled.pt'
    torch.manual_seed(0)
    save_checkpoint(skilled, ObstacleNet(ModelConfig()), counters={'updates': 7},
                    params={'sensor_names': list(params.sensor_names),
                            'distances': list(params.distances)}, cell_confidence=skill)
    predictor = ModelPredictor(skilled)
    grid = predictor(np.zeros((120, 160, 3), dtype=np.uint8))
    np.testing.assert_allclose(predictor.confidence(grid), np.abs(2 * grid - 1) * skill,
                               rtol=1e-5)
    assert ModelPredictor(checkpoint).confidence(grid) is None  # no skill, no confidence
    careful = AvoiderSettings(min_confidence=0.1)
    counters = drive_run('walls', 3, 0.2, 'avoider', predictor, careful).report['avoider']
    assert counters['predictions'] > 100 and counters['bad_predictions'] == 0
    assert counters['unsure_predictions'] == counters['predictions']  # the left, always
    without = drive_run('walls', 3, 0.2, 'avoider', ModelPredictor(checkpoint), careful)
    assert without.report['avoider']['unsure_predictions'] == 0


def _drive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'ssl_obstacle', 'drive', '--no-progress',
                           *args], capture_output=True, text=True, timeout=600)


def test_drive_both_writes_one_report_and_one_figure_with_both_paths(tmp_path, checkpoint):
    out = tmp_path / 'drive'
    done = _drive('--model', str(checkpoint), '--world', 'walls', '--seed', '3',
                  '--minutes', '1', '--controller', 'both', '--out', str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / 'report.json').read_text())
    assert (report['world'], report['seed'], report['minutes']) == ('walls', 3, 1.0)
    runs = {run['controller']: run for run in report['runs']}
    assert set(runs) == {'explorer', 'avoider'}
    for run in runs.values():
        for key in ('distance_m', 'mean_speed', 'near_hits', 'near_hits_per_m', 'collisions',
                    'reflexes', 'time_within_5cm', 'near_hits_by_sensor'):
            assert key in run, key
        assert run['collisions'] == 0 and 0.0 <= run['mean_speed'] <= 0.14
        assert sum(run['near_hits_by_sensor'].values()) == run['near_hits']
        assert 0.0 < run['area_visited_m2'] < 4.0  # the arena is 2 m x 2 m
    assert runs['explorer']['distance_m'] > 2.0  # a minute at up to 0.1 m/s
    avoider = runs['avoider']
    assert avoider['model_updates'] == 7 and avoider['avoider']['predictions'] > 850
    assert avoider['avoider']['bad_predictions'] == 0
    assert set(report['comparison']) == {'near_hits_per_m_ratio', 'mean_speed_ratio'}
    lines = done.stdout.splitlines()
    assert lines[0].startswith('controller') and lines[1].startswith('explorer')
    assert lines[2].startswith('avoider')
    with Image.open(out / 'trajectory.png') as image:
        pixels = np.asarray(image.convert('RGB'))
    assert pixels.shape[1] > 1.6 * pixels.shape[0], 'two panels side by side'
    assert pixels.std() > 10


def test_drive_explains_what_is_missing_or_wrong(tmp_path):
    done = _drive('--controller', 'avoider', '--out', str(tmp_path / 'a'))
    assert done.returncode == 2 and 'needs a model' in done.stderr
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    done = _drive('--controller', 'avoider', '--model', str(bad), '--out', str(tmp_path / 'b'))
    assert done.returncode == 2 and 'not a readable checkpoint' in done.stderr
    done = _drive('--controller', 'explorer', '--world', 'nowhere', '--out', str(tmp_path / 'c'))
    assert done.returncode == 2 and 'unknown world' in done.stderr
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()
