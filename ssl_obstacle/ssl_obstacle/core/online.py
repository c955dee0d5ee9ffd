"""
The online learner: replay, background training, prequential evaluation, safe prediction.

The ROS node is a thin shell around :class:`OnlineLearner`; everything that decides *what*
is learned and *how it is scored* lives here, free of rclpy, so that it can be tested and
reused offline.

Three threads meet here, and each concern has its own answer:

* **Training never runs in a caller's thread.** :meth:`OnlineLearner.add_labeled` and
  :meth:`OnlineLearner.predict` only predict and copy; the optimiser steps in a background
  thread (:meth:`~OnlineLearner.start`), capped at ``max_updates_per_second`` so that it
  leaves CPU to the rest of the robot, or synchronously through
  :meth:`~OnlineLearner.train_steps` (tests, offline use), which is the same code path.
* **Prediction never sees half-updated weights.** The trainer owns a private model. After
  every ``publish_every`` steps it deep-copies it into a new, frozen, eval-mode
  :class:`ModelSnapshot` and publishes it by rebinding one attribute, an atomic reference
  swap in Python. A predictor takes the reference once and runs on that snapshot to the
  end; nothing ever writes into a published snapshot, so there is no lock on the
  prediction path and prediction never waits for a training step. (A learner that
  recycles a few models instead of copying one per update, as the training process's
  parent does, first revokes the old snapshot's :class:`SnapshotLease`; a prediction
  that raced with the rewrite sees it and is redone.) What is published is
  an exponential moving average of the trained weights (``average_decay``), not the last
  step's: one SGD step's weights jitter with its batch, the average does not.
* **Evaluation is prequential.** Every labeled frame is first predicted by the current
  snapshot and scored against its labels, *then* added to the replay buffer: the running
  AUC is over frames the model had not trained on, an honest figure with no held-out set.
  The window holds the last ``auc_window`` scored frames; AUC per distance pools the
  sensors, and the overall AUC pools every known cell.
"""

from __future__ import annotations

from collections import deque
import copy
from dataclasses import asdict, dataclass, field
import logging
import math
from pathlib import Path
import threading
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import auc_by_distance, roc_auc
from .model import (augment, masked_bce_loss, ModelConfig, ObstacleNet, predict_probabilities,
                    preprocess)
from .replay import ReplayBuffer

_LOG = logging.getLogger(__name__)

#: Losses averaged into :attr:`LearnerStatusData.recent_loss`.
RECENT_LOSS_STEPS = 50


@dataclass(frozen=True)
class LearnerSettings:
    """
    How the online learner trains, and how much it remembers.

    ``max_updates_per_second`` caps the background thread (0: no cap), so training cannot
    starve the camera pipeline on a small computer. ``min_buffer`` frames are collected
    before the first step, so the first batches are not a handful of frames repeated.
    ``train_threads`` is the torch intra-op thread count of the training thread.
    """

    learning_rate: float = 1e-3
    batch_size: int = 64
    max_updates_per_second: float = 20.0
    buffer_size: int = 20000
    min_buffer: int = 64
    device: str = 'cpu'
    seed: int = 0
    augment: bool = True
    train_threads: int = 1
    auc_window: int = 2000
    #: Publish a prediction snapshot after every this many steps (1: after each).
    publish_every: int = 1
    #: torch intra-op threads of a thread that calls predict (0: leave them as they are).
    #: One, because on a small, busy CPU a multi-threaded predict of one 64×80 frame waits
    #: for cores the trainer holds: measured on 2 cores, p50 88 ms with 2 threads against
    #: 2 ms with 1. torch's OpenMP setting is per thread, so this touches only the caller.
    predict_threads: int = 1
    #: Train in the channels-last memory layout: the convolutions of this small network
    #: run about twice as fast on the CPU in it (measured: 73 → 39 ms per batch of 64).
    #: Published snapshots are converted back, as one-frame prediction is faster in NCHW.
    channels_last: bool = True
    #: Niceness the training *process* adds to itself (:class:`ProcessOnlineLearner`): the
    #: OS then runs prediction first whenever both want a core, and training gets what is
    #: left. 0 keeps the parent's priority: on a machine other jobs saturate, a reniced
    #: trainer starves (the demo measured 0 updates and a backlog of unstored frames at +10).
    train_nice: int = 0
    #: Batches hold at least this share of frames with an obstacle cell (0: sample the
    #: buffer as it is, as offline training does). 0 by default: at 0.5 the online model
    #: trailed an offline one trained on the same frames by 0.06 and 0.11 held-out AUC
    #: (bench_heldout.py, seeds 0 and 1), at 0 by -0.01 and 0.06: no worse, and the same
    #: sampling as offline. The buffer still keeps rare positives from eviction.
    positive_sample_fraction: float = 0.0
    #: Predict with an exponential moving average of the weights, ``avg ← d·avg + (1−d)·w``
    #: after every step, with ``d = min(average_decay, (1 + n) / (10 + n))`` at step ``n``
    #: so the average follows quickly at first (0: predict with the latest weights). With
    #: a constant learning rate, the weights of any single step jitter with its batch;
    #: their average over the last ~1/(1−d) steps is steadier and usually better held out.
    average_decay: float = 0.99
    #: Sample each batch element as the least-drawn of a few random frames of the buffer
    #: (:class:`~.replay.ReplayBuffer`), so every frame is trained on about equally often
    #: however early or late it arrived, as in offline epochs. False: uniform sampling,
    #: which over-trains the first minutes' frames and barely sees the last minute's.
    even_exposure: bool = True


@dataclass
class LearnerStatusData:
    """
    A consistent picture of the learner for the 1 Hz status message and the demo's log.

    AUCs are NaN while the window lacks a class (e.g. no positive cell yet at a distance).
    """

    updates: int
    labeled_frames: int
    replay_size: int
    recent_loss: float
    auc_by_distance: np.ndarray
    auc: float
    paused: bool
    replay_positive_frames: int = 0
    replay_evicted: int = 0
    window_frames: int = 0
    model_version: int = 0
    resets: int = 0
    running: bool = False
    error: str | None = None


#: Times a prediction is redone when its snapshot's weights were recycled under it.
PREDICT_ATTEMPTS = 5


class SnapshotLease:
    """
    Whether a snapshot's model still holds the weights it was published with.

    A learner that reuses a few preallocated models for its snapshots (see
    :mod:`~.online_process`: a deep copy per update held the interpreter lock for 2-10 ms
    and delayed prediction) revokes the lease of the snapshot it is about to overwrite,
    before the first byte is written. A reader checks the lease *after* using the weights:
    still intact means no rewrite had begun, so what it computed is whole; revoked means
    it may have read a mix, and it reads again from the current snapshot. Python's
    interpreter lock orders the revocation before the write, as a sequence lock would.
    """

    __slots__ = ('intact',)

    def __init__(self) -> None:
        """Start intact."""
        self.intact = True

    def revoke(self) -> None:
        """Mark the snapshot's model as about to be overwritten."""
        self.intact = False


@dataclass(frozen=True)
class ModelSnapshot:
    """
    Published weights for prediction, never modified while its lease is intact.

    ``version`` increases with every publication (also across resets and loads), so a
    caller can tell which weights produced a prediction; ``updates`` is the training step
    count they reflect. The in-process learner publishes a fresh copy every time and never
    revokes a lease; the process learner recycles models (see :class:`SnapshotLease`).
    """

    version: int
    updates: int
    model: ObstacleNet
    lease: SnapshotLease = field(default_factory=SnapshotLease, compare=False)

    @property
    def intact(self) -> bool:
        """Return whether the model still holds this snapshot's weights."""
        return self.lease.intact


def fresh_model(config: ModelConfig, settings: LearnerSettings, resets: int,
                device: torch.device) -> tuple[ObstacleNet, torch.optim.Optimizer]:
    """
    Return newly initialised weights and a new Adam optimiser.

    The initialisation is seeded from ``seed`` and the reset count inside a forked RNG,
    so runs are reproducible, the process's global torch RNG is left alone, and a training
    process and its parent build the very same first weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed * 1000 + resets)
        model = ObstacleNet(config).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    return model, optimizer


def _config_dict(config: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Return a ModelConfig (or its dict form from a checkpoint) as a comparable dict."""
    values = dict(config) if isinstance(config, Mapping) else asdict(config)
    if 'filters' in values:
        values['filters'] = tuple(int(f) for f in values['filters'])
    return values


def window_aucs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """
    Return the AUC per distance (sensors pooled) and over every known cell of a window.

    Ranking a full window (2000 frames of 5x31 cells) takes 30-90 ms of CPU on a small
    computer; the process learner therefore has its training process compute it.
    """
    by_distance = np.asarray(auc_by_distance(probs, labels), dtype=np.float64)
    return by_distance, float(roc_auc(probs, labels))  # roc_auc skips unknown (NaN) cells


class PrequentialLearner:
    """
    What every online learner shares: published snapshots, prediction, the scored window.

    Subclasses own the training (:class:`OnlineLearner` in a thread of this process,
    :class:`~.online_process.ProcessOnlineLearner` in a process of its own); they keep a
    scored frame for training in :meth:`_store` and publish weights with
    :meth:`_set_snapshot`.
    """

    def __init__(self, config: ModelConfig | None = None,
                 settings: LearnerSettings | None = None) -> None:
        """Check the settings and set up the window; the subclass publishes a snapshot."""
        self.config = config if config is not None else ModelConfig()
        self.settings = settings if settings is not None else LearnerSettings()
        if self.settings.batch_size < 1 or self.settings.auc_window < 1:
            raise ValueError('batch_size and auc_window must be at least 1')
        self.device = self._resolve_device(self.settings.device)
        shape = (self.config.num_sensors, self.config.num_distances)
        # Guards the prequential window and the labeled-frame counter.
        self._window_lock = threading.Lock()
        # One forward pass at a time. Two at once (a camera frame and a labeled frame being
        # scored) interleave op by op through the interpreter lock, and each then took 3-7
        # ms instead of 1-2: most of the camera-to-prediction p99. In turn, a camera frame
        # waits at most for one scoring pass.
        self._forward_lock = threading.Lock()
        self._window_probs = np.full((self.settings.auc_window, *shape), np.nan, np.float32)
        self._window_labels = np.full((self.settings.auc_window, *shape), np.nan, np.float32)
        self._window_count = 0
        self._window_next = 0
        self.updates = 0
        self.labeled_frames = 0
        self.resets = 0
        self._version = 0
        self._losses: deque[float] = deque(maxlen=RECENT_LOSS_STEPS)
        self._paused = threading.Event()
        self._snapshot: ModelSnapshot
        #: Turns a scored frame's observed labels into its training targets (e.g.
        #: :class:`~.blocking.BlockedCompletion`); None trains on the observed labels.
        #: Scoring always uses the observed ones.
        self.label_completion: Callable[[np.ndarray], np.ndarray] | None = None

    @staticmethod
    def _resolve_device(device: str) -> torch.device:
        """Return the torch device, falling back to the CPU when CUDA is asked but absent."""
        if device.startswith('cuda') and not torch.cuda.is_available():
            _LOG.warning('device %r requested but CUDA is not available: using the CPU', device)
            return torch.device('cpu')
        return torch.device(device)

    def _set_snapshot(self, model: ObstacleNet, updates: int) -> None:
        """
        Publish ``model`` (a private copy nobody else writes) as the prediction weights.

        The model is frozen first and the reference rebound last; rebinding an attribute is
        atomic, so a predictor sees either the old or the new weights, never a mix.
        """
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        self._version += 1
        self._snapshot = ModelSnapshot(self._version, int(updates), model)

    # -- prediction and prequential evaluation ---------------------------------------------

    def snapshot(self) -> ModelSnapshot:
        """Return the currently published weights (unchanged while ``intact``)."""
        return self._snapshot

    def predict_with_snapshot(self, images: np.ndarray) -> tuple[np.ndarray, ModelSnapshot]:
        """Return :meth:`predict`'s probabilities and the snapshot that made them."""
        threads = self.settings.predict_threads
        if threads > 0 and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        images = np.asarray(images)
        shape = (self.config.image_height, self.config.image_width, 3)
        if images.ndim not in (3, 4) or images.shape[-3:] != shape or images.dtype != np.uint8:
            raise ValueError(f'expected uint8 images (N, {shape[0]}, {shape[1]}, 3) or one '
                             f'{shape}, got {images.dtype} {images.shape}')
        for _ in range(PREDICT_ATTEMPTS):
            snapshot = self._snapshot  # one read: the whole prediction uses these weights
            with self._forward_lock:
                probabilities = predict_probabilities(snapshot.model, images,
                                                      device=self.device)
            if snapshot.intact:  # checked after: no rewrite of these weights had begun
                break
        else:
            raise RuntimeError(f'the weights were replaced during each of {PREDICT_ATTEMPTS} '
                               'predictions in a row')
        if images.ndim == 3:
            probabilities = probabilities[0]
        return probabilities, snapshot

    def predict_with_version(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """Return :meth:`predict`'s probabilities and the snapshot version that made them."""
        probabilities, snapshot = self.predict_with_snapshot(images)
        return probabilities, snapshot.version

    def predict(self, images: np.ndarray) -> np.ndarray:
        """
        Return P(obstacle) (S, D) for one uint8 frame (H, W, 3), or (N, S, D) for a batch.

        Uses the latest published snapshot without locking, so it never waits for a
        training step and never sees a half-updated parameter set.
        """
        return self.predict_with_snapshot(images)[0]

    def add_labeled(self, image: np.ndarray, labels: np.ndarray, stamp: int) -> np.ndarray:
        """
        Score one labeled frame with the current model, then keep it for training.

        The order is the point (prequential evaluation): the prediction is made and recorded
        in the running window before the frame enters the replay buffer, so the model has
        never trained on a frame it is scored on. Frames without any known cell are scored
        (they change nothing) but not stored: they would carry no gradient. A stored frame
        trains on ``label_completion(labels)`` when set. Returns the prediction (S, D).
        Labels must be NaN (unknown) or in [0, 1]; anything else raises ``ValueError``
        before the frame is scored or stored.
        """
        labels = np.asarray(labels, dtype=np.float32)
        shape = (self.config.num_sensors, self.config.num_distances)
        if labels.shape != shape:
            raise ValueError(f'labels must be {shape}, got {labels.shape}')
        known = labels[~np.isnan(labels)]
        if not ((known >= 0.0) & (known <= 1.0)).all():
            # A target outside [0, 1] makes the cross-entropy unbounded below: the model
            # would learn to push its logits to infinity, and the loss goes negative.
            raise ValueError(f'labels must be NaN (unknown) or in [0, 1], got values from '
                             f'{float(known.min()):g} to {float(known.max()):g}')
        prediction = self.predict(image)
        with self._window_lock:
            slot = self._window_next
            self._window_probs[slot] = prediction
            self._window_labels[slot] = labels
            self._window_next = (slot + 1) % self.settings.auc_window
            self._window_count = min(self._window_count + 1, self.settings.auc_window)
            self.labeled_frames += 1
        if not np.isnan(labels).all():
            targets = labels if self.label_completion is None else \
                np.asarray(self.label_completion(labels), dtype=np.float32)
            self._store(np.asarray(image), targets, int(stamp))
        return prediction

    def _store(self, image: np.ndarray, labels: np.ndarray, stamp: int) -> None:
        """Keep a scored frame for training (in the subclass's replay buffer)."""
        raise NotImplementedError

    def _clear_window(self) -> None:
        """Forget the scored frames: they describe a model that is no longer current."""
        with self._window_lock:
            self._window_probs[:] = np.nan
            self._window_labels[:] = np.nan
            self._window_count = 0
            self._window_next = 0

    def prequential_window(self) -> tuple[np.ndarray, np.ndarray]:
        """Return copies of the scored (probabilities, labels) in the window, (n, S, D)."""
        with self._window_lock:
            count = self._window_count
            return self._window_probs[:count].copy(), self._window_labels[:count].copy()

    def _status(self, buffer_counters: Mapping[str, int], running: bool,
                error: str | None) -> LearnerStatusData:
        """Return the status from the window, the losses and the trainer's counters."""
        probs, labels = self.prequential_window()
        if len(probs):
            by_distance, overall = self._window_aucs(probs, labels)
        else:
            by_distance, overall = np.full(self.config.num_distances, np.nan), math.nan
        losses = list(self._losses)
        return LearnerStatusData(
            updates=self.updates, labeled_frames=self.labeled_frames,
            replay_size=int(buffer_counters.get('held', 0)),
            recent_loss=float(np.mean(losses)) if losses else math.nan,
            auc_by_distance=by_distance, auc=overall, paused=self.paused,
            replay_positive_frames=int(buffer_counters.get('positive_frames', 0)),
            replay_evicted=int(buffer_counters.get('evicted', 0)), window_frames=len(probs),
            model_version=self._snapshot.version, resets=self.resets,
            running=running, error=error)

    def _window_aucs(self, probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """Return the window's AUC per distance and over every known cell (see below)."""
        return window_aucs(probs, labels)

    @property
    def paused(self) -> bool:
        """Return whether training is paused."""
        return self._paused.is_set()

    def _counters(self) -> dict[str, int]:
        """Return the counters a checkpoint carries."""
        return {'updates': self.updates, 'labeled_frames': self.labeled_frames,
                'resets': self.resets}


class OnlineLearner(PrequentialLearner):
    """
    Learn obstacle perception from a stream of labeled frames while predicting on others.

    Training runs in a thread of this process (:meth:`start`) or in the caller's
    (:meth:`train_steps`). Thread safety: ``add_labeled`` and ``predict`` may be called
    from any threads, together with the training thread; ``train_steps``, ``reset_model``,
    ``state_dict``, ``load_state_dict``, ``save`` and ``load`` serialise with training on
    one lock.
    """

    def __init__(self, config: ModelConfig | None = None,
                 settings: LearnerSettings | None = None) -> None:
        """Build a fresh model, its optimiser, an empty replay buffer and a first snapshot."""
        super().__init__(config, settings)
        self.buffer = ReplayBuffer(
            self.settings.buffer_size, (self.config.image_height, self.config.image_width, 3),
            self.config.num_sensors, self.config.num_distances, seed=self.settings.seed,
            positive_sample_fraction=self.settings.positive_sample_fraction,
            even_exposure=self.settings.even_exposure)
        self._rng = np.random.default_rng(self.settings.seed)
        # Serialises everything that touches the training model and optimiser.
        self._train_lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._model, self._optimizer = fresh_model(self.config, self.settings, self.resets,
                                                   self.device)
        self._average = self._fresh_average()
        self._publish()

    def _fresh_average(self) -> AveragedModel | None:
        """Return a moving average that starts at the current weights (None when off)."""
        decay = float(self.settings.average_decay)
        if not 0.0 < decay < 1.0:
            return None

        def ema(average: torch.Tensor, current: torch.Tensor,
                count: torch.Tensor) -> torch.Tensor:
            step_decay = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
            return average + (current - average) * (1.0 - step_decay)

        return AveragedModel(self._model, avg_fn=ema, use_buffers=True)

    def predicting_model(self) -> ObstacleNet:
        """Return the weights predictions come from: the moving average, or the model."""
        return self._average.module if self._average is not None else self._model

    def _publish(self) -> None:
        """Publish a frozen copy of the predicting weights (caller holds the lock)."""
        model = copy.deepcopy(self.predicting_model())
        if self.settings.channels_last:
            model = model.to(memory_format=torch.contiguous_format)
        self._set_snapshot(model, self.updates)

    def _store(self, image: np.ndarray, labels: np.ndarray, stamp: int) -> None:
        """Add a scored frame to the replay buffer and wake the trainer."""
        self.buffer.add(image, labels, stamp)
        self._wake.set()

    # -- training ----------------------------------------------------------------------------

    def _train_once(self) -> float:
        """
        Take one optimiser step on a replay batch; return its loss.

        Sampling, augmentation, the step and publication all happen under the training
        lock, so the synchronous and background paths cannot interleave.
        """
        settings = self.settings
        with self._train_lock:
            images, labels, _ = self.buffer.sample(settings.batch_size, self._rng)
            if settings.augment:
                images, labels = augment(images, labels, self._rng)
            inputs = preprocess(images).to(self.device)
            if self.settings.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            targets = torch.from_numpy(np.ascontiguousarray(labels)).to(self.device)
            self._model.train()
            self._optimizer.zero_grad(set_to_none=True)
            loss = masked_bce_loss(self._model(inputs), targets)
            loss.backward()
            self._optimizer.step()
            if self._average is not None:
                self._average.update_parameters(self._model)
            self.updates += 1
            value = float(loss.detach())
            self._losses.append(value)
            if self.updates % max(1, settings.publish_every) == 0:
                self._publish()
            return value

    def _can_train(self) -> bool:
        """Return whether the buffer holds enough frames for a step."""
        return len(self.buffer) >= max(1, self.settings.min_buffer)

    def train_steps(self, n: int) -> int:
        """
        Take up to ``n`` steps now, in the calling thread; return how many were taken.

        The same code as the background thread, without its rate cap and with the calling
        thread's torch thread count; none are taken while the buffer holds fewer than
        ``min_buffer`` frames. An explicit call trains even when paused (pausing governs the
        background thread).
        """
        done = 0
        for _ in range(int(n)):
            if not self._can_train():
                break
            self._train_once()
            done += 1
        return done

    def start(self) -> None:
        """Start the background training thread (no-op if it is running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name='ssl-online-trainer',
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the training thread after its current step; return whether it has ended."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        """Return whether the training thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """Return the exception that ended the training thread, if one did."""
        return self._error

    def _run(self) -> None:
        """Train until stopped: wait while paused or short of frames, pace to the cap."""
        torch.set_num_threads(max(1, int(self.settings.train_threads)))
        cap = float(self.settings.max_updates_per_second)
        period = 1.0 / cap if cap > 0 else 0.0
        next_step = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._paused.is_set() or not self._can_train():
                    self._wake.wait(0.05)
                    self._wake.clear()
                    next_step = time.monotonic()
                    continue
                if period:
                    delay = next_step - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                        continue
                    # Never bank more than one period of slack (no bursts after a stall).
                    next_step = max(next_step + period, time.monotonic() - period)
                with self._train_lock:  # pause() waits for this lock: no step after it
                    if self._paused.is_set():
                        continue
                    self._train_once()
        except Exception as error:  # reported through status(); the node decides what to do
            _LOG.exception('online training stopped by an error')
            self._error = error

    def pause(self) -> None:
        """
        Stop taking training steps (frames are still scored and stored).

        Returns once a step in progress has ended, so ``updates`` stays as it is from then
        on: the node's pause service answers "paused" when training really is, and a test
        needs no sleep to let the last step finish.
        """
        self._paused.set()
        with self._train_lock:  # the background loop checks the flag under this lock
            pass

    def resume(self) -> None:
        """Take training steps again."""
        self._paused.clear()
        self._wake.set()

    def reset_model(self) -> None:
        """
        Start again from fresh weights and a new optimiser.

        The replay buffer and the cumulative counters (updates, labeled frames) are kept:
        the stored frames are still correctly labeled, so relearning from them is the
        quickest recovery, and monotonic counters keep logs and plots simple. The
        prequential window is cleared, as it scored the old model.
        """
        with self._train_lock:
            self.resets += 1
            self._model, self._optimizer = fresh_model(self.config, self.settings,
                                                       self.resets, self.device)
            self._average = self._fresh_average()
            self._losses.clear()
            self._publish()
        self._clear_window()

    # -- status --------------------------------------------------------------------------------

    def status(self) -> LearnerStatusData:
        """Return counters, the recent loss and the prequential AUCs (a few ms to compute)."""
        error = self._error
        return self._status(self.buffer.counters(), self.running,
                            None if error is None else repr(error))

    def close(self) -> None:
        """Stop the training thread (nothing else to release; for symmetry with a process)."""
        self.stop()

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """
        Return model, optimiser, counters, settings and config as plain copies.

        The replay buffer is not included: at the default size it is hundreds of
        megabytes, and the robot refills it in minutes.
        """
        with self._train_lock:
            return {
                'model_state': {key: value.detach().clone()
                                for key, value in self._model.state_dict().items()},
                'average_state': self._average_state(),
                'optimizer_state': copy.deepcopy(self._optimizer.state_dict()),
                'counters': self._counters(),
                'params': asdict(self.settings),
                'config': asdict(self.config),
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """
        Restore weights, optimiser and counters from :meth:`state_dict` or a checkpoint.

        The network sizes must match this learner's config. The stored settings are
        provenance only: the settings this learner was built with stay in force. The
        prequential window is cleared, and the restored weights are published at once.
        """
        stored = state.get('config')
        if stored is not None and _config_dict(stored) != _config_dict(self.config):
            raise ValueError(f'checkpoint config {_config_dict(stored)} does not match '
                             f'{_config_dict(self.config)}')
        with self._train_lock:
            self._model.load_state_dict(state['model_state'])
            self._average = self._fresh_average()
            if self._average is not None and state.get('average_state') is not None:
                self._average.module.load_state_dict(state['average_state'])
                # Counted as averaging already under way: the next step blends in.
                self._average.n_averaged.fill_(max(1, int(
                    (state.get('counters') or {}).get('updates', 1))))
            if state.get('optimizer_state') is not None:
                self._optimizer.load_state_dict(state['optimizer_state'])
            counters = state.get('counters') or {}
            self.updates = int(counters.get('updates', 0))
            self.resets = int(counters.get('resets', 0))
            with self._window_lock:
                self.labeled_frames = int(counters.get('labeled_frames', 0))
            self._losses.clear()
            self._publish()
        self._clear_window()

    def save(self, path: str | Path) -> None:
        """
        Write a checkpoint atomically (see :func:`~.checkpoint.save_checkpoint`).

        Holds the training lock while writing, so model and optimiser are from the same
        step; prediction is not blocked.
        """
        with self._train_lock:
            save_checkpoint(path, self._model, optimizer=self._optimizer,
                            counters=self._counters(), params=asdict(self.settings),
                            config=self.config, average_state=self._average_state())

    def _average_state(self) -> dict[str, torch.Tensor] | None:
        """Return a copy of the moving average's weights (None when averaging is off)."""
        if self._average is None:
            return None
        return {key: value.detach().clone()
                for key, value in self._average.module.state_dict().items()}

    def load(self, path: str | Path) -> None:
        """Restore from a checkpoint file, loaded with ``weights_only=True``."""
        self.load_state_dict(load_checkpoint(path, device=str(self.device)))

    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        settings: LearnerSettings | None = None) -> OnlineLearner:
        """Return a learner built with a checkpoint's config and restored from it."""
        checkpoint = load_checkpoint(path, device='cpu')
        stored = checkpoint.get('config')
        if isinstance(stored, ModelConfig):
            config = stored
        else:
            config = ModelConfig(**_config_dict(stored)) if stored else ModelConfig()
        learner = cls(config, settings)
        learner.load_state_dict(checkpoint)
        return learner
