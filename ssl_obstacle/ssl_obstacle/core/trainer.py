"""
The online trainer: score each labeled frame, keep it, train on replay, publish weights.

One :class:`OnlineTrainer` is owned by one thread (the trainer node's worker, or a test's,
or an offline script's); it has no locks because nothing else touches it. Predictions for
camera frames are made elsewhere, by whoever received the published weights (the torch-free
predictor node), so prediction never shares an interpreter with training.

What it does, and why:

* **Prequential scoring.** Every labeled frame is first predicted with the weights last
  published (those the robots predict with at that moment) and recorded in a window per
  robot and a pooled one, *then* stored: the running AUC is over frames the model had not
  trained on, an honest figure without a held-out set.
* **Replay.** Frames go to a bounded :class:`~.replay.ReplayBuffer` that keeps rare
  obstacle frames from eviction and trains every frame about equally often. With
  ``label_completion`` (e.g. implied blocking) the stored targets are completed; scoring
  always uses the observed labels.
* **Averaged weights.** What is published is an exponential moving average of the trained
  weights: one step's weights jitter with its batch, their average does not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from .calibration import fit_platt, fit_temperature, PlattScaling, TEMPERATURE_SHRINK
from .checkpoint import load_checkpoint, save_checkpoint
from .confidence import cell_confidence, checked_confidence
from .model import augment, Augmentation, DEFAULT_AUGMENTATION, masked_bce_loss, ModelConfig, \
    ObstacleNet, predict_probabilities, preprocess
from .prequential import PrequentialWindow
from .replay_buffer import ReplayBuffer

_LOG = logging.getLogger(__name__)

#: Losses averaged into :attr:`TrainerStatus.recent_loss`.
RECENT_LOSS_STEPS = 50
#: What ``TrainerSettings.calibration`` may be.
CALIBRATIONS = ('none', 'temperature', 'distance', 'cell')


@dataclass(frozen=True)
class TrainerSettings:
    """
    How the trainer learns and how much it remembers.

    ``min_buffer`` frames are collected before the first step, so the first batches are not
    a handful of frames repeated.
    """

    learning_rate: float = 2e-3
    batch_size: int = 64
    buffer_size: int = 20000
    min_buffer: int = 64
    device: str = 'cpu'
    seed: int = 0
    augment: bool = True
    #: How :func:`~.model.augment` perturbs each batch (when ``augment``).
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    auc_window: int = 2000
    #: Train in the channels-last memory layout: the convolutions of this small network run
    #: about twice as fast on a CPU in it.
    channels_last: bool = True
    #: Batches hold at least this share of frames with an obstacle cell (0: sample the
    #: buffer as it is, as offline training does; docs/architecture.md has the comparison).
    positive_sample_fraction: float = 0.0
    #: Publish a moving average of the weights, ``avg ← d·avg + (1−d)·w`` after every step,
    #: with ``d = min(average_decay, (1 + n) / (10 + n))`` at step ``n`` so that it follows
    #: quickly at first (0: publish the latest weights).
    average_decay: float = 0.99
    #: Draw each batch element as the least-drawn of a few random frames, so early frames
    #: are not over-trained and late ones under-trained (see :mod:`~.replay`).
    even_exposure: bool = True
    #: Publish calibrated probabilities, fitted on the newest frames of the prequential
    #: window and folded into the published weights: 'temperature' (the default) a
    #: temperature per distance, half-way toward 1 (:func:`~.calibration.fit_temperature`);
    #: 'distance' or 'cell' Platt scaling (scale and bias) per distance or per cell; 'none'
    #: the network's own. A bias fitted on the training room's self-supervised labels made
    #: an unseen room's calibration worse; the shrunk temperature did not
    #: (docs/learning_quality.md, "Calibration").
    calibration: str = 'temperature'
    #: Newest scored frames the calibration is fitted on (older ones scored older models).
    calibration_frames: int = 1000
    #: Train on ``y (1 - ε) + ε / 2`` for a known label y (0: the labels as they are). On
    #: self-supervised labels of one room, targets short of 0 and 1 keep the model less
    #: overconfident in a room it never saw (docs/learning_quality.md).
    label_smoothing: float = 0.1


@dataclass(frozen=True)
class RobotScores:
    """The prequential scores of one robot's frames (or of all robots', pooled)."""

    labeled_frames: int
    window_frames: int
    auc_by_distance: np.ndarray
    auc: float


@dataclass(frozen=True)
class TrainerStatus:
    """A consistent picture of the trainer, for its status messages and logs."""

    updates: int
    labeled_frames: int
    replay_size: int
    recent_loss: float
    auc_by_distance: np.ndarray
    auc: float
    paused: bool
    model_version: int
    resets: int
    window_frames: int
    replay_positive_frames: int
    replay_evicted: int
    #: Scores per robot name, for the robots whose frames were scored.
    robots: dict[str, RobotScores] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedWeights:
    """Weights as the robots receive them: numpy arrays, named as the torch state_dict."""

    version: int
    updates: int
    state: dict[str, np.ndarray]
    #: (S, D) in [0, 1]: how far each cell can be trusted (see :mod:`~.confidence`).
    cell_confidence: np.ndarray | None = None


def fresh_model(config: ModelConfig, settings: TrainerSettings, resets: int,
                device: torch.device) -> tuple[ObstacleNet, torch.optim.Optimizer]:
    """
    Return newly initialised weights and a new Adam optimiser.

    Seeded from ``seed`` and the reset count inside a forked RNG, so runs are reproducible
    and the process's global torch RNG is left alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed * 1000 + resets)
        model = ObstacleNet(config).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    return model, optimizer


def resolve_device(device: str) -> torch.device:
    """Return the torch device, falling back to the CPU when CUDA is asked but absent."""
    if device.startswith('cuda') and not torch.cuda.is_available():
        _LOG.warning('device %r requested but CUDA is not available: using the CPU', device)
        return torch.device('cpu')
    return torch.device(device)


def check_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """
    Return ``labels`` as float32 of ``shape`` if NaN (unknown) or in [0, 1]; else raise.

    A target outside [0, 1] makes the cross-entropy unbounded below: the model would learn
    to push its logits to infinity and the loss would go negative.
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.shape != shape:
        raise ValueError(f'labels must be {shape}, got {labels.shape}')
    known = labels[~np.isnan(labels)]
    if known.size and not ((known >= 0.0) & (known <= 1.0)).all():
        raise ValueError(f'labels must be NaN (unknown) or in [0, 1], got values from '
                         f'{float(known.min()):g} to {float(known.max()):g}')
    return labels


class OnlineTrainer:
    """Learn obstacle perception from a stream of labeled frames of one robot or several."""

    def __init__(self, config: ModelConfig | None = None,
                 settings: TrainerSettings | None = None,
                 label_completion: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Build fresh weights, an optimiser, an empty buffer and the first published copy."""
        self.config = config if config is not None else ModelConfig()
        self.settings = settings if settings is not None else TrainerSettings()
        if self.settings.batch_size < 1 or self.settings.auc_window < 1:
            raise ValueError('batch_size and auc_window must be at least 1')
        if self.settings.calibration not in CALIBRATIONS:
            raise ValueError(f'calibration must be one of {", ".join(CALIBRATIONS)}, got '
                             f'{self.settings.calibration!r}')
        if not 0.0 <= self.settings.label_smoothing < 1.0:
            raise ValueError(f'label_smoothing must be in [0, 1), got '
                             f'{self.settings.label_smoothing}')
        self.device = resolve_device(self.settings.device)
        self.label_completion = label_completion
        self.buffer = ReplayBuffer(
            self.settings.buffer_size, (self.config.image_height, self.config.image_width, 3),
            self.config.num_sensors, self.config.num_distances, seed=self.settings.seed,
            positive_sample_fraction=self.settings.positive_sample_fraction,
            even_exposure=self.settings.even_exposure)
        self._rng = np.random.default_rng(self.settings.seed)
        self.updates = 0
        self.labeled_frames = 0
        self.resets = 0
        self.version = 0
        self.paused = False
        self._losses: deque[float] = deque(maxlen=RECENT_LOSS_STEPS)
        self._pooled = self._new_window()
        self._windows: dict[str, PrequentialWindow] = {}
        self._labeled_by_robot: dict[str, int] = {}
        self._model, self._optimizer = fresh_model(self.config, self.settings, self.resets,
                                                   self.device)
        self._average = self._fresh_average()
        self._scoring_model = self._frozen_copy()
        self.calibration = PlattScaling.identity(self.config.num_sensors,
                                                 self.config.num_distances)
        #: Confidence per cell of the published weights; None until the first publish.
        self.cell_confidence: np.ndarray | None = None

    # -- frames in ------------------------------------------------------------------------

    def score_and_store(self, images: np.ndarray, labels: np.ndarray, stamps: Sequence[int],
                        robot: str | Sequence[str] = '') -> np.ndarray:
        """
        Score labeled frames with the published weights, then keep them for training.

        ``images`` (n, H, W, 3) uint8, ``labels`` (n, S, D), one stamp and robot name per
        frame (or one name for all). The order is the point: each frame is predicted and
        recorded in its robot's window and the pooled one before it enters the buffer.
        Frames without a known cell are scored (they change nothing) but not stored: they
        carry no gradient. Returns the predictions (n, S, D).
        """
        images = np.asarray(images)
        shape = (self.config.num_sensors, self.config.num_distances)
        if len(labels) != len(images):
            raise ValueError(f'{len(images)} images but {len(labels)} label grids')
        labels = np.stack([check_labels(grid, shape) for grid in np.asarray(labels)]) \
            if len(images) else np.empty((0, *shape), np.float32)
        robots = [robot] * len(images) if isinstance(robot, str) else list(robot)
        if len(robots) != len(images) or len(stamps) != len(images):
            raise ValueError('one stamp and one robot name per frame')
        if not len(images):
            return np.empty((0, *shape), np.float32)
        probabilities = self.predict(images)
        self._pooled.add(probabilities, labels)
        for name in dict.fromkeys(robots):
            rows = [i for i, r in enumerate(robots) if r == name]
            window = self._windows.get(name)
            if window is None:
                window = self._windows[name] = self._new_window()
            window.add(probabilities[rows], labels[rows])
            self._labeled_by_robot[name] = self._labeled_by_robot.get(name, 0) + len(rows)
        self.labeled_frames += len(images)
        for image, grid, stamp in zip(images, labels, stamps):
            if np.isnan(grid).all():
                continue
            targets = grid if self.label_completion is None else \
                np.asarray(self.label_completion(grid), dtype=np.float32)
            self.buffer.add(image, targets, int(stamp))
        return probabilities

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Return P(obstacle) with the published weights: (S, D) for one frame, else (n, S, D)."""
        images = np.asarray(images)
        shape = (self.config.image_height, self.config.image_width, 3)
        if images.ndim not in (3, 4) or images.shape[-3:] != shape or images.dtype != np.uint8:
            raise ValueError(f'expected uint8 images (N, {shape[0]}, {shape[1]}, 3) or one '
                             f'{shape}, got {images.dtype} {images.shape}')
        batch = images[None] if images.ndim == 3 else images
        if self.settings.channels_last:
            probabilities = self._predict_channels_last(batch)
        else:
            probabilities = predict_probabilities(self._scoring_model, batch, device=self.device)
        return probabilities[0] if images.ndim == 3 else probabilities

    def _predict_channels_last(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Predict in the channels-last layout: a batch scores about 3 times faster in it."""
        config = self.config
        out = np.empty((len(images), config.num_sensors, config.num_distances), np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                inputs = preprocess(images[start:start + batch_size]).to(self.device)
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                logits = self._scoring_model(inputs)
                out[start:start + len(inputs)] = torch.sigmoid(logits).cpu().numpy()
        return out

    # -- training -------------------------------------------------------------------------

    @property
    def can_train(self) -> bool:
        """Return whether a step may be taken now (not paused, enough frames stored)."""
        return not self.paused and len(self.buffer) >= max(1, self.settings.min_buffer)

    def train_step(self) -> float:
        """Take one optimiser step on a replay batch and return its loss."""
        settings = self.settings
        images, labels, _ = self.buffer.sample(settings.batch_size, self._rng)
        if settings.augment:
            images, labels = augment(images, labels, self._rng, settings.augmentation)
        if settings.label_smoothing > 0.0:
            labels = labels * (1.0 - settings.label_smoothing) + 0.5 * settings.label_smoothing
        inputs = preprocess(images).to(self.device)
        if settings.channels_last:
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
        return value

    def train_steps(self, count: int) -> int:
        """Take up to ``count`` steps now (none while short of frames); return how many."""
        done = 0
        while done < count and len(self.buffer) >= max(1, self.settings.min_buffer):
            self.train_step()
            done += 1
        return done

    # -- weights out ----------------------------------------------------------------------

    def publish(self) -> PublishedWeights:
        """
        Freeze the current (averaged) weights as the published ones and return them.

        From here on frames are scored with these weights, as the robots predict with them.
        The returned weights have the calibration refitted now folded in (the frames are
        scored without it: the calibration is fitted on those scores).
        """
        self._scoring_model = self._frozen_copy()
        self.version += 1
        probabilities, labels = self._recent_scores()
        self.calibration = self._fit_calibration(probabilities, labels)
        self.cell_confidence = cell_confidence(probabilities, labels)
        state = {name: np.array(tensor.detach().cpu().numpy(), dtype=np.float32, order='C')
                 for name, tensor in self._scoring_model.state_dict().items()}
        if not self.calibration.is_identity:
            state = self.calibration.fold_into(state)
        return PublishedWeights(self.version, self.updates, state, self.cell_confidence)

    def _recent_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the newest scored frames' predictions and labels (older: older models)."""
        probabilities, labels = self._pooled.arrays()
        recent = slice(-max(1, self.settings.calibration_frames), None)
        return probabilities[recent], labels[recent]

    def _fit_calibration(self, probabilities: np.ndarray, labels: np.ndarray) -> PlattScaling:
        """Fit the calibration on scored frames (identity when off or too few)."""
        if self.settings.calibration == 'none':
            return PlattScaling.identity(self.config.num_sensors, self.config.num_distances)
        if self.settings.calibration == 'temperature':
            return fit_temperature(probabilities, labels, per='distance',
                                   shrink=TEMPERATURE_SHRINK)
        return fit_platt(probabilities, labels, per=self.settings.calibration)

    def _predicting_model(self) -> ObstacleNet:
        return self._average.module if self._average is not None else self._model

    def _frozen_copy(self) -> ObstacleNet:
        model = ObstacleNet(self.config).to(self.device)
        model.load_state_dict(self._predicting_model().state_dict())
        if self.settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    def _fresh_average(self) -> AveragedModel | None:
        decay = float(self.settings.average_decay)
        if not 0.0 < decay < 1.0:
            return None

        def ema(average: torch.Tensor, current: torch.Tensor,
                count: torch.Tensor) -> torch.Tensor:
            step_decay = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
            return average + (current - average) * (1.0 - step_decay)

        return AveragedModel(self._model, avg_fn=ema, use_buffers=True)

    def _new_window(self) -> PrequentialWindow:
        return PrequentialWindow(self.settings.auc_window, self.config.num_sensors,
                                 self.config.num_distances)

    # -- status ---------------------------------------------------------------------------

    def status(self) -> TrainerStatus:
        """Return counters, the recent loss and the prequential AUCs (tens of ms: sorting)."""
        by_distance, overall = self._pooled.aucs()
        robots = {}
        for name, window in self._windows.items():
            robot_by_distance, robot_auc = window.aucs()
            robots[name] = RobotScores(self._labeled_by_robot.get(name, 0), window.count,
                                       robot_by_distance, robot_auc)
        counters = self.buffer.counters()
        losses = list(self._losses)
        return TrainerStatus(
            updates=self.updates, labeled_frames=self.labeled_frames,
            replay_size=int(counters.get('held', 0)),
            recent_loss=float(np.mean(losses)) if losses else math.nan,
            auc_by_distance=by_distance, auc=overall, paused=self.paused,
            model_version=self.version, resets=self.resets, window_frames=self._pooled.count,
            replay_positive_frames=int(counters.get('positive_frames', 0)),
            replay_evicted=int(counters.get('evicted', 0)), robots=robots)

    # -- reset and checkpoints ------------------------------------------------------------

    def reset(self) -> None:
        """
        Start again from fresh weights and a new optimiser, scored from now on.

        The replay buffer and the cumulative counters are kept: the stored frames are still
        correctly labeled, so relearning from them is the quickest recovery. The windows are
        cleared, as they scored the old model.
        """
        self.resets += 1
        self._model, self._optimizer = fresh_model(self.config, self.settings, self.resets,
                                                   self.device)
        self._average = self._fresh_average()
        self._losses.clear()
        self._clear_windows()
        self._scoring_model = self._frozen_copy()

    def save(self, path: str | Path, grid: Mapping[str, Any] | None = None) -> None:
        """
        Write a checkpoint atomically: weights, their average, optimiser, counters.

        ``grid`` (``sensor_names``, ``distances``) is stored with the settings, so that a
        predictor loading the file can check it predicts the cells it is asked for. The
        replay buffer is not included (hundreds of megabytes; the robot refills it in
        minutes).
        """
        save_checkpoint(path, self._model, optimizer=self._optimizer,
                        counters=self._counters(),
                        params={**asdict(self.settings), **dict(grid or {})},
                        config=self.config, average_state=self._average_state(),
                        calibration=self.calibration.as_dict(),
                        cell_confidence=self.cell_confidence)

    def load(self, path: str | Path) -> None:
        """
        Restore weights, their average, optimiser and counters from a checkpoint.

        Loaded with ``weights_only=True``. The network sizes must match; the stored settings
        are provenance only. The windows are cleared.
        """
        self.load_state(load_checkpoint(path, device=str(self.device)))

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore from :func:`~.checkpoint.load_checkpoint`'s dict (see :meth:`load`)."""
        stored = state.get('config')
        if stored is not None and _config_dict(stored) != _config_dict(self.config):
            raise ValueError(f'checkpoint config {_config_dict(stored)} does not match '
                             f'{_config_dict(self.config)}')
        self._model.load_state_dict(state['model_state'])
        self._average = self._fresh_average()
        counters = state.get('counters') or {}
        if self._average is not None and state.get('average_state') is not None:
            self._average.module.load_state_dict(state['average_state'])
            # Counted as averaging already under way: the next step blends in.
            self._average.n_averaged.fill_(max(1, int(counters.get('updates', 1))))
        if state.get('optimizer_state') is not None:
            self._optimizer.load_state_dict(state['optimizer_state'])
        if state.get('calibration') is not None:
            self.calibration = PlattScaling.from_dict(state['calibration'])
        self.cell_confidence = checked_confidence(
            state.get('cell_confidence'), (self.config.num_sensors, self.config.num_distances))
        self.updates = int(counters.get('updates', 0))
        self.resets = int(counters.get('resets', 0))
        self.labeled_frames = int(counters.get('labeled_frames', 0))
        self._losses.clear()
        self._clear_windows()
        self._scoring_model = self._frozen_copy()

    def _counters(self) -> dict[str, int]:
        return {'updates': self.updates, 'labeled_frames': self.labeled_frames,
                'resets': self.resets}

    def _average_state(self) -> dict[str, torch.Tensor] | None:
        if self._average is None:
            return None
        return {key: value.detach().clone()
                for key, value in self._average.module.state_dict().items()}

    def _clear_windows(self) -> None:
        self._pooled.clear()
        for window in self._windows.values():
            window.clear()


def _config_dict(config: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Return a ModelConfig (or its dict form from a checkpoint) as a comparable dict."""
    values = dict(config) if isinstance(config, Mapping) else asdict(config)
    if 'filters' in values:
        values['filters'] = tuple(int(f) for f in values['filters'])
    return values
