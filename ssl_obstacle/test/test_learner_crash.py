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


PROCESS_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from ssl_obstacle.core.online import LearnerSettings
    from ssl_obstacle.core.online_process import ProcessOnlineLearner
    learner = ProcessOnlineLearner(settings=LearnerSettings(min_buffer=1, batch_size=2))
    print(learner.pid, flush=True)
    rng = np.random.default_rng(0)
    for _ in range(4):
        labels = np.where(rng.random((5, 31)) < 0.5, 1.0, 0.0).astype(np.float32)
        learner.add_labeled(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), labels, 0)
    learner.start()  # background training in the child while the parent saves
    path = sys.argv[1]
    while True:
        learner.save(path)
        print(learner.updates, flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_killed_node_process_leaves_a_whole_checkpoint_and_no_trainer(tmp_path):
    """The trainer saves in a child process: killing the parent ends it, mid-save or not."""
    path = tmp_path / 'learner.pt'
    rng = random.Random(11)
    for _ in range(2):
        process = subprocess.Popen([sys.executable, '-c', PROCESS_WRITER, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        trainer = int(process.stdout.readline())
        first = process.stdout.readline()
        assert first.strip().isdigit(), 'the writer did not save'
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        deadline = time.monotonic() + 20.0
        while _alive(trainer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(trainer), 'the training process outlived its parent'
        restarted = OnlineLearner.from_checkpoint(path)
        assert restarted.updates >= int(first)
    partials = [p for p in pathlib.Path(tmp_path).iterdir() if p.name != 'learner.pt']
    assert all(p.name.startswith('.learner.pt.') for p in partials)
