"""
``ssl-obstacle demo``: watch a robot learn to see obstacles, with no robot and no ROS install.

The simulator, the explorer, the labeler and the predictor run as ROS nodes talking over
DDS (each with its own executor thread, in this process, on this run's own domain); the
trainer runs in a child process of its own, as ``ros2 launch`` and ``ssl-obstacle up`` run
it, so that training never holds the interpreter the other nodes need. Simulated time runs
as fast as the CPU allows. A status line shows simulated time, labeled frames,
training updates and the running (prequential) AUC. Before it starts, a run in an
unseen layout and seed is recorded with the simulator's exact labels on every cell; every
tenth of the run the current model is scored on it (the held-out learning curve), and at
the end the final model is, and the run folder gets the report,
plots, the final checkpoint and a log. Last, the learned model drives that held-out world
(:mod:`ssl_obstacle.commands.drive`), then the explorer does, from the same start: near-hits per
metre, speed and collisions side by side.

Two choices make the held-out figure mean something: the training world's colours,
textures and light are re-drawn every few simulated seconds (geometry kept), so that the
model learns obstacles rather than one room's look; and simulated time waits for the
learner (:class:`Pacer`), so that it gets the same training per simulated second on an
idle or a busy machine.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import pathlib
import sys
import time
from typing import Any, Callable

import numpy as np
import yaml

from ..core.calibration import expected_calibration_error
from ..core.explorer import Explorer
from ..core.metrics import auc_grid, auc_mean
from ..core.params import LabelParams
from ..io.conversions import resize_rgb
from ..sim.camera import CameraModel, Renderer
from ..sim.closed_loop import ClosedLoop
from ..sim.simulator import SimSettings, Simulator
from ..sim.world import make_world, WORLD_NAMES

LOG = logging.getLogger('ssl_obstacle.demo')

#: Simulated seconds between appearance re-draws of the training world in the demo. One
#: world seen under a single look teaches the model that world's colours: held-out AUC
#: peaked at 0.87 after 1-2 minutes, then fell to 0.6-0.7. Re-drawn every 5 s, 120 looks
#: in 10 minutes leave geometry as the only thing the labels consistently reward.
DEMO_APPEARANCE_PERIOD = 5.0
#: Training updates per simulated second the demo gives the learner (see :class:`Pacer`):
#: 3, i.e. 1,800 in 10 minutes, far below the 20/s the learner may take on a robot in real
#: time, and about what an idle 2-core machine manages at full simulation speed.
DEMO_UPDATES_PER_SECOND = 3.0
#: Layouts the robots of a fleet learn in, in this order after ``--world`` (never the
#: held-out one): each robot in a room of its own.
TRAINING_WORLDS = ('boxes', 'walls', 'random', 'pillars')


def heldout_frames(world_name: str, seed: int, seconds: float, every: int = 2,
                   size: tuple[int, int] = (80, 64)) -> tuple[np.ndarray, np.ndarray]:
    """
    Drive a world with the explorer (no ROS) and return frames with their exact labels.

    Every ``every``-th camera frame is kept, resized to the learner's input, with the
    ground-truth grid of the same stamp: the yardstick on which every cell is known.
    """
    world = make_world(world_name, seed, vary=True)
    settings = SimSettings(distances=LabelParams().distances)
    camera = CameraModel(width=settings.camera_width, height=settings.camera_height)
    sim = Simulator(world, settings, seed=seed, renderer=Renderer(world, camera))
    images: dict[int, np.ndarray] = {}
    frames, labels = [], []
    count = 0
    for event in ClosedLoop(sim, Explorer(seed=seed)).run(seconds):
        if event.kind == 'image' and event.image is not None:
            count += 1
            if count % every == 0:
                images[event.stamp] = resize_rgb(event.image, *size)
        elif event.kind == 'ground_truth_labels' and event.stamp in images:
            frames.append(images.pop(event.stamp))
            labels.append(event.labels.astype(np.float32))
    return np.stack(frames), np.stack(labels)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``demo``."""
    parser.add_argument('--minutes', type=float, default=10.0, help='simulated minutes')
    parser.add_argument('--out', help='run folder (default runs/demo-<time>)')
    parser.add_argument('--world', default='boxes', choices=[*WORLD_NAMES, 'random'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--heldout-world', default='pillars',
                        choices=[*WORLD_NAMES, 'random'],
                        help='layout of the held-out evaluation (never driven in)')
    parser.add_argument('--heldout-minutes', type=float, default=2.0)
    parser.add_argument('--drive-minutes', type=float, default=3.0,
                        help='then let the learned model drive the held-out world for this '
                             'many simulated minutes, and the explorer as long, and compare '
                             '(0 = skip; default 3)')
    parser.add_argument('--real-time-factor', type=float, default=0.0,
                        help='0 = as fast as the CPU allows')
    parser.add_argument('--updates-per-second', type=float, default=DEMO_UPDATES_PER_SECOND,
                        help='training updates per simulated second the learner is given '
                             '(simulated time waits for it); 0 = no pacing '
                             f'(default {DEMO_UPDATES_PER_SECOND:g})')
    parser.add_argument('--appearance-period', type=float, default=DEMO_APPEARANCE_PERIOD,
                        help='simulated seconds between re-draws of the colours, textures '
                             'and light of the training world (geometry kept); 0 = never '
                             f'(default {DEMO_APPEARANCE_PERIOD:g})')
    parser.add_argument('--robots', type=int, default=1,
                        help='robots learning one model together, each in a world of its own '
                             '(--world, then other layouts, never the held-out one); '
                             'default 1')
    parser.add_argument('--trainer-param', '--learner-param', action='append', default=[],
                        dest='learner_param', metavar='NAME=VALUE',
                        help='a trainer node parameter (YAML value), e.g. learning_rate=5e-4 '
                             'or device=cuda; repeatable')


def trainer_overrides(assignments: list[str]) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` options into trainer parameters (values read as YAML, as ROS does)."""
    overrides = {}
    for assignment in assignments:
        name, sep, value = assignment.partition('=')
        if not sep or not name:
            raise SystemExit(f'error: --trainer-param wants NAME=VALUE, got {assignment!r}')
        overrides[name] = yaml.safe_load(value)
    return overrides


class DemoError(RuntimeError):
    """The demo cannot go on (the trainer died or never started); the message says why."""


class Demo:
    """Runs the nodes of one robot or a fleet, records the learning curve, evaluates, drives."""

    #: Wall seconds the trainer process may take to start (importing torch on a busy machine).
    TRAINER_START_TIMEOUT = 120.0
    #: Wall seconds to wait, once the simulation ends, for labeled frames still on their way.
    DRAIN_TIMEOUT = 30.0

    def __init__(self, args: argparse.Namespace, out: pathlib.Path,
                 record_frames: bool = False) -> None:
        """
        Prepare a run into ``out``.

        With ``record_frames`` the labeled frames the trainer is sent are also kept, in
        :attr:`frames` (images, labels), e.g. to train an offline model on the same data
        (one robot's only).
        """
        self.args = args
        self.out = out
        self.checkpoint = out.resolve() / 'checkpoint.pt'
        self.record_frames = record_frames
        self.frames: tuple[np.ndarray, np.ndarray] | None = None
        self.curve: list[dict[str, float]] = []
        self.appearance_changes = 0
        self.pacer: Pacer | None = None
        #: After run(): the final model (read from the checkpoint the trainer wrote on
        #: closing, without torch), the trainer's last status, the wall seconds the
        #: simulation ran and the held-out frames.
        self.model: Any = None
        self.cell_confidence: np.ndarray | None = None
        self.final: dict[str, Any] = {}
        self.wall_seconds = 0.0
        self.heldout: tuple[np.ndarray, np.ndarray] | None = None
        #: After run(), with --drive-minutes: the driving section of the report.
        self.driving: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        """Run everything; return the report."""
        import rclpy
        from rclpy.context import Context

        from ..nodes.runtime import start_executors, stop_executors

        args = self.args
        LOG.info('preparing the held-out frames (%s, seed %d, %.1f simulated minutes)',
                 args.heldout_world, args.seed + 1000, args.heldout_minutes)
        self.heldout = heldout_frames(args.heldout_world, args.seed + 1000,
                                      60.0 * args.heldout_minutes)
        curve_images, curve_labels = self.heldout
        context = Context()
        rclpy.init(context=context, args=['ssl-obstacle'])
        trainer = self._start_trainer()
        nodes: list[Any] = []
        executors: list[Any] = []
        simulator = None
        try:
            fleet = self._fleet_nodes(context)
            watch = _trainer_watch(context, [n for n in self.namespaces() if n])
            tap = _frame_tap(context) if self.record_frames else None
            nodes = [*fleet['explorers'], *fleet['labelers'], *fleet['predictors'], watch,
                     *([tap] if tap is not None else [])]
            executors = start_executors(nodes, context)
            self._wait_for_trainer(trainer, watch, tap is not None)
            # The simulator starts publishing as soon as it exists: created once the others
            # spin and the trainer listens, its first frames are not lost.
            simulator = self._simulator(context)
            nodes.append(simulator)
            executors += start_executors([simulator], context)
            started = time.monotonic()
            try:
                self._watch(simulator, fleet['labelers'], watch, trainer,
                            fleet['predictors'][0], curve_images, curve_labels)
            finally:
                self.wall_seconds = time.monotonic() - started
                simulator.close()
                self._drain(fleet['labelers'], watch, trainer)
            self._stop_trainer(trainer, watch)
            self.appearance_changes = simulator.sim.appearance_changes
            collisions = sum(sim.collisions for sim in simulator.sims)
            stop_executors(executors)
            executors = []
            for labeler in fleet['labelers']:
                labeler.close()
            for predictor in fleet['predictors']:
                predictor.close()
            labeler_counters = _sum_counters([labeler.status_values()
                                              for labeler in fleet['labelers']])
            predictor_counters = _sum_counters([dict(p.received, **p.counters)
                                                for p in fleet['predictors']])
            if tap is not None:
                self.frames = tap.arrays()
        finally:
            if trainer.poll() is None:
                trainer.stop()
            stop_executors(executors)
            for node in nodes:
                node.destroy_node()
            rclpy.shutdown(context=context)
        self._load_final_model()
        return self._evaluate(collisions, labeler_counters, predictor_counters)

    def namespaces(self) -> list[str]:
        """Return the robots' namespaces: '' for one robot (today's topics), else robot<i>."""
        count = max(1, int(getattr(self.args, 'robots', 1)))
        return [''] if count == 1 else [f'robot{i + 1}' for i in range(count)]

    def worlds(self) -> list[str]:
        """Return each robot's layout: --world first, then other layouts, never the held-out."""
        others = [w for w in TRAINING_WORLDS if w not in (self.args.world,
                                                          self.args.heldout_world)]
        count = len(self.namespaces())
        return [self.args.world, *[others[i % len(others)] for i in range(count - 1)]]

    def trainer_parameters(self) -> dict[str, Any]:
        """Return the trainer node's parameters for this run (--trainer-param last)."""
        robots = [n for n in self.namespaces() if n]
        return {'use_sim_time': True, 'checkpoint_path': str(self.checkpoint),
                'resume': False, 'checkpoint_period': 60.0, 'status_period': 0.2,
                'seed': int(self.args.seed), **({'robots': robots} if robots else {}),
                **trainer_overrides(self.args.learner_param)}

    def _start_trainer(self) -> Any:
        """Start the trainer node in a child process (its own interpreter, as ros2 launch)."""
        from ..nodes.node_runner import NodeProcess, NodeSpec

        if self.checkpoint.exists():  # a rerun into the same folder must not read it as ours
            self.checkpoint.unlink()
        return NodeProcess(NodeSpec('trainer', parameters=self.trainer_parameters()),
                           ['--ros-args'], on_exit=lambda child, code: None)

    def _wait_for_trainer(self, trainer: Any, watch: Any, tapped: bool) -> None:
        """Wait until the trainer reports and every labeler's frames have their reader."""
        topics = [f'/{n}/ssl/labeled_frames' if n else '/ssl/labeled_frames'
                  for n in self.namespaces()]
        readers = {topic: 1 + (1 if tapped and topic == '/ssl/labeled_frames' else 0)
                   for topic in topics}
        deadline = time.monotonic() + self.TRAINER_START_TIMEOUT
        while not (watch.status is not None and all(
                watch.count_subscribers(topic) >= count for topic, count in readers.items())):
            self._check_trainer(trainer)
            if time.monotonic() > deadline:
                raise DemoError(f'the trainer (process {trainer.pid}) did not start within '
                                f'{self.TRAINER_START_TIMEOUT:g} s (no status on '
                                '/ssl/learner_status, or it does not subscribe to '
                                f'{", ".join(topics)})')
            time.sleep(0.05)
        LOG.info('the trainer runs in process %d', trainer.pid)

    @staticmethod
    def _check_trainer(trainer: Any) -> None:
        code = trainer.poll()
        if code is not None:
            raise DemoError(f'{trainer.describe_exit(code)} before the demo ended; its log '
                            'lines above say why')

    def _fleet_nodes(self, context: Any) -> dict[str, Any]:
        """Create each robot's explorer, labeler and predictor (the trainer is a process)."""
        from rclpy.parameter import Parameter

        from ..nodes.explorer_node import ExplorerNode
        from ..nodes.labeler_node import LabelerNode
        from ..nodes.predictor_node import PredictorNode

        args = self.args
        sim_time = [Parameter('use_sim_time', value=True)]
        nodes: dict[str, Any] = {'explorers': [], 'labelers': [], 'predictors': []}
        for index, namespace in enumerate(self.namespaces()):
            nodes['explorers'].append(ExplorerNode(
                context=context, namespace=namespace,
                parameter_overrides=[*sim_time, Parameter('seed', value=args.seed + index)]))
            # Faster than real time, streams of one simulated instant reach the labeler
            # spread over more simulated time: a wider reorder window keeps them.
            nodes['labelers'].append(LabelerNode(
                context=context, namespace=namespace, parameter_overrides=[
                    *sim_time, Parameter('sensor_qos_depth', value=100),
                    Parameter('camera_qos_depth', value=100),
                    Parameter('camera_queue_size', value=100),
                    Parameter('reorder_window', value=1.0),
                    Parameter('time_jump_threshold', value=5.0)]))
            nodes['predictors'].append(PredictorNode(
                context=context, namespace=namespace, parameter_overrides=[
                    *sim_time, Parameter('publish_overlay', value=False),
                    Parameter('publish_markers', value=False)]))
        return nodes

    def _simulator(self, context: Any) -> Any:
        from rclpy.parameter import Parameter

        from ..nodes.simulator_node import SimulatorNode

        args = self.args
        robots = [n for n in self.namespaces() if n]
        fleet = [Parameter('robots', value=robots), Parameter('worlds', value=self.worlds())] \
            if robots else []
        return SimulatorNode(context=context, parameter_overrides=[
            Parameter('world', value=args.world), Parameter('seed', value=args.seed),
            Parameter('real_time_factor', value=float(args.real_time_factor)),
            Parameter('appearance_period', value=float(args.appearance_period)),
            Parameter('duration', value=60.0 * args.minutes), *fleet])

    def _watch(self, simulator: Any, labelers: list[Any], watch: Any, trainer: Any,
               predictor: Any, curve_images: np.ndarray, curve_labels: np.ndarray) -> None:
        interactive = sys.stdout.isatty()
        start_ns = simulator.sim.now_ns
        next_curve = 0.0
        last_line = 0.0
        last_status = 0.0
        pacer = Pacer(float(self.args.updates_per_second))
        self.pacer = pacer
        while not simulator.finished.wait(0.05):
            self._check_trainer(trainer)
            sim_seconds = (simulator.sim.now_ns - start_ns) / 1e9
            status = watch.status
            if status is not None and pacer.should_hold(
                    sim_seconds, updates=status.updates, received=watch.received(),
                    published=_published(labelers), training=not status.paused):
                simulator.hold()
            else:
                simulator.release()
            if status is None or time.monotonic() - last_status < 0.5:
                continue
            last_status = time.monotonic()
            if sim_seconds >= next_curve:
                self._curve_point(sim_seconds, status, predictor, curve_images, curve_labels)
                next_curve = sim_seconds + max(10.0, 6.0 * self.args.minutes)
            line = (f'sim {sim_seconds:6.1f} s | labeled {status.labeled_frames:6d} | '
                    f'updates {status.updates:6d} | running AUC {_fmt(status.auc)}')
            if interactive:
                print('\r' + line, end='', flush=True)
            elif time.monotonic() - last_line > 10.0:
                print(line, flush=True)
                last_line = time.monotonic()
            LOG.debug(line)
        if interactive:
            print()
        if watch.status is not None:
            self._curve_point((simulator.sim.now_ns - start_ns) / 1e9, watch.status, predictor,
                              curve_images, curve_labels)

    def _drain(self, labelers: list[Any], watch: Any, trainer: Any) -> None:
        """Wait (bounded) until the trainer has received every frame the labelers sent."""
        deadline = time.monotonic() + self.DRAIN_TIMEOUT
        while watch.received() < _published(labelers) - (self.pacer.lost if self.pacer else 0):
            if trainer.poll() is not None or time.monotonic() > deadline:
                LOG.warning('the trainer received %d of %d labeled frames',
                            watch.received(), _published(labelers))
                return
            time.sleep(0.05)

    def _stop_trainer(self, trainer: Any, watch: Any) -> None:
        """Stop the trainer (SIGINT: it stores what waits and writes its last checkpoint)."""
        self._check_trainer(trainer)
        code = trainer.stop()
        self.final = {'status': watch.status, 'by_robot': dict(watch.by_robot),
                      'counters': dict(watch.counters),
                      'process': {'pid': trainer.pid, 'exit_code': code}}
        if code != 0:
            raise DemoError(f'{trainer.describe_exit(code)} while closing')

    def _load_final_model(self) -> None:
        """Read the trainer's last checkpoint (its averaged weights) without torch."""
        from ..core.checkpoint_reader import CheckpointError, read_checkpoint_weights
        from ..core.numpy_model import NumpyObstacleNet

        try:
            weights = read_checkpoint_weights(self.checkpoint)
        except (OSError, CheckpointError) as error:
            raise DemoError(f'the trainer left no usable checkpoint: {error}') from error
        self.model = NumpyObstacleNet(weights.config, weights.state)
        self.cell_confidence = weights.cell_confidence
        self.final.update(updates=int(weights.counters.get('updates', 0)),
                          labeled_frames=int(weights.counters.get('labeled_frames', 0)),
                          parameters=weights.params)

    def _curve_point(self, sim_seconds: float, status: Any, predictor: Any,
                     images: np.ndarray, labels: np.ndarray) -> None:
        """
        Score the model a robot predicts with now (its predictor's) on the held-out frames.

        The very frames of the final evaluation, so that the figure after 3 minutes and the
        one after 10 are read on one yardstick: a 150-frame curve set of its own read the end
        of training 0.11 lower to 0.05 higher than the final evaluation (24 demos).
        """
        model = predictor.model
        heldout, ece = math.nan, math.nan
        if model is not None:
            probabilities = model.predict(images)
            heldout = auc_mean(auc_grid(probabilities, labels))
            ece = float(expected_calibration_error(probabilities, labels))
        self.curve.append({'sim_seconds': sim_seconds, 'running_auc': float(status.auc),
                           'heldout_auc': heldout, 'heldout_ece': ece,
                           'heldout_frames': len(images), 'updates': int(status.updates),
                           'labeled_frames': int(status.labeled_frames),
                           'model_updates': predictor.model_updates})

    def _evaluate(self, collisions: int, labeler_counters: dict[str, Any],
                  predictor_counters: dict[str, Any]) -> dict[str, Any]:
        from .evaluate import write_report
        from .plots import plot_confidence, plot_examples, plot_learning_curve
        from ..core.confidence import error_by_confidence, prediction_confidence
        from ..core.evaluation import build_report

        args = self.args
        LOG.info('held-out evaluation: %s, seed %d, %.1f simulated minutes',
                 args.heldout_world, args.seed + 1000, args.heldout_minutes)
        images, labels = self.heldout
        probabilities = self.model.predict(images)
        params = LabelParams()
        report = build_report(probabilities, labels, params.sensor_names, params.distances,
                              n_boot=100, seed=args.seed)
        final = self.final
        status = final['status']
        extra = {
            'learning_curve': self.curve,
            'settings': {'minutes': args.minutes, 'world': args.world, 'seed': args.seed,
                         'robots': len(self.namespaces()), 'worlds': self.worlds(),
                         'heldout_world': args.heldout_world,
                         'heldout_seed': args.seed + 1000,
                         'heldout_minutes': args.heldout_minutes,
                         'real_time_factor': args.real_time_factor,
                         'appearance_period': args.appearance_period,
                         'updates_per_second': args.updates_per_second,
                         'trainer': final['parameters']},
            'training': {'updates': final['updates'],
                         'labeled_frames': final['labeled_frames'],
                         'running_auc': float(status.auc), 'collisions': collisions,
                         'by_robot': {name: {'labeled_frames': int(robot.labeled_frames),
                                             'running_auc': float(robot.auc)}
                                      for name, robot in final['by_robot'].items()},
                         'appearance_changes': self.appearance_changes,
                         'pacing': self.pacer.summary() if self.pacer else None,
                         'labeler': labeler_counters, 'predictors': predictor_counters,
                         'trainer': final['counters'], 'trainer_process': final['process']},
        }
        if self.cell_confidence is not None:
            # Does the confidence the predictor would publish hold in a world it never saw?
            confidence = prediction_confidence(probabilities, self.cell_confidence)
            extra['confidence_vs_error'] = {
                **error_by_confidence(probabilities, labels, confidence),
                'mean_by_cell': confidence.mean(axis=0).round(4).tolist()}
            plot_confidence(self.out / 'confidence.png', extra['confidence_vs_error'],
                            params.sensor_names, params.distances)
        if args.drive_minutes > 0:
            self.driving = self._drive()
            extra['driving'] = self.driving
        write_report(self.out, report, extra)
        plot_learning_curve(self.out / 'learning_curve.png',
                            [p['sim_seconds'] for p in self.curve],
                            [_nan(p['running_auc']) for p in self.curve],
                            [_nan(p['heldout_auc']) for p in self.curve])
        chosen = _example_indices(labels, 4)
        plot_examples(self.out / 'examples.png', images[chosen], probabilities[chosen],
                      labels[chosen], params.sensor_names, params.distances)
        return report

    def _drive(self) -> dict[str, Any]:
        """
        Third act: the learned model drives the held-out world, then the explorer does.

        The same world and start as the held-out evaluation (layout, look and seed), each
        for ``--drive-minutes``, in-process as ``ssl-obstacle drive`` runs them; writes
        ``drive.png`` and returns the report's ``driving`` section.
        """
        from .drive import drive_report, drive_run, ModelPredictor, plot_runs

        args = self.args
        seed = args.seed + 1000
        predictor = ModelPredictor(self.checkpoint)
        runs = []
        for controller in ('avoider', 'explorer'):
            LOG.info('driving: %s in %s (seed %d), %.1f simulated minutes', controller,
                     args.heldout_world, seed, args.drive_minutes)
            print(f'driving {args.drive_minutes:g} simulated minutes in {args.heldout_world!r} '
                  f'with the {controller}', flush=True)
            runs.append(drive_run(args.heldout_world, seed, args.drive_minutes, controller,
                                  predictor if controller == 'avoider' else None,
                                  progress=sys.stderr.isatty()))
        plot_runs(self.out / 'drive.png', runs)
        return drive_report(runs)


def _published(labelers: list[Any]) -> int:
    return sum(labeler.status_values()['published'] for labeler in labelers)


def _trainer_watch(context: Any, robots: list[str]) -> Any:
    """
    Return a node that keeps the trainer's newest status, per-robot statuses and counters.

    The trainer runs in another process: what the demo knows of it is what it publishes
    (``ssl/learner_status``, ``/<robot>/ssl/learner_status``, its ``/diagnostics``).
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from ssl_obstacle_msgs.msg import LearnerStatus

    class TrainerWatch(Node):
        """Each callback replaces one reference: the demo's thread reads them as they are."""

        def __init__(self) -> None:
            super().__init__('demo_trainer_watch', context=context)
            self.status: Any = None
            self.by_robot: dict[str, Any] = {}
            self.counters: dict[str, Any] = {}
            self.create_subscription(LearnerStatus, '/ssl/learner_status', self._on_status, 10)
            for robot in robots:
                self.create_subscription(LearnerStatus, f'/{robot}/ssl/learner_status',
                                         self._on_robot_status, 10)
            self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)

        def _on_status(self, msg: Any) -> None:
            if not msg.robot:
                self.status = msg

        def _on_robot_status(self, msg: Any) -> None:
            self.by_robot = {**self.by_robot, msg.robot: msg}

        def _on_diagnostics(self, msg: Any) -> None:
            for status in msg.status:
                if status.name.startswith('/trainer:'):
                    self.counters = {kv.key: _number(kv.value) for kv in status.values}

        def received(self) -> int:
            """Count the labeled frames that reached the trainer: taken in, refused or dropped."""
            status = self.status
            if status is None:
                return 0
            return int(status.labeled_frames + status.labeled_refused + status.labeled_dropped)

    return TrainerWatch()


def _number(text: str) -> Any:
    """Return a diagnostics value as the number it spells, else as it is."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _frame_tap(context: Any) -> Any:
    """Return a node that keeps every ``ssl/labeled_frames`` message as arrays."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from ssl_obstacle_msgs.msg import LabeledFrame

    from ..io.messages import labeled_frame_arrays
    from ..nodes.labeler_node import LABELED_FRAMES_QOS

    class FrameTap(Node):
        """Subscribes as the learner does (same QoS) and keeps images and labels."""

        def __init__(self) -> None:
            super().__init__('frame_tap', context=context,
                             parameter_overrides=[Parameter('use_sim_time', value=True)])
            self.images: list[np.ndarray] = []
            self.labels: list[np.ndarray] = []
            self.create_subscription(LabeledFrame, 'ssl/labeled_frames', self._on_frame,
                                     LABELED_FRAMES_QOS)

        def _on_frame(self, msg: Any) -> None:
            frame = labeled_frame_arrays(msg)
            self.images.append(frame['image'].copy())
            self.labels.append(frame['labels'])

        def arrays(self) -> tuple[np.ndarray, np.ndarray]:
            """Return the frames received so far: images (N, H, W, 3), labels (N, S, D)."""
            if not self.images:
                return np.zeros((0, 64, 80, 3), np.uint8), np.zeros((0, 5, 31), np.float32)
            return np.stack(self.images), np.stack(self.labels)

    return FrameTap()


class Pacer:
    """
    Decide when the demo holds simulated time so that learning keeps up with driving.

    A robot learns in real time: each minute of driving gives the trainer a minute of
    training. The demo simulates as fast as the CPU allows, so the trainer's share of each
    simulated second would depend on how busy the machine is (on 2 shared cores it fell
    from 1,350 to 315 updates in 10 simulated minutes, and the trainer's subscription lost
    half the labeled frames). The pacer holds the simulator while the trainer is more than
    a few updates behind ``updates_per_second`` x simulated seconds (counted from its first
    update), or while labeled frames are still on their way to it. The figure is then a
    property of the run, not of the machine's load: only the wall time varies.
    """

    #: Labeled frames published but not yet received by the trainer before holding.
    MAX_IN_FLIGHT = 32
    #: Wall seconds without a received frame after which frames in flight count as lost
    #: (a message dropped by DDS must not hold the simulator for ever).
    LOST_AFTER = 2.0

    def __init__(self, updates_per_second: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Pace to ``updates_per_second`` (0: only wait for frames in flight)."""
        self.updates_per_second = max(0.0, updates_per_second)
        self.trainable_since: float | None = None
        self.lost = 0
        self.held_seconds = 0.0
        self._clock = clock
        self._received = -1
        self._received_at = clock()
        self._held_since: float | None = None

    def should_hold(self, sim_seconds: float, *, updates: int, received: int,
                    published: int, training: bool) -> bool:
        """
        Return whether simulated time should stand still now.

        ``updates``: the trainer's training steps so far (pacing starts at its first: it
        trains as soon as its buffer holds enough frames); ``received``: labeled frames it
        has received, of the labelers' ``published``; ``training``: it is not paused (a
        trainer that does not train is never waited for).
        """
        now = self._clock()
        if received != self._received:
            self._received, self._received_at = received, now
        in_flight = published - received - self.lost
        if in_flight > self.MAX_IN_FLIGHT and now - self._received_at > self.LOST_AFTER:
            self.lost += in_flight
            in_flight = 0
        if self.trainable_since is None and updates > 0:
            self.trainable_since = sim_seconds
        behind = False
        if self.trainable_since is not None and self.updates_per_second > 0 and training:
            due = self.updates_per_second * (sim_seconds - self.trainable_since)
            behind = updates + 2 < due
        hold = behind or in_flight > self.MAX_IN_FLIGHT
        if hold and self._held_since is None:
            self._held_since = now
        elif not hold and self._held_since is not None:
            self.held_seconds += now - self._held_since
            self._held_since = None
        return hold

    def summary(self) -> dict[str, float]:
        """Return the pacing figures for the report."""
        return {'updates_per_sim_second': self.updates_per_second,
                'trainable_since_sim_seconds': self.trainable_since,
                'held_wall_seconds': round(self.held_seconds, 1),
                'frames_lost_in_transit': self.lost}


def _sum_counters(counters: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the robots' counters added up (numbers only; one robot's as they are)."""
    if len(counters) == 1:
        return counters[0]
    total: dict[str, Any] = {}
    for values in counters:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _nan(value: Any) -> float:
    return float('nan') if value is None else float(value)


def _fmt(value: float) -> str:
    return '  n/a' if value is None or math.isnan(value) else f'{value:.3f}'


def _example_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """Pick frames with obstacles near and far plus a clear one, spread over the run."""
    with_obstacle = np.flatnonzero(np.nan_to_num(labels).max(axis=(1, 2)) > 0.5)
    clear = np.flatnonzero(np.nan_to_num(labels).max(axis=(1, 2)) <= 0.5)
    picks = list(with_obstacle[np.linspace(0, len(with_obstacle) - 1, count - 1).astype(int)]
                 if len(with_obstacle) else [])
    if len(clear):
        picks.append(int(clear[len(clear) // 2]))
    while len(picks) < count:
        picks.append(len(picks) % len(labels))
    return np.asarray(picks[:count], dtype=int)


def run(args: argparse.Namespace) -> int:
    """Run the demo; print a short table and the run folder last."""
    from ..core.evaluation import format_table

    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    out = pathlib.Path(args.out or f'runs/demo-{stamp}')
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / 'demo.log')
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    LOG.info('demo: %.1f simulated minutes in %s (seed %d) -> %s', args.minutes, args.world,
             args.seed, out)
    print(f'ssl_obstacle demo: {args.minutes:g} simulated minutes in world {args.world!r}, '
          f'learning online; then a held-out run in {args.heldout_world!r}', flush=True)
    demo = Demo(args, out)
    try:
        report = demo.run()
    except KeyboardInterrupt:
        print('\ninterrupted', file=sys.stderr)
        return 130
    except DemoError as error:
        LOG.error('%s', error)
        print(f'\nerror: {error}', file=sys.stderr)
        return 1
    finally:
        root.removeHandler(handler)
        handler.close()
    print()
    print(format_table(report))
    if demo.driving is not None:
        from .drive import format_table as driving_table

        print(f'driving in the held-out world, {args.drive_minutes:g} simulated minutes each:')
        print(driving_table(demo.driving['runs']))
    print(f'run folder: {out}')
    return 0
