"""
``ssl-obstacle drive``: let a controller drive in the built-in world and measure how well.

The simulator runs in-process, as fast as the CPU allows and deterministically for a seed
(as ``record`` does, :mod:`ssl_obstacle.sim.closed_loop`). With ``--controller avoider``
every camera frame is predicted by the model and the grid (with its confidence, as the
robot's predictor publishes it) handed to the
:class:`~ssl_obstacle.core.avoider.Avoider` at the frame's stamp; ``explorer`` is the IR-only
data-collection behaviour; ``oracle`` is the avoider fed the simulator's exact label grid
(the best any model could do); ``both`` runs the explorer and the avoider in the same world
from the same start. Writes ``DIR/report.json`` and ``DIR/trajectory.png``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..core.avoider import Avoider, AvoiderSettings
from ..core.confidence import prediction_confidence
from ..core.explorer import Explorer
from ..core.params import LabelParams
from ..io.conversions import resize_rgb
from ..sim.camera import CameraModel, Renderer
from ..sim.closed_loop import ClosedLoop
from ..sim.drive_metrics import DriveMetrics
from ..sim.simulator import SimEvent, SimSettings, Simulator
from ..sim.world import make_world, World, WORLD_NAMES

CONTROLLERS = ('explorer', 'avoider', 'oracle')

#: image (H, W, 3) uint8 at the camera's size → P(obstacle) grid (S, D)
Predictor = Callable[[np.ndarray], np.ndarray]


class DriveError(RuntimeError):
    """The run cannot proceed; the message says why in terms a user can act on."""


@dataclass
class DriveRun:
    """One controller's run: its report, the path and marks for the figure."""

    report: dict[str, Any]
    metrics: DriveMetrics
    world: World
    extra: dict[str, Any] = field(default_factory=dict)


class ModelPredictor:
    """Predicts camera frames with a checkpoint, as the robot's predictor does (numpy)."""

    def __init__(self, path: str | pathlib.Path) -> None:
        """Load the checkpoint at ``path``; raise :class:`DriveError` if it cannot be used."""
        from ..core.checkpoint_reader import CheckpointError, read_checkpoint_weights
        from ..core.numpy_model import NumpyObstacleNet

        try:
            weights = read_checkpoint_weights(path)
        except (FileNotFoundError, CheckpointError) as error:
            raise DriveError(str(error)) from error
        self.path = str(path)
        self.config = weights.config
        self.model = NumpyObstacleNet(weights.config, weights.state)
        self.updates = int(weights.counters.get('updates', 0))
        expected = LabelParams()
        names, distances = weights.grid or (expected.sensor_names, expected.distances)
        self.sensor_names = tuple(names)
        self.distances = tuple(float(d) for d in distances)
        if self.sensor_names != tuple(expected.sensor_names) or \
                len(self.distances) != len(expected.distances) or \
                not np.allclose(self.distances, expected.distances) or \
                (self.config.num_sensors, self.config.num_distances) != (
                    len(expected.sensor_names), len(expected.distances)):
            raise DriveError(f'{path}: the model predicts sensors {list(self.sensor_names)} '
                             f'at {len(self.distances)} distances; the built-in robot has '
                             f'{list(expected.sensor_names)} at {len(expected.distances)}')
        #: Each cell's ranking skill, as published with the weights (None: no skill yet).
        self.skill = weights.cell_confidence
        self.seconds = 0.0
        self.frames = 0

    def confidence(self, grid: np.ndarray) -> np.ndarray | None:
        """Return a prediction's confidence, as the robot's predictor publishes it."""
        return None if self.skill is None else prediction_confidence(grid, self.skill)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Return the (S, D) grid of one camera image."""
        started = time.perf_counter()
        small = resize_rgb(image, self.config.image_width, self.config.image_height)
        grid = self.model.predict(small)[0]
        self.seconds += time.perf_counter() - started
        self.frames += 1
        return grid


class _TimedAvoider:
    """The avoider with the seconds spent in it counted (the controller's own cost)."""

    def __init__(self, avoider: Avoider) -> None:
        self.avoider = avoider
        self.seconds = 0.0
        self.calls = 0

    def update(self, now: float, ranges: dict[str, float]) -> tuple[float, float]:
        started = time.perf_counter()
        twist = self.avoider.update(now, ranges)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return twist

    def set_prediction(self, stamp: float, grid: np.ndarray,
                       confidence: np.ndarray | None = None) -> None:
        started = time.perf_counter()
        self.avoider.set_prediction(stamp, grid, confidence)
        self.seconds += time.perf_counter() - started
        self.calls += 1


def drive_run(world_name: str, seed: int, minutes: float, controller: str,
              predictor: Predictor | None = None,
              settings: AvoiderSettings | None = None,
              progress: bool = False) -> DriveRun:
    """
    Drive ``minutes`` simulated minutes of ``world_name`` (seed ``seed``) with ``controller``.

    The world is the layout with its seed's look (as the held-out evaluation draws it), the
    start pose the seed's; so runs of different controllers with one seed start alike.
    ``predictor`` is needed by ``avoider`` only.
    """
    if controller not in CONTROLLERS:
        raise DriveError(f'unknown controller {controller!r}; known: {", ".join(CONTROLLERS)}')
    if controller == 'avoider' and predictor is None:
        raise DriveError('the avoider needs a model (--model MODEL.pt)')
    world = make_world(world_name, seed, vary=True)
    params = LabelParams()
    sim_settings = SimSettings(distances=params.distances, sensor_names=params.sensor_names,
                               ground_truth=controller == 'oracle')
    renderer = None
    if controller == 'avoider':
        camera = CameraModel(width=sim_settings.camera_width, height=sim_settings.camera_height)
        renderer = Renderer(world, camera)
    sim = Simulator(world, sim_settings, seed=seed, renderer=renderer)
    metrics = DriveMetrics(params.sensor_names, sim.periods_ns['range'] / 1e9)
    timed: _TimedAvoider | None = None
    if controller == 'explorer':
        drive: Any = Explorer(seed=seed)
        observe = metrics.observe
    else:
        timed = _TimedAvoider(Avoider(settings or AvoiderSettings(), params.sensor_names,
                                      params.distances))
        drive = timed
        observe = _feeding(metrics, timed, controller, predictor)
    loop = ClosedLoop(sim, drive, observe=observe)
    duration_ns = int(round(minutes * 60e9))
    start = sim.now_ns
    bar = tqdm(total=round(minutes * 60), unit='sim s', disable=not progress,
               file=sys.stderr, dynamic_ncols=True, desc=f'{controller} in {world.name}')
    try:
        while sim.now_ns - start < duration_ns:
            loop.step()
            metrics.after_step(sim)
            elapsed = (sim.now_ns - start) // 1_000_000_000
            if elapsed > bar.n:
                bar.update(elapsed - bar.n)
    finally:
        bar.close()
    report = {'controller': controller, 'world': world_name, 'seed': int(seed),
              'minutes': float(minutes), **metrics.summary(sim.collisions)}
    if timed is not None:
        counters = dict(timed.avoider.counters)
        report['reflexes'] = counters['reflexes']
        report['avoider'] = counters
        report['controller_us_per_call'] = round(1e6 * timed.seconds / max(1, timed.calls), 1)
    else:
        report['reflexes'] = None  # the explorer is all reflex: every near-hit is one
    if isinstance(predictor, ModelPredictor):
        report['model'] = predictor.path
        report['model_updates'] = predictor.updates
        report['prediction_ms_per_frame'] = round(
            1e3 * predictor.seconds / max(1, predictor.frames), 2)
    return DriveRun(report, metrics, world)


def _feeding(metrics: DriveMetrics, avoider: _TimedAvoider, controller: str,
             predictor: Predictor | None) -> Callable[[SimEvent], None]:
    """Return the observer that scores every event and hands the avoider its grids."""
    source = 'ground_truth_labels' if controller == 'oracle' else 'image'

    def observe(event: SimEvent) -> None:
        metrics.observe(event)
        if event.kind != source:
            return
        if controller == 'oracle':
            avoider.set_prediction(event.stamp / 1e9, event.labels)
            return
        grid = predictor(event.image)
        confidence = predictor.confidence(grid) if isinstance(predictor, ModelPredictor) \
            else None
        avoider.set_prediction(event.stamp / 1e9, grid, confidence)
    return observe


# ------------------------------------------------------------------------- reports
def comparison(runs: Sequence[DriveRun]) -> dict[str, Any]:
    """Return how the avoider did against the explorer (ratios; None where undefined)."""
    by_name = {run.report['controller']: run.report for run in runs}
    explorer, avoider = by_name.get('explorer'), by_name.get('avoider')
    if explorer is None or avoider is None:
        return {}

    def ratio(numerator: Any, denominator: Any) -> float | None:
        if numerator is None or not denominator:
            return None
        return round(float(numerator) / float(denominator), 4)
    return {'near_hits_per_m_ratio': ratio(avoider['near_hits_per_m'],
                                           explorer['near_hits_per_m']),
            'mean_speed_ratio': ratio(avoider['mean_speed'], explorer['mean_speed'])}


def format_table(reports: Sequence[dict[str, Any]]) -> str:
    """Return one line per run: near-hits per metre, speed, collisions, reflexes."""
    lines = [f'{"controller":10} {"distance":>9} {"speed":>7} {"near-hits":>9} '
             f'{"per m":>6} {"collisions":>10} {"reflexes":>8} {"<5 cm":>6} {"visited":>8}']
    for report in reports:
        per_m = report['near_hits_per_m']
        reflexes = report.get('reflexes')
        lines.append(
            f'{report["controller"]:10} {report["distance_m"]:8.1f}m '
            f'{report["mean_speed"]:6.3f} {report["near_hits"]:9d} '
            f'{"n/a" if per_m is None else f"{per_m:.3f}":>6} {report["collisions"]:10d} '
            f'{"-" if reflexes is None else reflexes:>8} {report["time_within_5cm"]:5.1f}s '
            f'{report["area_visited_m2"]:5.2f}m²')
    return '\n'.join(lines)


def drive_report(runs: Sequence[DriveRun]) -> dict[str, Any]:
    """Return ``report.json``'s content: one run's keys, or several runs side by side."""
    if len(runs) == 1:
        return dict(runs[0].report)
    first = runs[0].report
    return {'world': first['world'], 'seed': first['seed'], 'minutes': first['minutes'],
            'runs': [run.report for run in runs], 'comparison': comparison(runs)}


def plot_runs(path: pathlib.Path, runs: Sequence[DriveRun]) -> None:
    """Draw the runs' paths in their (common) world, side by side, into ``path``."""
    from .plots import plot_trajectories

    plot_trajectories(path, runs[0].world,
                      [(_title(run.report), run.metrics.path_array(),
                        run.metrics.near_hit_points, run.metrics.collision_points)
                       for run in runs])


def _title(report: dict[str, Any]) -> str:
    per_m = report['near_hits_per_m']
    return (f'{report["controller"]}: {report["near_hits"]} near-hits '
            f'({"n/a" if per_m is None else f"{per_m:.2f}"}/m), '
            f'{report["collisions"]} collisions, {report["mean_speed"]:.3f} m/s')


# ------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``drive``."""
    parser.add_argument('--model', help='checkpoint the avoider predicts with (avoider, both)')
    parser.add_argument('--world', default='pillars',
                        help=f'layout: {", ".join(WORLD_NAMES)} or random (default pillars)')
    parser.add_argument('--seed', type=int, default=1000,
                        help="seed of the world's look, the start pose, the noise")
    parser.add_argument('--minutes', type=float, default=4.0, help='simulated minutes')
    parser.add_argument('--controller', default='both', choices=(*CONTROLLERS, 'both'),
                        help='explorer (IR only), avoider (by the model), oracle (by the exact '
                             'labels), both (explorer and avoider); default both')
    parser.add_argument('--out', required=True, help='directory for report.json and the figure')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args: argparse.Namespace) -> int:
    """Drive and write the report; 0 on success, 2 with ``error: ...`` when it cannot."""
    controllers = ['explorer', 'avoider'] if args.controller == 'both' else [args.controller]
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        if not args.minutes > 0:
            raise DriveError('--minutes must be positive')
        out = pathlib.Path(args.out)
        if out.exists() and not out.is_dir():
            raise DriveError(f'output path {str(out)!r} exists and is not a directory')
        predictor = None
        if 'avoider' in controllers:
            if not args.model:
                raise DriveError('the avoider needs a model: --model MODEL.pt')
            predictor = ModelPredictor(args.model)
        runs = [drive_run(args.world, args.seed, args.minutes, name,
                          predictor if name == 'avoider' else None, progress=progress)
                for name in controllers]
        from .plots import write_json

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / 'report.json', drive_report(runs))
        plot_runs(out / 'trajectory.png', runs)
    except (DriveError, ValueError) as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: cannot write {args.out!r}: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    print(format_table([run.report for run in runs]))
    print(f'wrote {out / "report.json"}, {out / "trajectory.png"}')
    return 0
