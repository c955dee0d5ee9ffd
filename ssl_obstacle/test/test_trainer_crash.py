"""A trainer killed at any moment: predictors go on with its last model, a restart resumes."""

from __future__ import annotations

import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from ssl_obstacle.core.checkpoint_reader import read_checkpoint_weights
from ssl_obstacle.core.model import ModelConfig
from ssl_obstacle.core.trainer import OnlineTrainer
from ssl_obstacle.nodes.predictor_node import PredictorNode
from test_trainer_node import (camera_frame, Driver, HEIGHT, stamp_of, stop, Streamer,
                               synthetic_frame, WIDTH)

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from ssl_obstacle.core.model import ModelConfig
    from ssl_obstacle.core.trainer import OnlineTrainer, TrainerSettings
    torch.set_num_threads(1)
    trainer = OnlineTrainer(ModelConfig(image_height=32, image_width=40),
                            TrainerSettings(min_buffer=1, batch_size=2))
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((4, 5, 31)) < 0.5, 1.0, 0.0).astype(np.float32)
    trainer.score_and_store(rng.integers(0, 255, (4, 32, 40, 3), dtype=np.uint8), labels,
                            [0, 1, 2, 3])
    path = sys.argv[1]
    while True:  # train a step, save, say so; the parent kills us at a random moment
        trainer.train_steps(1)
        trainer.save(path)
        print(trainer.updates, flush=True)
""")


def test_a_trainer_killed_mid_save_restarts_from_its_last_complete_checkpoint(tmp_path):
    path = tmp_path / 'trainer.pt'
    rng = random.Random(7)
    for _ in range(2):
        process = subprocess.Popen([sys.executable, '-c', WRITER, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        first = process.stdout.readline()  # at least one checkpoint exists
        assert first.strip().isdigit(), 'the writer did not save'
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment to kill at, not a wait
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
        saved = [int(line) for line in [first, *output.splitlines()] if line.strip()]
        restarted = OnlineTrainer(ModelConfig(image_height=32, image_width=40))
        restarted.load(path)
        # The file holds a complete checkpoint: the last save announced, or the one that was
        # being written when the kill came (already renamed into place, not yet announced).
        assert restarted.updates in (saved[-1], saved[-1] + 1)
        assert restarted.updates >= 1
        # The predictor's torch-free reader reads it too.
        assert read_checkpoint_weights(path).counters['updates'] == restarted.updates
    partials = [p for p in pathlib.Path(tmp_path).iterdir() if p.name != 'trainer.pt']
    # A kill mid-save can leave a hidden temporary file behind, never a torn checkpoint.
    assert all(p.name.startswith('.trainer.pt.') for p in partials)


NAMESPACE = '/crash'


def ros_value(value) -> str:
    """Return a parameter value as ``--ros-args -p name:=value`` reads it (20.0 a double)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(str(v) for v in value) + ']'
    return str(value)


def start_trainer(log: pathlib.Path, namespace: str = NAMESPACE,
                  **overrides) -> subprocess.Popen:
    """Start a small trainer node in a process of its own (this run's DDS environment)."""
    parameters = {'image_width': WIDTH, 'image_height': HEIGHT, 'min_buffer': 8,
                  'batch_size': 8, 'buffer_size': 500, 'max_updates_per_second': 20.0,
                  'publish_period': 0.2, 'status_period': 0.2, **overrides}
    args = [sys.executable, '-m', 'ssl_obstacle.nodes.trainer_node', '--ros-args',
            '-r', f'__ns:={namespace}']
    for name, value in parameters.items():
        args += ['-p', f'{name}:={ros_value(value)}']
    with open(log, 'a', encoding='utf-8') as output:
        return subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)


class Camera(threading.Thread):
    """Publishes camera frames at about 10 Hz, stamps increasing, until stopped."""

    def __init__(self, publisher) -> None:
        super().__init__(daemon=True)
        self.publisher = publisher
        self.image = synthetic_frame(np.random.default_rng(0), 0).payload
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            self.publisher.publish(camera_frame(self.image, 50_000_000_000 + self.sent))
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5.0)


def test_predictors_outlive_a_killed_trainer_and_a_restart_resumes_from_its_checkpoint(
        tmp_path):
    path = tmp_path / 'trainer.pt'
    log = tmp_path / 'trainer.log'
    checkpoints = {'checkpoint_path': str(path), 'checkpoint_period': 0.3, 'resume': True}
    processes = [start_trainer(log, **checkpoints)]
    try:
        with ros_context() as context:
            predictor = PredictorNode(context=context, namespace=NAMESPACE, parameter_overrides=[
                Parameter('publish_overlay', value=False),
                Parameter('publish_markers', value=False)])
            driver = Driver(context, namespace=NAMESPACE,
                            diagnostics_of=f'{NAMESPACE}/trainer: training')
            labeled, camera = Streamer(driver.labeled['']), Camera(driver.camera)
            try:
                with spinning(context, predictor, driver):
                    wait_for_subscribers([driver.camera], node=predictor, settle=0.0)
                    # Reliable frames sent before the trainer's subscription matched are lost.
                    wait_for_subscribers([driver.labeled['']], timeout=120.0, settle=0.0)
                    labeled.start()
                    camera.start()
                    assert wait_for(lambda: predictor.model_updates >= 10 and path.is_file(),
                                    120.0), log.read_text()
                    assert wait_for(lambda: bool(driver.predictions)
                                    and driver.predictions[-1].model_updates > 0, 30.0)
                    old_trainer = driver.models[''][-1].trainer

                    processes[0].send_signal(signal.SIGKILL)
                    assert processes[0].wait(30.0) == -signal.SIGKILL
                    # The predictor goes on predicting every new frame with the last model.
                    count = len(driver.predictions)
                    assert wait_for(lambda: len(driver.predictions) >= count + 5, 30.0)
                    loaded, updates = predictor.counters['models_loaded'], \
                        predictor.model_updates
                    since = len(driver.predictions)
                    assert wait_for(lambda: len(driver.predictions) >= since + 15, 30.0)
                    after = driver.predictions[since:]
                    assert {p.model_updates for p in after} == {updates}
                    stamps = [stamp_of(p) for p in after]
                    assert stamps == sorted(set(stamps))  # new frames, each once
                    assert predictor.counters['models_loaded'] == loaded

                    # Whatever the kill interrupted, the checkpoint is whole.
                    saved = read_checkpoint_weights(path).counters['updates']
                    assert saved >= 1
                    partials = [p for p in tmp_path.iterdir()
                                if p.name not in ('trainer.pt', 'trainer.log')]
                    assert all(p.name.startswith('.trainer.pt.') for p in partials)

                    # A restart resumes from it: its first model holds at least those updates.
                    models = len(driver.models[''])
                    processes.append(start_trainer(log, **checkpoints))
                    assert wait_for(lambda: any(m.trainer != old_trainer
                                                for m in driver.models[''][models:]), 120.0), \
                        log.read_text()
                    first = next(m for m in driver.models[''][models:]
                                 if m.trainer != old_trainer)
                    assert first.updates >= saved
                    assert f'a model trained for {saved} updates' in log.read_text()
                    # The predictors take the new trainer's model.
                    assert wait_for(lambda: first.trainer in predictor.model_source, 30.0)
                    count = len(driver.predictions)
                    assert wait_for(lambda: len(driver.predictions) >= count + 3
                                    and driver.predictions[-1].model_updates >= first.updates,
                                    30.0)
            finally:
                labeled.stop()
                camera.stop()
                stop(predictor, driver)
        processes[-1].send_signal(signal.SIGINT)  # a clean stop writes a last checkpoint
        assert processes[-1].wait(60.0) == 0, log.read_text()
        assert read_checkpoint_weights(path).counters['updates'] >= first.updates
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10.0)
