"""A learner process killed at any moment, even mid-save, restarts from a whole checkpoint."""

from __future__ import annotations

import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time

from ssl_obstacle.core.online import OnlineLearner

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from ssl_obstacle.core.online import LearnerSettings, OnlineLearner
    torch.set_num_threads(1)
    learner = OnlineLearner(settings=LearnerSettings(min_buffer=1, batch_size=2))
    rng = np.random.default_rng(0)
    for _ in range(4):
        labels = np.where(rng.random((5, 31)) < 0.5, 1.0, 0.0).astype(np.float32)
        learner.add_labeled(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), labels, 0)
    path = sys.argv[1]
    while True:  # train a step, save, say so; the parent kills us at a random moment
        learner.train_steps(1)
        learner.save(path)
        print(learner.updates, flush=True)
""")


def test_killed_learner_restarts_from_its_last_complete_checkpoint(tmp_path):
    path = tmp_path / 'learner.pt'
    rng = random.Random(7)
    for _ in range(3):
        process = subprocess.Popen([sys.executable, '-c', WRITER, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        first = process.stdout.readline()  # at least one checkpoint exists
        assert first.strip().isdigit(), 'the writer did not save'
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        saved = [int(line) for line in [first, *output.splitlines()] if line.strip()]
        restarted = OnlineLearner.from_checkpoint(path)
        # The file holds a complete checkpoint: the last save announced, or the one that was
        # being written when the kill came (already renamed into place, not yet announced).
        assert restarted.updates in (saved[-1], saved[-1] + 1)
        assert restarted.updates >= 1
    partials = [p for p in pathlib.Path(tmp_path).iterdir() if p.name != 'learner.pt']
    # A kill mid-save can leave a hidden temporary file behind, never a torn checkpoint.
    assert all(p.name.startswith('.learner.pt.') for p in partials)
