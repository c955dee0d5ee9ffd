"""
Differential-drive kinematics of a Thymio-class robot, with a body that collides.

Geometry (Thymio II, ROS 2 driver): wheel base 0.0935 m, wheel speed limit 0.14 m/s, so at
most 0.14 m/s straight and 2 · 0.14 / 0.0935 ≈ 3.0 rad/s on the spot. ``base_link`` is the
middle of the wheel axle, x forward.

The body is a disc of radius 0.06 m centred 0.03 m *ahead* of ``base_link``. The real
robot is about 11 × 11 cm with its axle set back: its front face, where the proximity
sensors sit, is about 8 cm ahead of the axle and its back about 3 cm behind. A disc
centred on the axle would leave the sensors 2 cm outside the body (a sensor could enter an
obstacle before the body touched it, making the readings and the ground truth of those
poses meaningless); this disc spans x ∈ [-0.03, 0.09], y ∈ [-0.06, 0.06] and contains all
five front sensors, so whenever the body is free every sensor is outside obstacles too.
The price is that turning on the spot moves the disc's centre on a 3 cm circle, so a turn
can collide, as the real robot's can.

Collisions: a motion whose end pose would overlap an obstacle or wall does not happen; the
robot stays where it was (no sliding: simple, and a stuck robot is what the explorer's
sensors must prevent in the first place). The wheels are then taken as stalled, so the
motion that odometry measures is the motion that happened. Each contact episode (a run of
consecutive blocked motions) counts as one collision.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .geometry2d import distance_to_obstacles
from .world import World
from ..core.thymio import BODY_OFFSET, BODY_RADIUS

WHEEL_BASE = 0.0935
MAX_WHEEL_SPEED = 0.14
MAX_LINEAR_SPEED = MAX_WHEEL_SPEED
MAX_ANGULAR_SPEED = 2.0 * MAX_WHEEL_SPEED / WHEEL_BASE

_TWO_PI = 2.0 * math.pi


def body_centres(poses: np.ndarray, body_offset: float = BODY_OFFSET) -> np.ndarray:
    """Return the centre of the body disc of a pose (3,) or of poses (N, 3)."""
    poses = np.asarray(poses, dtype=np.float64)
    return np.stack((poses[..., 0] + body_offset * np.cos(poses[..., 2]),
                     poses[..., 1] + body_offset * np.sin(poses[..., 2])), axis=-1)


#: How far beyond the body the clearance is measured (only nearby obstacles are tested).
_CLEARANCE_HORIZON = 0.25


def wheel_speeds(linear: float, angular: float,
                 wheel_base: float = WHEEL_BASE) -> tuple[float, float]:
    """Return the ``(left, right)`` wheel speeds of a body twist."""
    half = 0.5 * angular * wheel_base
    return linear - half, linear + half


def twist_from_wheels(left: float, right: float,
                      wheel_base: float = WHEEL_BASE) -> tuple[float, float]:
    """Return the body twist ``(linear, angular)`` of wheel speeds."""
    return 0.5 * (left + right), (right - left) / wheel_base


def clip_wheels(left: float, right: float,
                limit: float = MAX_WHEEL_SPEED) -> tuple[float, float]:
    """
    Scale both wheel speeds down together until neither exceeds ``limit``.

    Scaling both by the same factor keeps the ratio of linear to angular speed, i.e. the
    path's curvature and the turn direction; the robot follows the commanded arc, slower.
    Clipping each wheel separately would instead bend the path (a fast arc would turn into
    a spin). Non-finite speeds become 0.
    """
    if not (math.isfinite(left) and math.isfinite(right)):
        return 0.0, 0.0
    fastest = max(abs(left), abs(right))
    if fastest <= limit:
        return left, right
    scale = limit / fastest
    return left * scale, right * scale


def clip_command(linear: float, angular: float, wheel_base: float = WHEEL_BASE,
                 limit: float = MAX_WHEEL_SPEED) -> tuple[float, float]:
    """Return the twist the robot can actually drive for a commanded twist."""
    left, right = wheel_speeds(linear, angular, wheel_base)
    clipped = clip_wheels(left, right, limit)
    if clipped == (left, right):
        return linear, angular  # drivable as is: spare it the rounding of a round trip
    return twist_from_wheels(*clipped, wheel_base)


def integrate(pose: np.ndarray | tuple[float, float, float], linear: float, angular: float,
              dt: float) -> np.ndarray:
    """
    Return the pose after driving a constant twist for ``dt`` seconds (exact arc).

    Written as a chord of length ``v·dt·sinc(w·dt/2)`` at the mid-arc heading, which is
    exact for any turn rate and, unlike ``v/w·(sin θ1 − sin θ0)``, has no cancellation
    when ``w`` is tiny. Plain ``math`` on scalars: this runs every physics tick.
    """
    x, y, yaw = float(pose[0]), float(pose[1]), float(pose[2])
    half = 0.5 * angular * dt
    if abs(half) > 1e-6:
        sinc = math.sin(half) / half
    else:
        sinc = 1.0 - half * half / 6.0
    chord = linear * dt * sinc
    heading = yaw + half
    new_yaw = (yaw + 2.0 * half + math.pi) % _TWO_PI - math.pi
    return np.array([x + chord * math.cos(heading), y + chord * math.sin(heading), new_yaw])


@dataclass(frozen=True)
class Motion:
    """What one :meth:`DiffDrive.move` did: where it ended and the twist that happened."""

    pose: np.ndarray
    left: float  # wheel speeds actually driven (0 when blocked)
    right: float
    linear: float
    angular: float
    moved: float  # seconds of the step during which the robot moved with that twist
    blocked: bool


class DiffDrive:
    """The robot's body in a world: drives twists, refusing motions that would collide."""

    def __init__(self, world: World, wheel_base: float = WHEEL_BASE,
                 max_wheel_speed: float = MAX_WHEEL_SPEED, body_radius: float = BODY_RADIUS,
                 body_offset: float = BODY_OFFSET, max_substep: float = 0.005) -> None:
        """
        Drive in ``world``; ``max_substep`` (m) bounds how far the body moves per check.

        Collisions are checked at the end of each substep, so a long ``dt`` cannot carry
        the body through a thin wall.
        """
        self.world = world
        self.wheel_base = float(wheel_base)
        self.max_wheel_speed = float(max_wheel_speed)
        self.body_radius = float(body_radius)
        self.body_offset = float(body_offset)
        self.max_substep = float(max_substep)
        #: Contact episodes so far.
        self.collisions = 0
        #: Motions refused so far (every blocked step of every episode).
        self.blocked_steps = 0
        self._in_contact = False
        # A body centre known to be free and its distance to the nearest obstacle: a centre
        # closer to it than that distance minus the radius is free without a full test.
        self._free_centre: tuple[float, float] | None = None
        self._free_distance = 0.0

    def body_centre(self, pose: np.ndarray) -> np.ndarray:
        """Return the centre of the body disc of ``pose`` (or of (N, 3) poses)."""
        return body_centres(pose, self.body_offset)

    def overlaps(self, pose: np.ndarray) -> bool:
        """Return whether the body at ``pose`` overlaps an obstacle or the arena walls."""
        return not self._free(pose)

    def _free(self, pose: np.ndarray) -> bool:
        cx = float(pose[0]) + self.body_offset * math.cos(float(pose[2]))
        cy = float(pose[1]) + self.body_offset * math.sin(float(pose[2]))
        known = self._free_centre
        if known is not None and math.hypot(cx - known[0], cy - known[1]) < (
                self._free_distance - self.body_radius - 1e-9):
            return True
        horizon = self.body_radius + _CLEARANCE_HORIZON
        distance = float(distance_to_obstacles(self.world, np.array([[cx, cy]]),
                                               max_distance=horizon)[0])
        if distance > self.body_radius:
            self._free_centre, self._free_distance = (cx, cy), min(distance, horizon)
            return True
        return False

    def move(self, pose: np.ndarray, linear: float, angular: float, dt: float) -> Motion:
        """
        Drive the (clipped) twist for ``dt`` seconds from ``pose``; return what happened.

        The motion stops at the last collision-free substep; the wheels count as stalled
        for the rest of the step (``moved`` says for how long the twist was driven).
        """
        left, right = clip_wheels(*wheel_speeds(linear, angular, self.wheel_base),
                                  self.max_wheel_speed)
        linear, angular = twist_from_wheels(left, right, self.wheel_base)
        pose = np.asarray(pose, dtype=np.float64)
        if dt <= 0.0 or (linear == 0.0 and angular == 0.0):
            return Motion(pose.copy(), left, right, linear, angular, max(dt, 0.0), False)
        reach = (abs(linear) + abs(angular) * self.body_offset) * dt
        substeps = max(1, math.ceil(reach / self.max_substep))
        sub_dt = dt / substeps
        moved = 0.0
        current = pose
        blocked = False
        for index in range(substeps):
            candidate = integrate(pose, linear, angular, (index + 1) * sub_dt)
            if not self._free(candidate):
                blocked = True
                break
            current, moved = candidate, (index + 1) * sub_dt
        if blocked:
            self.blocked_steps += 1
            if not self._in_contact:
                self.collisions += 1
            self._in_contact = True
        else:
            self._in_contact = False
        if moved == 0.0:
            return Motion(pose.copy(), 0.0, 0.0, 0.0, 0.0, 0.0, True)
        return Motion(current, left, right, linear, angular, moved, blocked)

    def step(self, pose: np.ndarray, linear: float, angular: float, dt: float) -> np.ndarray:
        """Return the pose after driving the twist for ``dt`` seconds (see :meth:`move`)."""
        return self.move(pose, linear, angular, dt).pose
