"""``ssl-obstacle demo --minutes 1`` end to end: four nodes over DDS, then held-out evaluation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from ssl_obstacle.commands.demo import Pacer
import torch


def test_demo_runs_end_to_end_and_writes_every_file(tmp_path):
    out = tmp_path / 'demo'
    with subprocess.Popen(
            [sys.executable, '-m', 'ssl_obstacle', 'demo', '--minutes', '1', '--out', str(out),
             '--heldout-minutes', '0.5', '--drive-minutes', '0.5'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        done_pid = demo.pid
        stdout, stderr = demo.communicate(timeout=600)
    done = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == f'run folder: {out}'
    assert any(line.startswith('frames ') and 'mean AUC' in line for line in lines[-40:])

    report = json.loads((out / 'report.json').read_text())
    for key in ('sensor_names', 'distances', 'auc', 'auc_mean', 'auc_by_distance', 'frames',
                'learning_curve', 'settings', 'ece', 'ece_by_band', 'reliability'):
        assert key in report, key
    assert len(report['auc']) == 5 and all(len(row) == 31 for row in report['auc'])
    assert report['frames'] > 100
    # Sane, not necessarily good: one simulated minute (~150 updates) is too early to judge
    # the held-out world (10-minute runs' curves read 0.34-0.82 at 60 s, before and after
    # this session's learner changes). Learning itself: the synthetic task of
    # test_online_learner.py here, held-out figures in benchmarks/bench_heldout.py.
    assert 0.0 <= report['auc_mean'] <= 1.0
    assert all(0.0 <= value <= 1.0 for value in report['auc_by_band'].values())
    known, positive = np.asarray(report['known_cells']), np.asarray(report['positive_cells'])
    assert known.shape == (5, 31) and (known == report['frames']).all()  # every cell scored
    assert 0 < positive.sum() < known.sum()  # both classes present: AUC is defined
    low = np.asarray(report['auc_by_distance_ci_low'])
    high = np.asarray(report['auc_by_distance_ci_high'])
    assert low.shape == high.shape == (31,) and (low >= 0).all() and (low <= high).all()
    assert (high <= 1).all()
    curve = report['learning_curve']
    assert len(curve) >= 3 and curve[-1]['sim_seconds'] > 55
    assert curve[-1]['labeled_frames'] > 200 and curve[-1]['updates'] > 0
    # The curve is scored on the final evaluation's frames: one yardstick for 3 and 10 minutes.
    assert all(point['heldout_frames'] == report['frames'] for point in curve)
    scored = [point for point in curve if point['heldout_auc'] is not None]
    assert scored and all(0.0 <= point['heldout_ece'] <= 1.0 for point in scored)
    assert report['training']['collisions'] == 0
    # The training world's look was re-drawn every 5 simulated seconds, and simulated time
    # waited for the learner: about 3 updates per simulated second once it could train.
    assert report['settings']['appearance_period'] == 5.0
    assert report['training']['appearance_changes'] >= 11
    pacing = report['training']['pacing']
    trained_for = curve[-1]['sim_seconds'] - pacing['trainable_since_sim_seconds']
    assert report['training']['updates'] >= 3.0 * trained_for - 5
    assert report['settings']['heldout_world'] != report['settings']['world']
    # The trainer ran in a child process of its own and closed cleanly (its last
    # checkpoint is what was evaluated), with no labeled frame lost on the way.
    process = report['training']['trainer_process']
    assert process['exit_code'] == 0 and process['pid'] != done_pid
    assert report['training']['trainer']['labeled_dropped'] == 0
    assert report['training']['labeled_frames'] == report['training']['labeler']['published']
    trainer = report['settings']['trainer']  # the trainer's parameters, for provenance
    assert trainer['implied_blocking'] is True and trainer['average_decay'] == 0.99
    assert trainer['batch_size'] == 64 and 'checkpoint_path' not in trainer

    # Third act: the model drove the held-out world, then the explorer did, from one start.
    driving = report['driving']
    assert [run['controller'] for run in driving['runs']] == ['avoider', 'explorer']
    assert driving['world'] == report['settings']['heldout_world'] and driving['minutes'] == 0.5
    for run in driving['runs']:
        assert run['collisions'] == 0
        assert run['mean_speed'] == pytest.approx(run['distance_m'] / 30.0, rel=0.05, abs=1e-3)
    # The explorer roams; a one-minute model may see obstacles everywhere, and the avoider
    # then turns on the spot rather than drive on a guess (a fresh clone's run: 0.025 m).
    assert driving['runs'][1]['distance_m'] > 0.1
    assert set(driving['comparison']) == {'near_hits_per_m_ratio', 'mean_speed_ratio'}
    assert any(line.startswith('avoider ') for line in lines[-6:])
    assert any(line.startswith('explorer ') for line in lines[-6:])
    assert 0.0 <= report['ece'] <= 1.0
    groups = report['confidence_vs_error']['groups']
    assert sum(g['cells'] for g in groups) == known.sum()
    assert all(0.0 <= g['confidence_low'] <= g['confidence_high'] <= 1.0 for g in groups)
    by_cell = np.asarray(report['confidence_vs_error']['mean_by_cell'])
    assert by_cell.shape == known.shape and ((by_cell >= 0) & (by_cell <= 1)).all()
    assert set(report['ece_by_band']) == set(report['auc_by_band'])
    assert sum(report['reliability']['all']['cells']) == known.sum()
    for name in ('auc_heatmap.png', 'auc_by_distance.png', 'learning_curve.png',
                 'examples.png', 'drive.png', 'calibration.png', 'confidence.png'):
        with Image.open(out / name) as image:
            pixels = np.asarray(image.convert('RGB'))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert pixels.std() > 10, f'{name} looks blank'
    checkpoint = torch.load(out / 'checkpoint.pt', weights_only=True)
    # The final checkpoint is written after the last curve point, training having gone on.
    assert checkpoint['counters']['updates'] >= curve[-1]['updates'] > 0
    assert (out / 'demo.log').read_text().count('held-out evaluation') == 1


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_holds_simulated_time_until_the_trainer_has_trained_enough():
    clock = Clock()
    pacer = Pacer(2.0, clock=clock)
    state = {'updates': 0, 'received': 10, 'published': 10, 'training': True}
    # No update yet (its buffer fills first): never hold, or the frames that would fill it
    # never come.
    assert not pacer.should_hold(5.0, **state)
    assert pacer.trainable_since is None
    assert not pacer.should_hold(6.0, **{**state, 'updates': 1})  # trains from 6 s
    assert pacer.trainable_since == 6.0
    assert not pacer.should_hold(7.0, **{**state, 'updates': 1})  # 2 due, within slack
    assert pacer.should_hold(10.0, **{**state, 'updates': 5})  # 8 due
    assert not pacer.should_hold(10.0, **{**state, 'updates': 8})
    # A trainer that is paused is not waited for.
    assert not pacer.should_hold(20.0, **{**state, 'updates': 8, 'training': False})
    # Without pacing, only frames in flight hold it.
    assert not Pacer(0.0, clock=clock).should_hold(100.0, **{**state, 'updates': 1})


def test_pacer_waits_for_frames_in_flight_but_not_for_frames_lost_on_the_way():
    clock = Clock()
    pacer = Pacer(0.0, clock=clock)
    state = {'updates': 0, 'training': True}
    assert not pacer.should_hold(1.0, received=50, published=60, **state)
    assert pacer.should_hold(2.0, received=50, published=50 + Pacer.MAX_IN_FLIGHT + 1, **state)
    clock.now += 1.0
    assert pacer.should_hold(2.0, received=60, published=100, **state)  # still arriving
    clock.now += Pacer.LOST_AFTER + 0.1
    # Nothing arrived for a while: the 40 frames count as lost, and the simulation goes on.
    assert not pacer.should_hold(2.0, received=60, published=100, **state)
    assert pacer.lost == 40
    assert not pacer.should_hold(3.0, received=70, published=110, **state)
    assert pacer.summary()['frames_lost_in_transit'] == 40
    assert pacer.summary()['held_wall_seconds'] == round(1.0 + Pacer.LOST_AFTER + 0.1, 1)


def test_demo_says_so_when_the_trainer_process_dies(tmp_path):
    # A parameter the trainer refuses at start: its process exits, and the demo stops with
    # the reason instead of simulating for a trainer that is not there.
    done = subprocess.run(
        [sys.executable, '-m', 'ssl_obstacle', 'demo', '--minutes', '1',
         '--out', str(tmp_path / 'demo'), '--trainer-param', 'model_encoding=float8'],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert 'error: the trainer (process' in done.stderr
    assert 'exited with code' in done.stderr
    assert 'model_encoding must be one of' in done.stderr  # the trainer's own reason
    assert not (tmp_path / 'demo' / 'report.json').exists()
