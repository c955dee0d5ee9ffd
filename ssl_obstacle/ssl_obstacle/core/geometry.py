"""
SE(2) geometry and odometry interpolation, vectorised over numpy arrays.

Poses are arrays whose last axis is ``(x, y, yaw)``. Stamps are integer nanoseconds, as in
ROS headers, so that ordering and equality are exact (float seconds lose precision after a
few days of uptime and would make online and offline labels differ).
"""

from __future__ import annotations

import numpy as np

TWO_PI = 2.0 * np.pi


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Map angles to [-pi, pi) so that differences near the seam compare correctly."""
    return (np.asarray(angle) + np.pi) % TWO_PI - np.pi


def relative_pose(origin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """
    Return ``origin^-1 ∘ target``: where ``target`` lies in the frame of ``origin``.

    Both arguments broadcast against each other, so one reading's pose can be related to
    many frames' poses in one call, which is how the label rule stays vectorised.
    """
    origin = np.asarray(origin, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    dx = target[..., 0] - origin[..., 0]
    dy = target[..., 1] - origin[..., 1]
    cos = np.cos(origin[..., 2])
    sin = np.sin(origin[..., 2])
    return np.stack(
        (cos * dx + sin * dy, -sin * dx + cos * dy, wrap_angle(target[..., 2] - origin[..., 2])),
        axis=-1,
    )


def compose(pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Return ``pose ⊕ delta``: apply a motion expressed in the pose's own frame."""
    pose = np.asarray(pose, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    cos = np.cos(pose[..., 2])
    sin = np.sin(pose[..., 2])
    return np.stack(
        (
            pose[..., 0] + cos * delta[..., 0] - sin * delta[..., 1],
            pose[..., 1] + sin * delta[..., 0] + cos * delta[..., 1],
            wrap_angle(pose[..., 2] + delta[..., 2]),
        ),
        axis=-1,
    )


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z) of a quaternion; roll and pitch are irrelevant on the floor."""
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion ``(x, y, z, w)`` of a pure rotation about z."""
    half = 0.5 * yaw
    return 0.0, 0.0, float(np.sin(half)), float(np.cos(half))


class PoseHistory:
    """
    A bounded, time-ordered odometry history that interpolates poses at any stamp.

    Samples live in preallocated numpy arrays with twice the capacity; appending is O(1)
    amortised (the newest samples are copied to the front when the arrays fill), lookups are
    a single ``searchsorted``. Interpolation is linear in x and y and along the shortest arc
    in yaw, so a robot turning through ±pi does not spin the long way round.
    """

    def __init__(self, capacity: int = 4096) -> None:
        """Hold at most ``capacity`` samples; the oldest give way beyond that."""
        if capacity < 2:
            raise ValueError('PoseHistory needs room for at least two samples')
        self.capacity = int(capacity)
        self._stamps = np.empty(2 * self.capacity, dtype=np.int64)
        self._poses = np.empty((2 * self.capacity, 3), dtype=np.float64)
        self._start = 0
        self._end = 0
        # The newest stamp as a Python int: odometry arrives in order almost always, and
        # comparing against it is what makes the common append cheap.
        self._last: int | None = None

    def __len__(self) -> int:
        """Return how many samples are held."""
        return self._end - self._start

    def clear(self) -> None:
        """Forget every sample (used when the stream restarts)."""
        self._start = self._end = 0
        self._last = None

    @property
    def stamps(self) -> np.ndarray:
        """Stamps of the samples held, oldest first (a view: do not modify)."""
        return self._stamps[self._start:self._end]

    @property
    def poses(self) -> np.ndarray:
        """Poses of the samples held, oldest first (a view: do not modify)."""
        return self._poses[self._start:self._end]

    @property
    def first_stamp(self) -> int | None:
        """Oldest stamp held: poses before it are unknown."""
        return int(self._stamps[self._start]) if self._end > self._start else None

    @property
    def last_stamp(self) -> int | None:
        """Newest stamp held: poses after it are unknown."""
        return self._last

    def insert(self, stamp: int, pose: np.ndarray | tuple[float, float, float]) -> bool:
        """
        Insert a sample in stamp order; return False for a duplicate stamp (ignored).

        Out-of-order samples are placed where they belong; deciding whether a sample is too
        late to accept is the caller's business (see :class:`~.labeler.Labeler`).
        """
        if self._end == self._stamps.shape[0]:
            self._compact()
        last = self._last
        if last is None or stamp > last:
            index = self._end
            self._last = stamp
        else:
            index = self._start + int(np.searchsorted(self.stamps, stamp))
            if self._stamps[index] == stamp:  # index < _end: stamp <= last
                return False
            self._stamps[index + 1:self._end + 1] = self._stamps[index:self._end].copy()
            self._poses[index + 1:self._end + 1] = self._poses[index:self._end].copy()
        self._stamps[index] = stamp
        self._poses[index] = pose
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1
        return True

    def _compact(self) -> None:
        count = len(self)
        self._stamps[:count] = self._stamps[self._start:self._end].copy()
        self._poses[:count] = self._poses[self._start:self._end].copy()
        self._start, self._end = 0, count

    def drop_before(self, stamp: int) -> None:
        """Forget samples no longer needed, keeping one at or before ``stamp`` as a bracket."""
        index = int(np.searchsorted(self.stamps, stamp, side='right')) - 1
        if index > 0:
            self._start += index

    def interpolate(self, stamps: np.ndarray,
                    max_gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """
        Poses at ``stamps`` and a mask of which could be interpolated.

        A stamp is valid when it lies within the history (inclusive); outside it the pose is
        unknown (NaN), never extrapolated, because an extrapolated pose would produce a
        wrong label. With ``max_gap`` (ns), a stamp between two samples farther apart than
        that is unknown too: across a gap in odometry the robot may have turned or stopped,
        and a straight line between the samples would be a guess.
        """
        stamps = np.asarray(stamps, dtype=np.int64)
        known_stamps, known_poses = self.stamps, self.poses
        count = len(known_stamps)
        if count == 0:
            return np.full((*stamps.shape, 3), np.nan), np.zeros(stamps.shape, dtype=bool)
        valid = (stamps >= known_stamps[0]) & (stamps <= known_stamps[-1])
        if count == 1:
            out = np.full((*stamps.shape, 3), np.nan)
            out[valid] = known_poses[0]
            return out, valid
        upper = np.searchsorted(known_stamps, stamps, side='left')
        np.minimum(np.maximum(upper, 1, out=upper), count - 1, out=upper)
        lower = upper - 1
        t0 = known_stamps[lower]
        alpha = (stamps - t0) / (known_stamps[upper] - t0)
        np.minimum(np.maximum(alpha, 0.0, out=alpha), 1.0, out=alpha)
        p0 = known_poses[lower]
        delta = known_poses[upper] - p0
        delta[..., 2] = wrap_angle(delta[..., 2])
        result = p0 + alpha[..., None] * delta
        result[..., 2] = wrap_angle(result[..., 2])
        if max_gap is not None:
            across = known_stamps[upper] - t0 > max_gap
            if across.any():
                at_sample = (stamps == t0) | (stamps == known_stamps[upper])
                valid &= ~across | at_sample
        result[~valid] = np.nan
        return result, valid

    def in_gap(self, stamp: int, max_gap: int) -> bool:
        """Whether ``stamp`` lies strictly between two samples more than ``max_gap`` apart."""
        stamps = self.stamps
        upper = int(np.searchsorted(stamps, stamp, side='left'))
        if upper == 0 or upper >= len(stamps) or stamps[upper] == stamp:
            return False
        return int(stamps[upper]) - int(stamps[upper - 1]) > max_gap
