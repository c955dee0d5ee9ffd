"""
The online learner with training in a process of its own: prediction shares no GIL with it.

In one process, every Python step of the training thread (sampling, augmentation, the
optimiser's bookkeeping, the calls between torch kernels) takes the interpreter lock the
predicting thread needs, and a predictor that asks for it waits up to the switch interval
(5 ms) each time; on a busy two-core computer the OS may also park the trainer while it
holds the lock. :class:`ProcessOnlineLearner` keeps the replay buffer, the model and the
optimiser in a child process (a fresh interpreter started with ``subprocess``, talking over
a socket pair: no forked locks, and unlike multiprocessing's ``spawn`` it never re-runs the
caller's main script), lowered by ``train_nice`` so that the OS runs prediction first
whenever both want a core. This process keeps what must be fast or must come first:
prediction from a published snapshot and the prequential window (a frame is scored here
before it is sent to the trainer).

After every step the trainer sends the new weights (about 1 MB) through the pipe as one
message, so a set of weights is whole by construction: there is no shared buffer the trainer
could be caught writing. A receiver thread of this process takes the newest announced set
(when several are waiting) and publishes it as a :class:`~.online.ModelSnapshot` by rebinding
one reference, as the in-process learner does; the predicting thread never copies weights.
The receiver does not build a model per update: it recycles :data:`SNAPSHOT_POOL` models
whose parameters are views of one flat buffer each, so publishing is one ``memcpy``. (The
deep copy it replaced held the interpreter lock for 2.7 ms, 10 ms at p99, about ten times a
second, and every prediction that needed the lock meanwhile waited.) Before a model is
overwritten its snapshot's lease is revoked, and a prediction that was reading it is redone
(:class:`~.online.SnapshotLease`); with three models and a prediction taking ~2 ms against
~100 ms between updates, that is rare.

Commands (store a frame, pause, save, load, reset, …) go to the child through a pipe and are
handled between training steps; requests that need an answer (save, load, reset, state,
train_steps) wait for it. Without a parent the child exits (its end of the pipe closes), and
it ignores Ctrl-C (the parent stops it in order, after the last checkpoint); :meth:`close`,
a garbage-collected learner and the interpreter's exit all stop it, so it never outlives
the node.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, replace
import io
import itertools
import json
import logging
from multiprocessing.connection import Connection
import os
from pathlib import Path
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Mapping
import weakref

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .model import ModelConfig, ObstacleNet
from .online import (_config_dict, fresh_model, LearnerSettings, LearnerStatusData,
                     OnlineLearner, PrequentialLearner, SnapshotLease, window_aucs)

_LOG = logging.getLogger(__name__)

#: How the child starts: the parent's import path, then the trainer on the inherited socket.
_BOOT = ('import json, sys; sys.path[:0] = json.loads(sys.argv[2]); '
         'from ssl_obstacle.core.online_process import trainer_main; '
         'trainer_main(int(sys.argv[1]))')
#: Replay counters are pushed at most this often while no training step reports them.
_COUNTERS_PERIOD = 0.1
#: Seconds a request may wait for the trainer (a load or save of a large model included).
REQUEST_TIMEOUT = 120.0
#: Seconds the status waits for the trainer's AUCs before computing them here instead.
WINDOW_AUC_TIMEOUT = 10.0
#: Models the receiver recycles for snapshots: the current one, the one a prediction may
#: still be reading, and the one being written.
SNAPSHOT_POOL = 3


class TrainerError(RuntimeError):
    """The training process failed a request, or is gone."""


#: Each tensor of a flat state starts at a multiple of this many floats (64 bytes): the
#: convolution kernels choose their code path by alignment, and a misaligned weight gave
#: results 1e-7 away from the trainer's own model.
_ALIGN = 16


def _layout(state: Mapping[str, torch.Tensor]) -> tuple[list[tuple[str, int]], int]:
    """Return each tensor's offset in a flat state (state_dict order) and the total length."""
    offsets = []
    offset = 0
    for key, value in state.items():
        offsets.append((key, offset))
        offset += -(-value.numel() // _ALIGN) * _ALIGN
    return offsets, offset


def _flat_state(model: torch.nn.Module) -> torch.Tensor:
    """Return the model's state (parameters and buffers, state_dict order) as one vector."""
    state = model.state_dict()
    offsets, total = _layout(state)
    flat = torch.zeros(total, dtype=torch.float32)
    for key, offset in offsets:
        value = state[key]
        flat[offset:offset + value.numel()] = value.detach().reshape(-1).float().cpu()
    return flat


def _flat_model(template: ObstacleNet) -> tuple[ObstacleNet, np.ndarray]:
    """
    Return a copy of ``template`` whose state lives in one flat float32 array, and the array.

    Each parameter and buffer becomes a view of the array at the offset :func:`_flat_state`
    puts it, so writing a received vector into the array sets every weight of the model
    with a single copy.
    """
    model = copy.deepcopy(template)
    state = model.state_dict()
    offsets, total = _layout(state)
    flat = torch.zeros(total, dtype=torch.float32)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for key, offset in offsets:
            value = state[key]
            view = flat[offset:offset + value.numel()].view(value.shape)
            view.copy_(value)
            if key in parameters:
                parameters[key].data = view
            else:
                owner, _, name = key.rpartition('.')
                model.get_submodule(owner).register_buffer(name, view)
    return model.eval(), flat.numpy()


def _serialise(value: Any) -> bytes:
    """Return ``value`` (tensors and plain types) as bytes ``torch.load`` reads safely."""
    stream = io.BytesIO()
    torch.save(value, stream)
    return stream.getvalue()


def _deserialise(data: bytes) -> Any:
    """Read what :func:`_serialise` wrote, with ``weights_only=True``."""
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


class _Inbox:
    """
    The child's commands, read off the pipe by a thread of their own as soon as they arrive.

    Read only between training steps, the pipe held ~13 frames (its ~200 kB buffer) and the
    parent's sends blocked for the rest of each ~90 ms step: it could store only ~170
    frames a second however fast they came, and a burst (a filled replay buffer, a fast
    replay) overflowed its queue. The reader needs the interpreter lock only to unpickle,
    and training releases it in every torch kernel.
    """

    def __init__(self, conn: Connection) -> None:
        self._messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(conn,), name='trainer-inbox',
                         daemon=True).start()

    def _read(self, conn: Connection) -> None:
        try:
            while True:
                self._messages.put(conn.recv())
        except (EOFError, OSError, TypeError):
            self._messages.put(('stop',))  # the parent is gone: end as if asked to

    def get(self, timeout: float) -> tuple[Any, ...] | None:
        """Return the next command, waiting up to ``timeout`` seconds; None if none came."""
        try:
            return self._messages.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


class _Trainer:
    """The child's side: an in-process learner driven by the pipe, sending weights back."""

    def __init__(self, conn: Connection, config: ModelConfig,
                 settings: LearnerSettings) -> None:
        self.conn = conn
        self.inbox = _Inbox(conn)
        self.settings = settings
        # publish_every: the child publishes through the pipe, not through snapshots.
        self.learner = OnlineLearner(config, replace(settings, publish_every=2 ** 62))
        self.active = False
        self.paused = False
        self.dirty = False
        self.last_counters = 0.0

    def publish(self, loss: float | None) -> None:
        """Send the weights of the step just taken, whole, in one message."""
        flat = _flat_state(self.learner.predicting_model()).numpy().tobytes()
        self.send_counters('published', loss, flat)

    def send_counters(self, kind: str = 'counters', loss: float | None = None,
                      weights: bytes | None = None) -> None:
        """Tell the parent the step count, the replay counters, the last loss (weights)."""
        self.conn.send((kind, self.learner.updates, self.learner.resets, loss,
                        self.learner.buffer.counters(), weights))
        self.dirty = False
        self.last_counters = time.monotonic()

    def handle(self, message: tuple[Any, ...]) -> bool:
        """Carry out one command; return False on 'stop'."""
        kind = message[0]
        if kind == 'add':
            _, image, labels, stamp = message
            self.learner.buffer.add(image, labels, stamp)
            self.dirty = True
        elif kind == 'active':
            self.active = bool(message[1])
        elif kind == 'pause':
            self.paused = bool(message[1])
        elif kind == 'stop':
            return False
        else:
            request, args = message[1], message[2:]
            try:
                value = getattr(self, f'do_{kind}')(*args)
                self.conn.send(('reply', request, True, value))
            except Exception as error:  # noqa: BLE001 - the parent raises it
                self.conn.send(('reply', request, False, f'{type(error).__name__}: {error}'))
        return True

    def do_ping(self) -> bool:
        """Answer: every command sent before this one has been handled."""
        return True

    def do_train(self, steps: int) -> int:
        """Take up to ``steps`` steps now (``train_steps``)."""
        done = 0
        for _ in range(int(steps)):
            if not self.learner._can_train():
                break
            loss = self.learner._train_once()
            done += 1
            self.publish(loss)
        return done

    def do_reset(self) -> dict[str, int]:
        """Fresh weights and optimiser; the buffer stays."""
        self.learner.reset_model()
        self.publish(None)
        return self.learner._counters()

    def do_save(self, path: str, labeled_frames: int) -> None:
        """Write a checkpoint atomically, with the parent's labeled-frame count."""
        self.learner.labeled_frames = int(labeled_frames)
        self.learner.save(path)

    def do_load(self, path: str) -> dict[str, int]:
        """Restore from a checkpoint file and publish its weights."""
        self.learner.load(path)
        self.publish(None)
        return self.learner._counters()

    def do_load_state(self, data: bytes) -> dict[str, int]:
        """Restore from a serialised state_dict and publish its weights."""
        self.learner.load_state_dict(_deserialise(data))
        self.publish(None)
        return self.learner._counters()

    def do_window_aucs(self, probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """Return the scored window's AUCs (the status's), computed here for the parent."""
        return window_aucs(probs, labels)

    def do_state(self, labeled_frames: int) -> bytes:
        """Return the serialised state_dict."""
        self.learner.labeled_frames = int(labeled_frames)
        return _serialise(self.learner.state_dict())

    def run(self) -> None:
        """Handle commands; between them, train at the capped rate while active."""
        cap = float(self.settings.max_updates_per_second)
        period = 1.0 / cap if cap > 0 else 0.0
        next_step = time.monotonic()
        while True:
            training = (self.active and not self.paused and self.learner._can_train())
            wait = 0.05
            if training:
                wait = max(0.0, next_step - time.monotonic()) if period else 0.0
            message = self.inbox.get(wait)
            if message is not None:
                while message is not None:  # every command that is waiting, before a step
                    if not self.handle(message):
                        return
                    message = self.inbox.get(0.0)
                if self.dirty and time.monotonic() - self.last_counters > _COUNTERS_PERIOD:
                    self.send_counters()
                continue
            if self.dirty:
                self.send_counters()
            if not training:
                next_step = time.monotonic()
                continue
            if period:
                # Never bank more than one period of slack (no bursts after a stall).
                next_step = max(next_step + period, time.monotonic() - period)
            self.publish(self.learner._train_once())


def trainer_main(fd: int) -> None:
    """Entry point of the training process: serve the parent on socket ``fd``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, after its checkpoint
    conn = Connection(fd)
    try:
        _, config, settings = conn.recv()
        if settings.train_nice:
            with contextlib.suppress(OSError):  # some sandboxes forbid it; train anyway
                os.nice(int(settings.train_nice))
        torch.set_num_threads(max(1, int(settings.train_threads)))
        with contextlib.suppress(RuntimeError):  # already set
            torch.set_num_interop_threads(1)
        _Trainer(conn, config, settings).run()
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the parent is gone or closed the pipe: nothing left to do
    except Exception as error:  # noqa: BLE001 - reported to the parent, then exit
        _LOG.exception('the training process failed')
        with contextlib.suppress(OSError, ValueError):
            conn.send(('error', f'{type(error).__name__}: {error}'))
    finally:
        conn.close()


def _receive(reference: weakref.ReferenceType, conn: Connection) -> None:
    """Read the trainer's messages until the pipe closes (the receiver thread)."""
    while True:
        try:
            batch = [conn.recv()]
            while conn.poll(0):  # several snapshots waiting: only the newest is built
                batch.append(conn.recv())
        except (EOFError, OSError, TypeError):
            break
        learner = reference()
        if learner is None:
            break
        learner._on_messages(batch)
        del learner, batch
    learner = reference()
    if learner is not None:
        learner._on_trainer_gone()


def _shutdown(process: subprocess.Popen, conn: Connection, send_lock: threading.Lock) -> None:
    """Stop the training process: ask, then terminate, then kill (finaliser and close)."""
    try:
        with send_lock:
            conn.send(('stop',))
    except (OSError, ValueError):
        pass
    for stop in (None, process.terminate, process.kill):
        if stop is not None:
            stop()
        try:
            process.wait(5.0 if stop is None else 2.0)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(OSError):
        conn.close()


class ReplayMirror:
    """What this process knows of the trainer's replay buffer: its last reported counters."""

    def __init__(self, capacity: int) -> None:
        """Start empty."""
        self.capacity = int(capacity)
        self._counters: dict[str, int] = {'added': 0, 'evicted': 0, 'held': 0,
                                          'positive_frames': 0}

    def __len__(self) -> int:
        """Return the number of frames held (as last reported)."""
        return int(self._counters['held'])

    @property
    def positive_frames(self) -> int:
        """Return the number of positive-bearing frames held (as last reported)."""
        return int(self._counters['positive_frames'])

    def counters(self) -> dict[str, int]:
        """Return a copy of what the trainer last reported, with the replay buffer's keys."""
        return dict(self._counters)


class ProcessOnlineLearner(PrequentialLearner):
    """
    :class:`~.online.OnlineLearner`'s interface, with training in a child process.

    Frames are scored here (prequential) and sent to the child, which stores them in its
    replay buffer and trains; ``updates``, the replay counters and the losses mirror what
    the child last reported. Call :meth:`close` when done (the node does); a learner that
    is garbage-collected or a process that exits stops its child too.
    """

    def __init__(self, config: ModelConfig | None = None,
                 settings: LearnerSettings | None = None) -> None:
        """Start the training process; publish the same first weights it starts from."""
        super().__init__(config, settings)
        model, _ = fresh_model(self.config, self.settings, 0, torch.device('cpu'))
        model = model.to(memory_format=torch.contiguous_format).eval()
        self._pool = [_flat_model(model) for _ in range(SNAPSHOT_POOL)]
        self._pool_leases = [SnapshotLease() for _ in range(SNAPSHOT_POOL)]
        self._pool_next = 0
        #: The trainer's replay buffer as last reported (``len``, ``counters()``).
        self.buffer = ReplayMirror(self.settings.buffer_size)
        self._started = False
        self._gone = threading.Event()
        self._error: str | None = None
        self._requests = itertools.count()
        self._pending: dict[int, list[Any]] = {}
        self._send_lock = threading.Lock()
        self._publish_weights(0, self._pool[0][1].copy())  # the trainer starts from these
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, '-c', _BOOT, str(theirs.fileno()), json.dumps(sys.path)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._finalizer = weakref.finalize(self, _shutdown, self._process, self._conn,
                                           self._send_lock)
        self._send('init', self.config, self.settings)
        self._receiver = threading.Thread(target=_receive,
                                          args=(weakref.ref(self), self._conn),
                                          name='ssl-trainer-receiver', daemon=True)
        self._receiver.start()

    # -- talking to the trainer ----------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Return the training process's id."""
        return self._process.pid

    def _send(self, *message: Any) -> None:
        """Send a command; fails with :class:`TrainerError` when the trainer is gone."""
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError) as error:
            raise TrainerError(f'the training process is gone: {error}') from error

    def _request(self, kind: str, *args: Any, timeout: float = REQUEST_TIMEOUT) -> Any:
        """Send a command that answers; wait for the answer; raise the child's error."""
        request = next(self._requests)
        slot: list[Any] = [threading.Event(), None, None]
        self._pending[request] = slot
        try:
            if self._gone.is_set():
                raise TrainerError(f'the training process is gone ({self._error})')
            self._send(kind, request, *args)
            deadline = time.monotonic() + timeout
            while not slot[0].wait(0.1):
                if self._gone.is_set():
                    raise TrainerError(f'the training process is gone ({self._error})')
                if time.monotonic() > deadline:
                    raise TrainerError(f'the training process did not answer {kind!r} '
                                       f'within {timeout:g} s')
        finally:
            self._pending.pop(request, None)
        if not slot[1]:
            raise TrainerError(f'{kind} failed in the training process: {slot[2]}')
        return slot[2]

    def _on_messages(self, batch: list[tuple[Any, ...]]) -> None:
        """
        Handle the trainer's messages in order (receiver thread).

        Of several weight messages in a row only the newest is built; a reply first
        publishes the weights that came before it, so a reset or load is visible to
        :meth:`predict` once it returns.
        """
        weights = None
        for message in batch:
            kind = message[0]
            if kind in ('published', 'counters'):
                _, updates, resets, loss, counters, flat = message
                self.buffer._counters = dict(counters)
                self.resets = int(resets)
                if loss is not None:
                    self._losses.append(float(loss))
                if flat is not None:
                    weights = (int(updates), flat)
                continue
            if weights is not None:
                self._publish_weights(*weights)
                weights = None
            if kind == 'reply':
                _, request, ok, value = message
                slot = self._pending.get(request)
                if slot is not None:
                    slot[1], slot[2] = ok, value
                    slot[0].set()
            elif kind == 'error':
                self._error = str(message[1])
                _LOG.error('online training stopped by an error: %s', self._error)
        if weights is not None:
            self._publish_weights(*weights)

    def _on_trainer_gone(self) -> None:
        """Record that the trainer ended (receiver thread, pipe closed)."""
        if self._error is None and self._finalizer.alive:  # not closed by us
            self._error = 'the training process ended unexpectedly'
        self._gone.set()
        for slot in list(self._pending.values()):
            slot[0].set()

    def _publish_weights(self, updates: int, flat: bytes | np.ndarray) -> None:
        """Publish weights received from the trainer: write a recycled model, then swap."""
        values = np.frombuffer(flat, dtype=np.float32)
        slot = self._pool_next
        model, state = self._pool[slot]
        if values.shape != state.shape:
            raise ValueError(f'received {values.size} weights, the model has {state.size}')
        self._pool_next = (slot + 1) % len(self._pool)
        self._pool_leases[slot].revoke()  # before the first byte: readers of it will redo
        state[:] = values
        self.updates = updates
        self._set_snapshot(model, updates)
        self._pool_leases[slot] = self._snapshot.lease

    # -- the learner's interface ---------------------------------------------------------------

    def _store(self, image: np.ndarray, labels: np.ndarray, stamp: int) -> None:
        """Send a scored frame to the trainer's replay buffer."""
        self._send('add', np.ascontiguousarray(image, dtype=np.uint8), labels, stamp)

    def train_steps(self, n: int) -> int:
        """Take up to ``n`` steps now (in the training process); return how many were taken."""
        return int(self._request('train', int(n)))

    def start(self) -> None:
        """Let the training process train in the background (it exists from construction)."""
        self._started = True
        self._send('active', True)

    def stop(self, timeout: float = 5.0) -> bool:
        """
        Stop background training after the current step; the process stays for save/load.

        Returns once the trainer has acknowledged (so no step starts afterwards).
        """
        if self._gone.is_set():
            return True
        self._started = False
        try:
            self._send('active', False)
            self._request('ping', timeout=timeout)
        except TrainerError:
            return self._process.poll() is not None
        return True

    def close(self, timeout: float = 5.0) -> None:
        """End the training process (after :meth:`stop` and a last :meth:`save`)."""
        self._started = False
        self._finalizer()
        self._receiver.join(timeout)
        self._gone.set()

    @property
    def running(self) -> bool:
        """Return whether background training is on and the process is alive."""
        return self._started and not self._gone.is_set() and self._process.poll() is None

    @property
    def error(self) -> str | None:
        """Return what ended the training process, if it failed."""
        return self._error

    def pause(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """
        Stop taking training steps (frames are still scored and stored).

        Returns once the trainer has acknowledged, between two steps: the weights of every
        step it took have arrived by then (the pipe keeps order), so ``updates`` stays as
        it is from then on. A trainer that is gone trains no more anyway (``status().error``
        says why), and one that does not answer within ``timeout`` pauses when it next
        reads the pipe: neither is an error of pausing.
        """
        self._paused.set()
        with contextlib.suppress(TrainerError):
            self._send('pause', True)
            self._request('ping', timeout=timeout)

    def resume(self) -> None:
        """Take training steps again."""
        self._paused.clear()
        self._send('pause', False)

    def _apply_counters(self, counters: Mapping[str, int]) -> None:
        """Take the counters of a reset or load; clear the window (a new model)."""
        self.updates = int(counters.get('updates', 0))
        self.resets = int(counters.get('resets', 0))
        self._losses.clear()
        self._clear_window()

    def reset_model(self) -> None:
        """Start again from fresh weights (published before this returns); keep the buffer."""
        self._apply_counters(self._request('reset'))

    def status(self) -> LearnerStatusData:
        """Return counters, the recent loss and the prequential AUCs."""
        return self._status(self.buffer.counters(), self.running, self._error)

    def _window_aucs(self, probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """
        Have the training process rank the window; here only if it cannot.

        Ranking takes tens of milliseconds of CPU once a second; in this process it took
        them from prediction (the camera frames that arrived meanwhile were 20-30 ms late,
        most of the p99 latency), while the trainer only takes its next step a little later.
        """
        try:
            by_distance, overall = self._request('window_aucs', probs, labels,
                                                 timeout=WINDOW_AUC_TIMEOUT)
        except TrainerError:
            return super()._window_aucs(probs, labels)
        return np.asarray(by_distance, dtype=np.float64), float(overall)

    def state_dict(self) -> dict[str, Any]:
        """Return model, optimiser, counters, settings and config (from the trainer)."""
        return _deserialise(self._request('state', self.labeled_frames))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore weights, optimiser and counters (see ``OnlineLearner.load_state_dict``)."""
        stored = state.get('config')
        if stored is not None and _config_dict(stored) != _config_dict(self.config):
            raise ValueError(f'checkpoint config {_config_dict(stored)} does not match '
                             f'{_config_dict(self.config)}')
        plain = dict(state)
        if isinstance(plain.get('config'), ModelConfig):
            plain['config'] = asdict(plain['config'])
        counters = self._request('load_state', _serialise(plain))
        with self._window_lock:
            self.labeled_frames = int(counters.get('labeled_frames', 0))
        self._apply_counters(counters)

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (in the trainer, which holds model and optimiser)."""
        self._request('save', str(path), self.labeled_frames)

    def load(self, path: str | Path) -> None:
        """Restore from a checkpoint file (checked here first, then read by the trainer)."""
        checkpoint = load_checkpoint(path, device='cpu')
        self.load_state_dict(checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        settings: LearnerSettings | None = None) -> ProcessOnlineLearner:
        """Return a learner built with a checkpoint's config and restored from it."""
        checkpoint = load_checkpoint(path, device='cpu')
        learner = cls(checkpoint['config'], settings)
        learner.load_state_dict(checkpoint)
        return learner
