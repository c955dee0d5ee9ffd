"""
The simulated world's clock and every stream a robot (plus an oracle) would produce.

:class:`Simulator` advances physics in fixed ticks (default 100 Hz) and returns the events
that fall due: odometry and the true pose, proximity readings, camera frames and the
ground-truth label grid of each frame. No ROS here: the sim node turns events into
messages, tests and benchmarks consume them directly.

Timing is exact and independent of the physics rate: stream ``k`` stamps its ``n``-th
event at ``start_ns + round(n * 1e9 / rate_k)`` (integer nanoseconds, computed in integer
arithmetic: :func:`stream_stamp`), i.e. ``n * period`` when the period is a whole number of
nanoseconds and never drifting when it is not (15 Hz). A tick covering ``[t0, t0 +
physics_period)`` emits the events stamped in that interval; within a tick the robot
drives one constant twist along an exact arc, so the pose at any stamp inside it is
computed exactly rather than taken from the nearest tick.

Randomness comes from independent generators spawned from the seed, one per source (start
pose, odometry, proximity, camera, appearance), so e.g. a different camera rate changes
neither the odometry noise nor the proximity noise.

With ``appearance_period`` the world's look (colours, textures, light) is re-drawn every
that many simulated seconds, its geometry kept: sensors, collisions and ground truth never
notice, only the camera does (domain randomisation for learning that generalises).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import math
from typing import Protocol

import numpy as np

from .geometry2d import distance_to_obstacles
from .ground_truth import label_grid
from .odometry import Odometry
from .proximity import mounting_poses, ProximitySensors
from .robot import clip_command, DiffDrive, integrate
from .world import redraw_appearance, World
from ..core.geometry import relative_pose
from ..core.params import DEFAULT_DISTANCES
from ..core.thymio import SENSOR_NAMES

NS = 1_000_000_000

#: Per-run wheel calibration error (std) as a fraction of ``odom_noise``: with the default
#: 0.02, wheels differ by ~0.5 %, so odometry's heading drifts steadily as a Thymio's does.
ODOM_BIAS_RATIO = 0.25

#: Order of simultaneous events: odometry first, so a consumer that interpolates poses
#: already has the pose of the stamp when the readings and frames of that stamp arrive.
KIND_ORDER: tuple[str, ...] = ('odom', 'ground_truth_odom', 'range', 'image',
                               'ground_truth_labels')


@dataclass(frozen=True)
class SimSettings:
    """Rates (Hz), camera size, noise and ground-truth options of a simulation."""

    camera_rate: float = 15.0
    camera_width: int = 320
    camera_height: int = 240
    proximity_rate: float = 10.0
    odom_rate: float = 20.0
    physics_rate: float = 100.0
    cmd_timeout: float = 0.5  # seconds without set_command -> stop
    odom_noise: float = 0.02  # relative std of wheel speed noise (0 = exact), see odometry.py
    proximity_noise: float = 0.003  # metres std
    sensor_names: tuple[str, ...] = SENSOR_NAMES
    distances: tuple[float, ...] = DEFAULT_DISTANCES
    ground_truth: bool = True  # compute the label grid for every camera frame
    start_ns: int = 1_000_000_000  # first stamp (non-zero: tools treat 0 as unset)
    #: Simulated seconds between re-draws of the world's appearance (colours, textures,
    #: light; geometry kept): :func:`~.world.redraw_appearance`. 0 = never.
    appearance_period: float = 0.0

    def __post_init__(self) -> None:
        """Reject settings that would stall the clock or make a stream meaningless."""
        for name in ('camera_rate', 'proximity_rate', 'odom_rate', 'physics_rate'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0 and round(NS / value) >= 1):
                raise ValueError(f'{name} must be a positive rate in Hz, got {value}')
        for name in ('camera_width', 'camera_height'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be positive')
        for name in ('cmd_timeout', 'odom_noise', 'proximity_noise', 'appearance_period'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name} must be finite and non-negative, got {value}')
        if not self.sensor_names:
            raise ValueError('sensor_names must name at least one sensor')
        mounting_poses(self.sensor_names)  # raises for unknown sensors
        if not self.distances or not all(math.isfinite(d) for d in self.distances):
            raise ValueError('distances must be a non-empty sequence of finite numbers')
        if int(self.start_ns) < 0:
            raise ValueError('start_ns must be non-negative')


@dataclass(frozen=True)
class SimEvent:
    """
    One message's worth of simulation output.

    ``kind`` is one of :data:`KIND_ORDER`. ``pose`` is the odom-frame pose for ``'odom'``
    and the true world-frame pose for ``'ground_truth_odom'``, ``'image'`` and
    ``'ground_truth_labels'``; ``twist`` is the measured ``(linear, angular)`` for
    ``'odom'`` and the true one for ``'ground_truth_odom'``.
    """

    stamp: int
    kind: str
    pose: tuple[float, float, float] | None = None
    twist: tuple[float, float] | None = None
    sensor: str | None = None
    value: float = -1.0  # range: metres, -1.0 = nothing seen
    image: np.ndarray | None = None  # (H, W, 3) uint8 rgb
    labels: np.ndarray | None = None  # (S, D) float32


class Renderer(Protocol):
    """
    Anything that draws the camera image of a true pose.

    A renderer that also has ``set_world(world)`` follows appearance re-draws
    (:attr:`SimSettings.appearance_period`); one without keeps drawing the first world.
    """

    def render(self, pose: tuple[float, float, float],
               rng: np.random.Generator) -> np.ndarray:
        """Return the (H, W, 3) uint8 rgb image seen from ``pose`` (world frame)."""


def _period_fraction(rate: float) -> tuple[int, int]:
    """Return the period of ``rate`` Hz as integers ``(p, q)``: ``p / q`` nanoseconds."""
    period = Fraction(NS) / Fraction(rate).limit_denominator(1_000_000)
    return period.numerator, period.denominator


def stream_stamp(start_ns: int, rate: float, index: int) -> int:
    """Return the stamp of the ``index``-th event of a stream at ``rate`` Hz."""
    p, q = _period_fraction(rate)
    return start_ns + (index * p + q // 2) // q


def _as_tuple(pose: np.ndarray) -> tuple[float, float, float]:
    return float(pose[0]), float(pose[1]), float(pose[2])


class Simulator:
    """
    A Thymio-class robot in a world: commands in, timestamped sensor events out.

    Attributes the nodes read: ``now_ns`` (the clock: every event returned so far is
    stamped before it), ``true_pose`` (world frame), ``odom_pose`` (odom frame, whose
    origin is ``start_pose``), ``collisions`` (contact episodes).
    """

    def __init__(self, world: World, settings: SimSettings = SimSettings(), seed: int = 0,
                 renderer: Renderer | None = None,
                 start_pose: tuple[float, float, float] | np.ndarray | None = None) -> None:
        """
        Place the robot at ``start_pose`` (world frame) or, if None, at a free seeded pose.

        ``renderer`` draws the camera images; without one, ``'image'`` events carry
        ``image=None`` (tests and label-only runs need no pixels).
        """
        self.world = world
        self.settings = settings
        self.seed = int(seed)
        self.renderer = renderer
        # Children 0-3 are what they were before the appearance stream was added (spawn
        # keys are sequential), so existing seeds give the same runs.
        start_rng, odom_rng, proximity_rng, camera_rng, appearance_rng = (
            np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(5))
        self.camera_rng = camera_rng
        self._appearance_rng = appearance_rng
        #: How many times the appearance has been re-drawn (``world`` is the current look).
        self.appearance_changes = 0
        self.robot = DiffDrive(world)
        if start_pose is None:
            start = self._free_pose(start_rng)
        else:
            start = np.asarray(start_pose, dtype=np.float64).reshape(3).copy()
            if self.robot.overlaps(start):
                raise ValueError(f'start pose {tuple(start)} overlaps an obstacle or wall')
        #: The true start pose: origin of the odom frame.
        self.start_pose = start
        self.true_pose = start.copy()
        self.odometry = Odometry(odom_rng, relative_noise=settings.odom_noise,
                                 bias=ODOM_BIAS_RATIO * settings.odom_noise)
        self.proximity = ProximitySensors(world, settings.sensor_names,
                                          noise=settings.proximity_noise, rng=proximity_rng)
        self.sensor_names = tuple(settings.sensor_names)
        self.distances = tuple(float(d) for d in settings.distances)
        self.now_ns = int(settings.start_ns)
        self.physics_period_ns = int(round(NS / settings.physics_rate))
        # Each stream's period as an exact fraction p / q of nanoseconds: stamps are
        # rounded individually, so 15 Hz does not drift as 66666667 ns would.
        self._periods = {stream: _period_fraction(rate) for stream, rate in (
            ('odom', settings.odom_rate), ('range', settings.proximity_rate),
            ('camera', settings.camera_rate))}
        #: Period (ns, float) of each stream: 'odom' (with ground_truth_odom), 'range',
        #: 'camera'.
        self.periods_ns = {stream: p / q for stream, (p, q) in self._periods.items()}
        self._next_index = dict.fromkeys(self._periods, 0)
        self._timeout_ns = int(round(settings.cmd_timeout * NS))
        self._appearance_ns = int(round(settings.appearance_period * NS))
        self._next_appearance_ns = self.now_ns + self._appearance_ns
        self._command = (0.0, 0.0)
        self._command_ns: int | None = None

    # ------------------------------------------------------------------------ state
    @property
    def odom_pose(self) -> np.ndarray:
        """Return the odometry pose (odom frame)."""
        return self.odometry.pose

    @property
    def collisions(self) -> int:
        """Return the number of contact episodes so far."""
        return self.robot.collisions

    @property
    def true_pose_in_odom(self) -> np.ndarray:
        """Return the true pose expressed in the odom frame (what perfect odometry says)."""
        return relative_pose(self.start_pose, self.true_pose)

    def _free_pose(self, rng: np.random.Generator) -> np.ndarray:
        """Draw a pose whose body has room around it (falls back to merely free)."""
        half_x, half_y = self.world.size_x / 2, self.world.size_y / 2
        radius = self.robot.body_radius
        for margin in (0.08, 0.03, 0.0):
            for _ in range(500):
                pose = np.array([rng.uniform(-half_x, half_x), rng.uniform(-half_y, half_y),
                                 rng.uniform(-math.pi, math.pi)])
                centre = self.robot.body_centre(pose)[None, :]
                if distance_to_obstacles(self.world, centre)[0] > radius + margin:
                    return pose
        raise ValueError(f'world {self.world.name!r} has no free pose for the robot')

    # --------------------------------------------------------------------- commands
    def set_command(self, linear: float, angular: float) -> None:
        """
        Command a twist (m/s, rad/s); it holds until the next command or the timeout.

        The twist is clipped to what the wheels can do (:func:`.robot.clip_command`);
        non-finite values stop the robot.
        """
        self._command = clip_command(float(linear), float(angular))
        self._command_ns = self.now_ns

    @property
    def command(self) -> tuple[float, float]:
        """Return the twist the robot drives in the next tick (0 after the timeout)."""
        if self._command_ns is None or self.now_ns - self._command_ns >= self._timeout_ns:
            return 0.0, 0.0
        return self._command

    # ------------------------------------------------------------------------- time
    def step(self) -> list[SimEvent]:
        """Advance one physics tick; return the events stamped within it, in stamp order."""
        t0 = self.now_ns
        t1 = t0 + self.physics_period_ns
        if self._appearance_ns and t0 >= self._next_appearance_ns:
            self.redraw_appearance()
            self._next_appearance_ns += self._appearance_ns
        dt = self.physics_period_ns / NS
        linear, angular = self.command
        pose0 = self.true_pose
        odom0 = self.odometry.pose
        motion = self.robot.move(pose0, linear, angular, dt)
        moved = motion.moved
        odom_twist = self.odometry.measure(motion.left, motion.right, dt)
        true_twist = (motion.linear, motion.angular)

        events: list[tuple[int, int, SimEvent]] = []
        start = self.settings.start_ns
        for stream, (p, q) in self._periods.items():
            index = self._next_index[stream]
            stamp = start + (index * p + q // 2) // q
            while stamp < t1:
                tau = (stamp - t0) / NS
                driving = tau < moved
                span = min(tau, moved)
                true_pose = integrate(pose0, *true_twist, span) if span > 0.0 else pose0
                if stream == 'odom':
                    odom_pose = integrate(odom0, *odom_twist, span) if span > 0.0 else odom0
                    events.append((stamp, 0, SimEvent(
                        stamp, 'odom', pose=_as_tuple(odom_pose),
                        twist=odom_twist if driving else (0.0, 0.0))))
                    events.append((stamp, 1, SimEvent(
                        stamp, 'ground_truth_odom', pose=_as_tuple(true_pose),
                        twist=true_twist if driving else (0.0, 0.0))))
                elif stream == 'range':
                    readings = self.proximity.read(true_pose)
                    for name, value in zip(self.sensor_names, readings):
                        events.append((stamp, 2, SimEvent(stamp, 'range', sensor=name,
                                                          value=float(value))))
                else:
                    events.extend(self._camera_events(stamp, true_pose))
                index += 1
                stamp = start + (index * p + q // 2) // q
            self._next_index[stream] = index

        self.true_pose = motion.pose
        if moved > 0.0:
            self.odometry.advance(*odom_twist, moved)
        else:
            self.odometry.twist = (0.0, 0.0)
        self.now_ns = t1
        events.sort(key=lambda item: (item[0], item[1]))
        return [event for _, _, event in events]

    def redraw_appearance(self) -> None:
        """
        Re-draw the world's colours, textures and light now, keeping its geometry.

        Called every ``appearance_period`` by :meth:`step`; callable at any time. ``world``
        becomes the new look; proximity, collisions and ground truth are unaffected (same
        geometry), and a renderer with ``set_world`` draws the new look from the next frame.
        """
        self.world = redraw_appearance(self.world, self._appearance_rng)
        self.appearance_changes += 1
        set_world = getattr(self.renderer, 'set_world', None)
        if set_world is not None:
            set_world(self.world)

    def _camera_events(self, stamp: int, pose: np.ndarray) -> list[tuple[int, int, SimEvent]]:
        pose_tuple = _as_tuple(pose)
        image = None
        if self.renderer is not None:
            image = self.renderer.render(pose_tuple, self.camera_rng)
        events = [(stamp, 3, SimEvent(stamp, 'image', pose=pose_tuple, image=image))]
        if self.settings.ground_truth:
            labels = label_grid(self.world, pose, self.sensor_names, self.distances)
            events.append((stamp, 4, SimEvent(stamp, 'ground_truth_labels', pose=pose_tuple,
                                              labels=labels)))
        return events

    def run_until(self, stamp_ns: int) -> list[SimEvent]:
        """Step until ``now_ns >= stamp_ns``; return all events of those ticks."""
        events: list[SimEvent] = []
        while self.now_ns < stamp_ns:
            events.extend(self.step())
        return events
