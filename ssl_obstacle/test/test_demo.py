"""``ssl-obstacle demo --minutes 1`` end to end: four nodes over DDS, then held-out evaluation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import torch


def test_demo_runs_end_to_end_and_writes_every_file(tmp_path):
    out = tmp_path / 'demo'
    done = subprocess.run(
        [sys.executable, '-m', 'ssl_obstacle', 'demo', '--minutes', '1', '--out', str(out),
         '--heldout-minutes', '0.5'],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == f'run folder: {out}'
    assert any(line.startswith('frames ') and 'mean AUC' in line for line in lines[-40:])

    report = json.loads((out / 'report.json').read_text())
    for key in ('sensor_names', 'distances', 'auc', 'auc_mean', 'auc_by_distance', 'frames',
                'learning_curve', 'settings'):
        assert key in report, key
    assert len(report['auc']) == 5 and all(len(row) == 31 for row in report['auc'])
    assert report['frames'] > 100
    assert 0.5 < report['auc_mean'] <= 1.0  # better than chance after one simulated minute
    curve = report['learning_curve']
    assert len(curve) >= 3 and curve[-1]['sim_seconds'] > 55
    assert curve[-1]['labeled_frames'] > 200 and curve[-1]['updates'] > 0
    assert report['training']['collisions'] == 0
    assert report['settings']['heldout_world'] != report['settings']['world']

    for name in ('auc_heatmap.png', 'auc_by_distance.png', 'learning_curve.png',
                 'examples.png'):
        with Image.open(out / name) as image:
            pixels = np.asarray(image.convert('RGB'))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert pixels.std() > 10, f'{name} looks blank'
    checkpoint = torch.load(out / 'checkpoint.pt', weights_only=True)
    # The final checkpoint is written after the last curve point, training having gone on.
    assert checkpoint['counters']['updates'] >= curve[-1]['updates'] > 0
    assert (out / 'demo.log').read_text().count('held-out evaluation') == 1
