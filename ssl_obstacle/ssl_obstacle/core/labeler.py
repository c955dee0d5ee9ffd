"""The self-supervised label rule of Nava et al. 2019, as an incremental stream processor.

Frames, proximity readings and odometry arrive in any interleaving. Each frame and reading
waits until odometry *settles* around its stamp, then all of them are processed in stamp
order, so the labels depend only on the stamps and values of the messages, not on the order
in which a network or a bag delivered them (within ``reorder_window``). Online node and
offline export feed this same class, which is what makes their labels identical.

Ordering rules (refining DESIGN.md §5, see docs/architecture.md):

* ``newest`` is the largest stamp seen on any stream; the *watermark* is
  ``newest - reorder_window``. The *horizon* ``H`` is the newest odometry stamp at or below
  the watermark: odometry up to ``H`` will not change any more, since anything that still
  arrives is newer than the watermark.
* A frame has key ``t``; a reading has key ``t' + past_window`` so that every frame it may
  label (stamps up to ``t' + past_window``) is already in the buffer when it is applied.
  Items with ``key <= H`` are processed in key order, frames before readings on ties.
* After processing the items up to each settled odometry sample ``u``, frames are finalised
  when every cell is known, when ``t + future_window + past_window <= u`` (every reading
  that could label them has been applied), or when the robot, at ``u - past_window``, is
  farther than ``max(d) + 2 tol_x`` from the frame.
* An item whose key is at or below the processed horizon is *late* and rejected; a stamp
  more than ``time_jump_threshold`` behind ``newest`` means the stream restarted (a bag
  played in a loop): everything pending is dropped and labeling starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import enum
import heapq
import itertools
from typing import Any

import numpy as np

from .frame_buffer import FrameRecord, PoseIndexedFrameBuffer
from .geometry import PoseHistory, relative_pose
from .params import LabelParams

NS_PER_S = 1_000_000_000
#: Slack on tolerance comparisons, so that hand-computed boundary cases (|dx - d| == tol)
#: are not decided by floating-point rounding.
EPSILON = 1e-9

_FRAME, _READING = 0, 1


class Outcome(enum.Enum):
    """What happened to one input; callers log and count the non-accepted ones."""

    ACCEPTED = 'accepted'
    LATE = 'late'
    DUPLICATE = 'duplicate'
    BAD_VALUE = 'bad_value'
    RESET = 'reset'  # accepted, but the stream restarted first


@dataclass
class LabeledResult:
    """A finalised frame with at least one known cell."""

    stamp: int
    pose: np.ndarray
    payload: Any
    labels: np.ndarray  # float32 (S, D), NaN where unknown
    counts: np.ndarray  # uint8 (S, D)
    reason: str

    @property
    def known_cells(self) -> int:
        return int(np.count_nonzero(self.counts))


@dataclass
class LabelerCounters:
    """Everything the labeler counts; reported in node status and export summaries."""

    frames_in: int = 0
    readings_in: int = 0
    odometry_in: int = 0
    frames_labeled: int = 0
    frames_unlabeled: int = 0
    frames_evicted: int = 0
    readings_evicted: int = 0
    frames_late: int = 0
    readings_late: int = 0
    odometry_late: int = 0
    duplicates: int = 0
    bad_values: int = 0
    no_odometry: int = 0
    resets: int = 0
    dropped_on_reset: int = 0
    final_complete: int = 0
    final_window: int = 0
    final_reach: int = 0
    final_flush: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(order=True)
class _Waiting:
    key: int
    kind: int
    seq: int
    stamp: int = field(compare=False)
    payload: Any = field(compare=False, default=None)
    sensors: np.ndarray | None = field(compare=False, default=None)
    hits: np.ndarray | None = field(compare=False, default=None)


class Labeler:
    """Turns frames, proximity readings and odometry into labeled frames (pure, no ROS)."""

    def __init__(self, params: LabelParams | None = None) -> None:
        self.params = params or LabelParams()
        p = self.params
        self.num_sensors = len(p.sensor_names)
        self.distances = np.asarray(p.distances, dtype=np.float64)
        self.sensor_index = {name: i for i, name in enumerate(p.sensor_names)}
        self._past = int(round(p.past_window * NS_PER_S))
        self._future = int(round(p.future_window * NS_PER_S))
        self._reorder = int(round(p.reorder_window * NS_PER_S))
        self._jump = int(round(p.time_jump_threshold * NS_PER_S))
        self._max_age = int(round(p.max_age * NS_PER_S))
        self._tol_x = p.tol_x + EPSILON
        self._tol_y = p.tol_y + EPSILON
        self._tol_theta = p.tol_theta + EPSILON
        self._reach = p.reach + EPSILON
        self._out_of_reach_sq = p.out_of_reach ** 2
        self.counters = LabelerCounters()
        self._history = PoseHistory(p.odom_history)
        self._buffer = PoseIndexedFrameBuffer(
            p.max_pending_frames, self.num_sensors, len(self.distances), p.reach)
        self._seq = itertools.count()
        self._ready: list[LabeledResult] = []
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self._waiting: list[_Waiting] = []
        self._waiting_frame_stamps: set[int] = set()
        self._pending_frame_stamps: set[int] = set()
        self._newest: int | None = None
        self._horizon: int | None = None  # last settled odometry stamp processed

    def reset(self) -> int:
        """Drop everything pending (stream restarted); return how many frames were dropped."""
        dropped = len(self._buffer.clear()) + len(self._waiting_frame_stamps)
        self._history.clear()
        self._reset_state()
        return dropped

    @property
    def pending_frames(self) -> int:
        """Frames in the pose-indexed buffer, collecting readings."""
        return len(self._buffer)

    @property
    def waiting_items(self) -> int:
        """Frames and readings waiting for odometry to settle around their stamps."""
        return len(self._waiting)

    @property
    def odometry_samples(self) -> int:
        return len(self._history)

    @property
    def newest_stamp(self) -> int | None:
        return self._newest

    # ------------------------------------------------------------------ input
    def _admit(self, stamp: int) -> Outcome | None:
        """Handle time going backwards; return an outcome if the input must not be used."""
        if self._newest is None:
            self._newest = stamp
            return None
        if stamp < self._newest - self._jump:
            self.counters.resets += 1
            self.counters.dropped_on_reset += self.reset()
            self._newest = stamp
            return Outcome.RESET
        if stamp > self._newest:
            self._newest = stamp
        return None

    def _settled_limit(self) -> int | None:
        """Newest odometry stamp at or below the watermark: odometry up to it is final.

        It depends only on the stamps seen so far, not on when :meth:`poll` ran, so eager
        (online) and batched (offline) use reject exactly the same inputs as late.
        """
        stamps = self._history.stamps
        if len(stamps) == 0 or self._newest is None:
            return self._horizon
        index = int(np.searchsorted(stamps, self._newest - self._reorder, side='right'))
        limit = int(stamps[index - 1]) if index > 0 else None
        if self._horizon is not None and (limit is None or limit < self._horizon):
            return self._horizon
        return limit

    def _is_late(self, key: int) -> bool:
        limit = self._settled_limit()
        return limit is not None and key <= limit

    def add_odometry(self, stamp: int, x: float, y: float, yaw: float) -> Outcome:
        """Add one odometry sample (odom frame)."""
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(yaw)):
            self.counters.bad_values += 1
            return Outcome.BAD_VALUE
        admitted = self._admit(stamp)
        if self._is_late(stamp):
            self.counters.odometry_late += 1
            return Outcome.LATE
        if not self._history.insert(stamp, (x, y, yaw)):
            self.counters.duplicates += 1
            return Outcome.DUPLICATE
        self.counters.odometry_in += 1
        return admitted or Outcome.ACCEPTED

    def add_frame(self, stamp: int, payload: Any = None) -> Outcome:
        """Add a camera frame; ``payload`` (e.g. the resized image) is returned with its labels."""
        admitted = self._admit(stamp)
        if self._is_late(stamp):
            self.counters.frames_late += 1
            return Outcome.LATE
        if stamp in self._waiting_frame_stamps or stamp in self._pending_frame_stamps:
            self.counters.duplicates += 1
            return Outcome.DUPLICATE
        self.counters.frames_in += 1
        self._waiting_frame_stamps.add(stamp)
        heapq.heappush(self._waiting, _Waiting(stamp, _FRAME, next(self._seq), stamp, payload))
        return admitted or Outcome.ACCEPTED

    def add_readings(self, stamp: int, sensors: np.ndarray | list[int],
                     hits: np.ndarray | list[bool]) -> Outcome:
        """Add readings taken at one stamp: sensor indices and whether each saw an obstacle."""
        sensors = np.asarray(sensors, dtype=np.intp).reshape(-1)
        hits = np.asarray(hits, dtype=bool).reshape(-1)
        if sensors.shape != hits.shape or sensors.size == 0 or \
                sensors.min() < 0 or sensors.max() >= self.num_sensors:
            self.counters.bad_values += 1
            return Outcome.BAD_VALUE
        admitted = self._admit(stamp)
        key = stamp + self._past
        if self._is_late(key):
            self.counters.readings_late += sensors.size
            return Outcome.LATE
        self.counters.readings_in += sensors.size
        heapq.heappush(self._waiting, _Waiting(
            key, _READING, next(self._seq), stamp, None, sensors, hits))
        return admitted or Outcome.ACCEPTED

    def add_reading(self, stamp: int, sensor: int | str, hit: bool) -> Outcome:
        """Add one sensor's reading (a convenience over :meth:`add_readings`)."""
        if isinstance(sensor, str):
            if sensor not in self.sensor_index:
                self.counters.bad_values += 1
                return Outcome.BAD_VALUE
            sensor = self.sensor_index[sensor]
        return self.add_readings(stamp, [sensor], [hit])

    # ------------------------------------------------------------------ output
    def poll(self) -> list[LabeledResult]:
        """Process what has settled; return the frames finalised since the last call.

        Call it after every input (online) or every few hundred inputs (offline): the
        labels are the same either way, only the latency differs.
        """
        self._advance()
        ready, self._ready = self._ready, []
        return ready

    def flush(self) -> list[LabeledResult]:
        """End of stream: process everything odometry covers, finalise every pending frame."""
        self._advance(final=True)
        for item in self._waiting:  # beyond the last odometry sample: no pose, no label
            self._count_no_odometry(item)
        self._waiting.clear()
        self._waiting_frame_stamps.clear()
        for slot in list(self._buffer.iter_oldest()):
            self._finalise(slot, 'flush')
        ready, self._ready = self._ready, []
        return ready

    # ------------------------------------------------------------------ processing
    def _count_no_odometry(self, item: _Waiting) -> None:
        if item.kind == _FRAME:
            self.counters.no_odometry += 1
            self._waiting_frame_stamps.discard(item.stamp)
        else:
            self.counters.no_odometry += int(item.sensors.size)

    def _bound_waiting(self) -> None:
        """Keep the waiting queue bounded by count and age (odometry may have stopped).

        Runs after settled items were processed, so it only ever evicts items that
        odometry has not covered: a safety net, not part of the label rule.
        """
        limit_age = self._newest - self._max_age if self._newest is not None else None
        while self._waiting and (
                len(self._waiting) > self.params.max_waiting
                or (limit_age is not None and self._waiting[0].stamp < limit_age)):
            item = heapq.heappop(self._waiting)
            if item.kind == _FRAME:
                self.counters.frames_evicted += 1
                self._waiting_frame_stamps.discard(item.stamp)
            else:
                self.counters.readings_evicted += int(item.sensors.size)

    def _advance(self, final: bool = False) -> None:
        """Process every item and odometry sample that has settled since the last call."""
        history = self._history
        if len(history) == 0 or self._newest is None:
            return
        stamps = history.stamps
        horizon = self._horizon
        if horizon is not None and stamps[-1] <= horizon:
            self._bound_waiting()
            return  # no odometry newer than what is already settled
        watermark = stamps[-1] if final else self._newest - self._reorder
        end = int(np.searchsorted(stamps, watermark, side='right'))
        start = 0 if horizon is None else int(np.searchsorted(stamps, horizon, side='right'))
        if end <= start:
            self._bound_waiting()
            return
        settled = stamps[start:end].copy()
        batch: list[_Waiting] = []
        while self._waiting and self._waiting[0].key <= settled[-1]:
            batch.append(heapq.heappop(self._waiting))
        # One interpolation for all items and for the robot's pose at every settled sample
        # (where readings have been applied up to, used by the reach rule).
        query = np.empty(len(batch) + len(settled), dtype=np.int64)
        for index, item in enumerate(batch):
            query[index] = item.stamp
        query[len(batch):] = settled - self._past
        poses, valid = history.interpolate(query)
        first = 0
        for index, odom_stamp in enumerate(settled):
            last = first
            while last < len(batch) and batch[last].key <= odom_stamp:
                last += 1
            if last > first:
                self._process(batch[first:last], poses[first:last], valid[first:last])
                first = last
            robot = len(batch) + index
            self._finalise_settled(int(odom_stamp), poses[robot], bool(valid[robot]))
            self._evict_old_frames(int(odom_stamp))
        self._horizon = int(settled[-1])
        history.drop_before(self._horizon - self._past - self._max_age)
        self._bound_waiting()

    def _process(self, batch: list[_Waiting], poses: np.ndarray, valid: np.ndarray) -> None:
        """Insert frames and apply readings of one settled interval, in key order."""
        index = 0
        while index < len(batch):
            item = batch[index]
            if item.kind == _FRAME:
                self._waiting_frame_stamps.discard(item.stamp)
                if not valid[index]:
                    self._count_no_odometry(item)
                else:
                    self._insert_frame(item, poses[index])
                index += 1
                continue
            # Readings with the same stamp share one pose and one neighbourhood query.
            group_end = index + 1
            while group_end < len(batch) and batch[group_end].kind == _READING and \
                    batch[group_end].stamp == item.stamp:
                group_end += 1
            group = batch[index:group_end]
            if not valid[index]:
                for reading in group:
                    self._count_no_odometry(reading)
            elif len(group) == 1:
                self._apply_readings(item.stamp, poses[index], item.sensors, item.hits)
            else:
                sensors = np.concatenate([r.sensors for r in group])
                hits = np.concatenate([r.hits for r in group])
                self._apply_readings(item.stamp, poses[index], sensors, hits)
            index = group_end

    def _insert_frame(self, item: _Waiting, pose: np.ndarray) -> None:
        if self._buffer.full:
            oldest = self._buffer.oldest()
            record = self._buffer.remove(oldest)
            self._pending_frame_stamps.discard(record.stamp)
            self.counters.frames_evicted += 1
        self._buffer.add(item.stamp, pose, item.payload)
        self._pending_frame_stamps.add(item.stamp)

    def _apply_readings(self, stamp: int, pose: np.ndarray, sensors: np.ndarray,
                        hits: np.ndarray) -> None:
        """The label rule (DESIGN.md §5), vectorised over the frames near the reading."""
        buffer = self._buffer
        slots = buffer.near(pose[0], pose[1])
        if slots.size == 0:
            return
        frame_stamps = buffer.stamps[slots]
        in_window = (frame_stamps - self._past <= stamp) & (stamp <= frame_stamps + self._future)
        rel = relative_pose(buffer.poses[slots], pose)
        aligned = (np.abs(rel[:, 1]) <= self._tol_y) & (np.abs(rel[:, 2]) <= self._tol_theta)
        candidates = in_window & aligned
        if not candidates.any():
            return
        slots = slots[candidates]
        match = np.abs(rel[candidates, 0][:, None] - self.distances[None, :]) <= self._tol_x
        rows = match.any(axis=1)
        if not rows.any():
            return
        slots, match = slots[rows], match[rows].astype(np.uint16)
        if np.unique(sensors).size != sensors.size:  # the same sensor twice: add one by one
            for sensor, hit in zip(sensors, hits):
                self._accumulate(slots, np.array([sensor]), np.array([hit]), match)
        else:
            self._accumulate(slots, sensors, hits, match)
        complete = (buffer.counts[slots] > 0).all(axis=(1, 2))
        for slot in slots[complete]:
            self._finalise(int(slot), 'complete')

    def _accumulate(self, slots: np.ndarray, sensors: np.ndarray, hits: np.ndarray,
                    match: np.ndarray) -> None:
        buffer = self._buffer
        index = (slots[:, None], sensors[None, :])
        buffer.counts[index] += match[:, None, :]
        hit_sensors = sensors[hits]
        if hit_sensors.size:
            buffer.positives[slots[:, None], hit_sensors[None, :]] += match[:, None, :]

    def _finalise_settled(self, horizon: int, robot_pose: np.ndarray, robot_known: bool) -> None:
        buffer = self._buffer
        done_before = horizon - self._future - self._past
        expired = [slot for slot in itertools.takewhile(
            lambda s: buffer.stamps[s] <= done_before, buffer.iter_oldest())]
        for slot in expired:
            self._finalise(slot, 'window')
        if not robot_known or len(buffer) == 0:
            return
        slots = buffer.active_slots()
        offset = buffer.poses[slots, :2] - robot_pose[:2]
        far = np.einsum('ij,ij->i', offset, offset) > self._out_of_reach_sq
        # Only frames taken before the robot got there: a frame newer than the robot's
        # position in time has not had the chance to be approached yet.
        far &= buffer.stamps[slots] <= horizon - self._past
        for slot in slots[far]:
            self._finalise(int(slot), 'reach')

    def _evict_old_frames(self, horizon: int) -> None:
        limit = horizon - self._max_age
        old = [slot for slot in itertools.takewhile(
            lambda s: self._buffer.stamps[s] < limit, self._buffer.iter_oldest())]
        for slot in old:
            record = self._buffer.remove(slot)
            self._pending_frame_stamps.discard(record.stamp)
            self.counters.frames_evicted += 1

    def _finalise(self, slot: int, reason: str) -> None:
        record: FrameRecord = self._buffer.remove(slot)
        self._pending_frame_stamps.discard(record.stamp)
        counters = self.counters
        if reason == 'complete':
            counters.final_complete += 1
        elif reason == 'window':
            counters.final_window += 1
        elif reason == 'reach':
            counters.final_reach += 1
        else:
            counters.final_flush += 1
        known = record.counts > 0
        if not known.any():
            self.counters.frames_unlabeled += 1
            return
        labels = np.full(record.counts.shape, np.nan, dtype=np.float32)
        labels[known] = record.positives[known] / record.counts[known]
        self.counters.frames_labeled += 1
        self._ready.append(LabeledResult(
            stamp=record.stamp,
            pose=record.pose,
            payload=record.payload,
            labels=labels,
            counts=np.minimum(record.counts, 255).astype(np.uint8),
            reason=reason,
        ))
