"""
The self-supervised label rule of Nava et al. 2019, as an incremental stream processor.

Frames, proximity readings and odometry arrive in any interleaving. Each frame and reading
waits until odometry *settles* around its stamp, then all of them are processed in stamp
order, so the labels depend only on the stamps and values of the messages, not on the order
in which a network or a bag delivered them (within ``reorder_window``), nor on how often
:meth:`Labeler.poll` is called. Online node and offline export feed this same class, which
is what makes their labels identical.

Ordering rules (refining DESIGN.md §5, see docs/architecture.md):

* ``newest`` is the largest stamp seen on any stream; the *watermark* is
  ``newest - reorder_window``. The *horizon* ``H`` is the newest odometry stamp at or below
  the watermark: odometry up to ``H`` will not change any more, since anything that still
  arrives is newer than the watermark.
* A frame has key ``t``; a reading has key ``t' + past_window`` so that every frame it may
  label (stamps up to ``t' + past_window``) is already in the buffer when it is applied.
  Items with ``key <= H`` are processed in key order, frames before readings on ties;
  readings sharing a stamp are applied together (their counts simply add up).
* After processing the items up to each settled odometry sample ``u``, frames are finalised
  when every cell is known, when ``t + future_window + past_window <= u`` (every reading
  that could label them has been applied), or when the robot, at ``u - past_window``, is
  farther than ``max(d) + 2 tol_x`` from the frame (frames taken after ``u - past_window``
  excepted). Frames finalised at the same step come out in stamp order.
* An input whose key (odometry: its stamp) is at or below ``H`` *as computed from the
  stamps seen so far* is *late* and rejected, whether or not :meth:`Labeler.poll` has run
  since: eager and batched polling accept exactly the same inputs. A stamp more than
  ``time_jump_threshold`` behind ``newest`` means the stream restarted (a bag played in a
  loop) when it is also that far behind the last stamp of *its own* stream (odometry, the
  camera, or the same proximity sensors): the run that ended is finished as at the end of
  a stream (its pending frames come out of the next poll) and labeling starts afresh.
  A stream that merely lags
  the others (a slow camera driver, a skewed clock) never moves backwards within itself, so
  its messages are rejected as late instead of wiping everyone's work.
* Poses are never interpolated between two odometry samples more than
  ``max_odometry_gap`` apart: frames and readings stamped inside such a gap are dropped
  and counted (``frames_in_gap``, ``readings_in_gap``), each gap is counted once when it
  settles (``odometry_gaps``, the latest in :attr:`Labeler.last_gap`).
* At the end of a stream (:meth:`Labeler.flush`) odometry up to its last sample counts as
  settled; readings taken up to that sample are applied too (their key may lie beyond it),
  then every pending frame is finalised.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from heapq import heappop, heappush
from itertools import count
from math import isfinite
from typing import Any, Sequence

import numpy as np

from .frame_buffer import PoseIndexedFrameBuffer
from .geometry import PoseHistory, TWO_PI
from .params import LabelParams

NS_PER_S = 1_000_000_000
# Keys of the input streams for time-jump detection; readings use their sensors tuple.
_ODOMETRY_STREAM = 'odometry'
_CAMERA_STREAM = 'camera'
#: Slack on tolerance comparisons, so that hand-computed boundary cases (|dx - d| == tol)
#: are not decided by floating-point rounding.
EPSILON = 1e-9

# A waiting item is a tuple, so that the heap compares keys in C:
#   frame:   (key, _FRAME, seq, stamp, payload, None)
#   reading: (key, _READING, seq, stamp, sensors, hits)   sensors, hits: tuples
# ``seq`` is unique, so comparisons never reach the payload.
_FRAME, _READING = 0, 1
_KEY, _KIND, _SEQ, _STAMP, _DATA, _HITS = range(6)


class Outcome(Enum):
    """What happened to one input; callers log and count the non-accepted ones."""

    ACCEPTED = 'accepted'
    LATE = 'late'
    DUPLICATE = 'duplicate'
    BAD_VALUE = 'bad_value'
    RESET = 'reset'  # accepted, but the stream restarted first


@dataclass
class LabeledResult:
    """
    A finalised frame with at least one known cell.

    The arrays are views into arrays shared by the frames one poll() returns (built in one
    go); each view covers only its own frame.
    """

    stamp: int
    pose: np.ndarray  # float64 (3,): x, y, yaw in the odometry frame
    payload: Any
    labels: np.ndarray  # float32 (S, D), NaN where unknown
    counts: np.ndarray  # uint8 (S, D), saturating at 255
    reason: str  # 'complete', 'window', 'reach' or 'flush'

    @property
    def known_cells(self) -> int:
        """Cells with at least one matching reading."""
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
    odometry_gaps: int = 0
    frames_in_gap: int = 0
    readings_in_gap: int = 0
    resets: int = 0
    flushed_on_reset: int = 0
    dropped_on_reset: int = 0
    final_complete: int = 0
    final_window: int = 0
    final_reach: int = 0
    final_flush: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain values, for status messages and export summaries."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _as_tuple(values: Any, dtype: type) -> tuple:
    """
    Flatten sensors or hits into a tuple of Python scalars, like ``np.asarray`` would.

    Lists and tuples of plain ints and bools (what the pipeline passes) skip numpy, which
    for one or five values costs more than the label rule itself.
    """
    if type(values) is list or type(values) is tuple:
        for value in values:
            if type(value) is not dtype:
                break
        else:
            return tuple(values)
    return tuple(np.asarray(values, dtype=np.intp if dtype is int else bool).reshape(-1).tolist())


class Labeler:
    """Turns frames, proximity readings and odometry into labeled frames (pure, no ROS)."""

    def __init__(self, params: LabelParams | None = None) -> None:
        """Label with ``params`` (default: the paper's rule and the Thymio's sensors)."""
        self.params = params or LabelParams()
        p = self.params
        self.num_sensors = len(p.sensor_names)
        self.distances = np.asarray(p.distances, dtype=np.float64)
        self.sensor_index = {name: i for i, name in enumerate(p.sensor_names)}
        self._past = round(p.past_window * NS_PER_S)
        self._future = round(p.future_window * NS_PER_S)
        self._reorder = round(p.reorder_window * NS_PER_S)
        self._jump = round(p.time_jump_threshold * NS_PER_S)
        self._max_age = round(p.max_age * NS_PER_S)
        self._max_gap = round(p.max_odometry_gap * NS_PER_S)
        #: (start, end) stamps of the latest odometry gap found, for the caller's log line.
        self.last_gap: tuple[int, int] | None = None
        self._tol_x = p.tol_x + EPSILON
        self._tol_y = p.tol_y + EPSILON
        self._tol_theta = p.tol_theta + EPSILON
        self._out_of_reach_sq = p.out_of_reach ** 2
        self.counters = LabelerCounters()
        self._history = PoseHistory(p.odom_history)
        # Cells a little wider than the reach: the tolerances carry EPSILON of slack, and a
        # frame a hair beyond ``reach`` that still matches must be among the neighbours.
        self._buffer = PoseIndexedFrameBuffer(
            p.max_pending_frames, self.num_sensors, len(self.distances), p.reach + 1e-6)
        self._seq = count()
        self._tallies: dict[tuple, np.ndarray] = {}
        # Finalised frames not yet returned: their tallies and poses, a batch per
        # finalisation step, plus (stamp, payload, reason) per frame. Labels are computed
        # for all of them at once when poll() or flush() hands them out.
        self._ready_tallies: list[np.ndarray] = []
        self._ready_poses: list[np.ndarray] = []
        self._ready_frames: list[tuple[int, Any, str]] = []
        #: Newest stamp before the last restart: messages of the old run still in flight
        #: (other topics, delivered late) are recognised by it and rejected as late.
        self._before_reset: int | None = None
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self._waiting: list[tuple] = []
        self._waiting_frame_stamps: set[int] = set()
        self._newest: int | None = None
        self._stream_last: dict[Any, int] = {}  # newest stamp per input stream
        self._horizon: int | None = None  # last settled odometry stamp processed

    def reset(self) -> int:
        """Drop everything pending (stream restarted); return how many frames were dropped."""
        dropped = self._buffer.clear() + len(self._waiting_frame_stamps)
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
        """Odometry samples held for interpolation."""
        return len(self._history)

    @property
    def newest_stamp(self) -> int | None:
        """Largest stamp seen on any stream since the last reset."""
        return self._newest

    # ------------------------------------------------------------------ input
    def _admit(self, stamp: int, stream: Any) -> Outcome | None:
        """Handle time going backwards; return ``Outcome.RESET`` when the stream restarted."""
        newest = self._newest
        if (self._before_reset is not None and newest is not None
                and newest + self._jump < stamp <= self._before_reset):
            # A straggler from before the restart: taking it would raise ``newest`` back
            # into the old run, and the new run's next message would look like a second
            # restart, dropping what the new run had collected.
            return Outcome.LATE
        last = self._stream_last.get(stream)
        if last is None or stamp > last:
            self._stream_last[stream] = stamp
        if newest is None:
            self._newest = stamp
            return None
        if stamp > newest:
            self._newest = stamp
            return None
        if stamp < newest - self._jump and last is not None and stamp < last - self._jump:
            # The run that ended is finished as at the end of a stream (its frames come out
            # of the next poll()), so a looping bag loses nothing; then labeling starts afresh.
            self._advance()  # what had settled, whatever the poll cadence was
            labeled_before = self.counters.frames_labeled
            self._finish_pending()
            self.counters.resets += 1
            self.counters.flushed_on_reset += self.counters.frames_labeled - labeled_before
            self.counters.dropped_on_reset += self.reset()
            self._before_reset = newest
            self._newest = stamp
            self._stream_last[stream] = stamp
            return Outcome.RESET
        return None

    def _settled_limit(self) -> int | None:
        """
        Newest odometry stamp at or below the watermark: odometry up to it is final.

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
        """Whether ``key`` is at or below the settled limit (call after :meth:`_admit`)."""
        horizon = self._horizon
        if horizon is not None and key <= horizon:
            return True
        if key > self._newest - self._reorder:
            return False  # above the watermark: nothing this new has settled
        limit = self._settled_limit()
        return limit is not None and key <= limit

    def add_odometry(self, stamp: int, x: float, y: float, yaw: float) -> Outcome:
        """Add one odometry sample (odom frame)."""
        if not (isfinite(x) and isfinite(y) and isfinite(yaw)):
            self.counters.bad_values += 1
            return Outcome.BAD_VALUE
        admitted = self._admit(stamp, _ODOMETRY_STREAM)
        if admitted is Outcome.LATE or self._is_late(stamp):
            self.counters.odometry_late += 1
            return Outcome.LATE
        if not self._history.insert(stamp, (x, y, yaw)):
            self.counters.duplicates += 1
            return Outcome.DUPLICATE
        self.counters.odometry_in += 1
        return admitted or Outcome.ACCEPTED

    def add_frame(self, stamp: int, payload: Any = None) -> Outcome:
        """Add a camera frame; ``payload`` (e.g. the resized image) is returned with its labels."""
        admitted = self._admit(stamp, _CAMERA_STREAM)
        if admitted is Outcome.LATE or self._is_late(stamp):
            self.counters.frames_late += 1
            return Outcome.LATE
        if stamp in self._waiting_frame_stamps or stamp in self._buffer:
            self.counters.duplicates += 1
            return Outcome.DUPLICATE
        self.counters.frames_in += 1
        self._waiting_frame_stamps.add(stamp)
        heappush(self._waiting, (stamp, _FRAME, next(self._seq), stamp, payload, None))
        return admitted or Outcome.ACCEPTED

    def add_readings(self, stamp: int, sensors: np.ndarray | list[int],
                     hits: np.ndarray | list[bool]) -> Outcome:
        """Add readings taken at one stamp: sensor indices and whether each saw an obstacle."""
        sensors = _as_tuple(sensors, int)
        hits = _as_tuple(hits, bool)
        if len(sensors) != len(hits) or not sensors or \
                min(sensors) < 0 or max(sensors) >= self.num_sensors:
            self.counters.bad_values += 1
            return Outcome.BAD_VALUE
        admitted = self._admit(stamp, sensors)
        key = stamp + self._past
        if admitted is Outcome.LATE or self._is_late(key):
            self.counters.readings_late += len(sensors)
            return Outcome.LATE
        self.counters.readings_in += len(sensors)
        heappush(self._waiting, (key, _READING, next(self._seq), stamp, sensors, hits))
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
        """
        Process what has settled; return the frames finalised since the last call.

        Call it after every input (online) or every few hundred inputs (offline): the
        labels are the same either way, only the latency differs.
        """
        self._advance()
        return self._take_ready()

    def flush(self) -> list[LabeledResult]:
        """End of stream: process everything odometry covers, finalise every pending frame."""
        self._finish_pending()
        return self._take_ready()

    def _finish_pending(self) -> None:
        """Finalise every pending frame as at the end of a stream (flush, restart)."""
        self._advance(final=True)
        # What is left has keys beyond the last odometry sample: frames without a pose, and
        # readings of which those taken up to the last sample still label older frames.
        tail = [heappop(self._waiting) for _ in range(len(self._waiting))]
        if tail:
            poses, valid = self._history.interpolate([item[_STAMP] for item in tail],
                                                     self._max_gap)
            self._process(tail, 0, len(tail), poses, valid.tolist())
        self._waiting_frame_stamps.clear()
        self._finalise(self._buffer.slots_in_order(), 'flush')

    def _take_ready(self) -> list[LabeledResult]:
        """Results of the frames finalised since the last call, labels computed in one go."""
        if not self._ready_frames:
            return []
        tallies = np.concatenate(self._ready_tallies)
        poses = np.concatenate(self._ready_poses)
        frames = self._ready_frames
        self._ready_tallies, self._ready_poses, self._ready_frames = [], [], []
        counts, positives = tallies[:, 0], tallies[:, 1]
        labels = np.full(counts.shape, np.nan, dtype=np.float32)
        np.divide(positives, counts, out=labels, where=counts > 0)  # float64, then rounded
        counts = np.minimum(counts, 255).astype(np.uint8)
        return [LabeledResult(stamp, pose, payload, label, count, reason)
                for (stamp, payload, reason), pose, label, count
                in zip(frames, poses, labels, counts)]

    # ------------------------------------------------------------------ processing
    def _bound_waiting(self) -> None:
        """
        Keep the waiting queue bounded by count and age (odometry may have stopped).

        Runs after settled items were processed, so it only ever evicts items that
        odometry has not covered: a safety net, not part of the label rule.
        """
        waiting = self._waiting
        limit_age = self._newest - self._max_age if self._newest is not None else None
        while waiting and (
                len(waiting) > self.params.max_waiting
                or (limit_age is not None and waiting[0][_STAMP] < limit_age)):
            item = heappop(waiting)
            if item[_KIND] == _FRAME:
                self.counters.frames_evicted += 1
                self._waiting_frame_stamps.discard(item[_STAMP])
            else:
                self.counters.readings_evicted += len(item[_DATA])

    def _advance(self, final: bool = False) -> None:
        """Process every item and odometry sample that has settled since the last call."""
        history = self._history
        last = history.last_stamp
        if last is None or self._newest is None:
            self._bound_waiting()  # odometry may never have started
            return
        horizon = self._horizon
        if horizon is not None and last <= horizon:
            self._bound_waiting()
            return  # no odometry newer than what is already settled
        stamps = history.stamps
        watermark = last if final else self._newest - self._reorder
        end = int(np.searchsorted(stamps, watermark, side='right'))
        start = 0 if horizon is None else int(np.searchsorted(stamps, horizon, side='right'))
        if end <= start:
            self._bound_waiting()
            return
        settled = stamps[start:end].tolist()
        limit = settled[-1]
        self._note_gaps(stamps[max(start - 1, 0):end])
        waiting = self._waiting
        batch = []
        while waiting and waiting[0][_KEY] <= limit:
            batch.append(heappop(waiting))
        # One interpolation for all items and for the robot's pose at every settled sample
        # (where readings have been applied up to, used by the reach rule).
        past = self._past
        query = [item[_STAMP] for item in batch]
        query.extend(u - past for u in settled)
        poses, valid = history.interpolate(query, self._max_gap)
        valid = valid.tolist()
        robot_xy = poses[len(batch):, :2]
        robot_known = valid[len(batch):]
        buffer = self._buffer
        count_items = len(batch)
        first = 0
        for index, odom_stamp in enumerate(settled):
            last_item = first
            while last_item < count_items and batch[last_item][_KEY] <= odom_stamp:
                last_item += 1
            if last_item > first:
                self._process(batch, first, last_item, poses, valid)
                first = last_item
            if len(buffer):
                self._finalise_settled(odom_stamp, robot_xy[index] if robot_known[index]
                                       else None)
        self._horizon = limit
        history.drop_before(limit - past - self._max_age)
        self._bound_waiting()

    def _note_gaps(self, stamps: np.ndarray) -> None:
        """Count the gaps between consecutive settled odometry samples (each seen once)."""
        if len(stamps) < 2:
            return
        gaps = (np.diff(stamps) > self._max_gap).nonzero()[0]
        if gaps.size:
            self.counters.odometry_gaps += int(gaps.size)
            self.last_gap = (int(stamps[gaps[-1]]), int(stamps[gaps[-1] + 1]))

    def _count_unposed(self, kind: int, stamp: int, inputs: int) -> None:
        """Count inputs without a pose: inside an odometry gap, or outside the history."""
        in_gap = self._history.in_gap(stamp, self._max_gap)
        counters = self.counters
        if in_gap and kind == _FRAME:
            counters.frames_in_gap += inputs
        elif in_gap:
            counters.readings_in_gap += inputs
        else:
            counters.no_odometry += inputs

    def _process(self, batch: list[tuple], first: int, end: int, poses: np.ndarray,
                 valid: list[bool]) -> None:
        """Insert frames and apply readings of ``batch[first:end]``, in key order."""
        index = first
        while index < end:
            item = batch[index]
            stamp = item[_STAMP]
            if item[_KIND] == _FRAME:
                self._waiting_frame_stamps.discard(stamp)
                if valid[index]:
                    self._insert_frame(stamp, poses[index], item[_DATA])
                else:
                    self._count_unposed(_FRAME, stamp, 1)
                index += 1
                continue
            # Readings with the same stamp share one pose and one neighbourhood query.
            group_end = index + 1
            while group_end < end and batch[group_end][_STAMP] == stamp and \
                    batch[group_end][_KIND] == _READING:
                group_end += 1
            if not valid[index]:
                self._count_unposed(_READING, stamp, sum(len(batch[i][_DATA])
                                                         for i in range(index, group_end)))
            elif group_end == index + 1:
                self._apply_readings(stamp, poses[index], item[_DATA], item[_HITS])
            else:
                sensors: list[int] = []
                hits: list[bool] = []
                for i in range(index, group_end):
                    sensors.extend(batch[i][_DATA])
                    hits.extend(batch[i][_HITS])
                self._apply_readings(stamp, poses[index], sensors, hits)
            index = group_end

    def _insert_frame(self, stamp: int, pose: np.ndarray, payload: Any) -> None:
        buffer = self._buffer
        if buffer.full:
            buffer.remove(buffer.oldest())
            self.counters.frames_evicted += 1
        x, y, yaw = pose.tolist()
        buffer.add(stamp, x, y, yaw, payload)

    def _apply_readings(self, stamp: int, pose: np.ndarray, sensors: Sequence[int],
                        hits: Sequence[bool]) -> None:
        """Apply the label rule (DESIGN.md §5) to the frames near the reading, vectorised."""
        buffer = self._buffer
        if not len(buffer):
            return
        x, y, yaw = pose.tolist()
        index = buffer.candidates(x, y)
        frames = buffer.poses[index]
        if not len(frames):
            return
        # (dx, dy, dθ) = frame⁻¹ ∘ reading, with the frames' cos and sin cached. Every frame
        # in the buffer was taken at most past_window after the reading (key order), so
        # only the future window needs testing.
        cos = buffer.cos[index]
        sin = buffer.sin[index]
        offset_x = x - frames[:, 0]
        offset_y = y - frames[:, 1]
        rel_y = cos * offset_y - sin * offset_x
        rel_theta = (yaw - frames[:, 2] + np.pi) % TWO_PI - np.pi  # geometry.wrap_angle
        chosen = ((buffer.stamps[index] >= stamp - self._future)
                  & (np.abs(rel_y) <= self._tol_y)
                  & (np.abs(rel_theta) <= self._tol_theta)).nonzero()[0]
        if not chosen.size:
            return
        slots = chosen if isinstance(index, slice) else index[chosen]
        rel_x = cos[chosen] * offset_x[chosen] + sin[chosen] * offset_y[chosen]
        # Only the (frame, distance) pairs that match are touched: at most a few distances
        # per frame. Readings are tallied per sensor, since one stamp may carry the same
        # sensor twice.
        match = np.abs(rel_x[:, None] - self.distances[None, :]) <= self._tol_x
        pair_frame, pair_distance = match.nonzero()
        if not pair_frame.size:
            return
        buffer.tallies[slots[pair_frame], :, :, pair_distance] += self._tally(sensors, hits)
        # A candidate without any match cannot be complete: it would have been finalised.
        complete = buffer.counts[slots].all(axis=(1, 2))
        if complete.any():
            done = slots[complete].tolist()
            done.sort(key=buffer.stamp_of)
            self._finalise(done, 'complete')

    def _tally(self, sensors: Sequence[int], hits: Sequence[bool]) -> np.ndarray:
        """
        Count readings and hits per sensor, (2, S): what a group adds to each matching cell.

        Cached by pattern: a robot sends the same few sensor sets with a few hit patterns.
        """
        key = (tuple(sensors), tuple(hits))
        tally = self._tallies.get(key)
        if tally is None:
            tally = np.zeros((2, self.num_sensors), dtype=np.uint16)
            for sensor, hit in zip(sensors, hits):
                tally[0, sensor] += 1
                tally[1, sensor] += hit
            if len(self._tallies) >= 4096:
                self._tallies.clear()
            self._tallies[key] = tally
        return tally

    def _finalise_settled(self, horizon: int, robot_xy: np.ndarray | None) -> None:
        """
        Apply the window and reach rules, and the age bound, once odometry reached ``horizon``.

        ``robot_xy`` is the robot's position at ``horizon - past_window`` (None if unknown).
        """
        buffer = self._buffer
        done_before = horizon - self._future - self._past
        first = oldest = buffer.oldest_stamp()
        if oldest is None:
            return
        if oldest <= done_before:
            self._finalise(buffer.slots_up_to(done_before), 'window')
        if robot_xy is not None and len(buffer):
            # Free slots hold NaN positions and never compare as far.
            offset = buffer.poses[:buffer.high_water, :2] - robot_xy
            far = (np.einsum('ij,ij->i', offset, offset) > self._out_of_reach_sq).nonzero()[0]
            if far.size:
                # Only frames taken before the robot got there: a frame newer than the
                # robot's position in time has not had the chance to be approached yet.
                eligible = horizon - self._past
                slots = [slot for slot in far.tolist() if buffer.stamp_of(slot) <= eligible]
                slots.sort(key=buffer.stamp_of)
                self._finalise(slots, 'reach')
        limit = horizon - self._max_age
        if first < limit:  # removals above only make the oldest newer
            oldest = buffer.oldest_stamp()
            while oldest is not None and oldest < limit:
                buffer.remove(buffer.oldest())
                self.counters.frames_evicted += 1
                oldest = buffer.oldest_stamp()

    def _finalise(self, slots: list[int], reason: str) -> None:
        """Take frames out of the buffer; keep those with a known cell, count the others."""
        if not slots:
            return
        counters = self.counters
        if reason == 'complete':
            counters.final_complete += len(slots)
        elif reason == 'window':
            counters.final_window += len(slots)
        elif reason == 'reach':
            counters.final_reach += len(slots)
        else:
            counters.final_flush += len(slots)
        buffer = self._buffer
        tallies = buffer.tallies[slots]
        poses = buffer.poses[slots]
        if reason == 'complete':  # every cell known
            keep = [True] * len(slots)
        else:
            known = tallies[:, 0].reshape(len(slots), -1).any(axis=1)
            keep = known.tolist()
            if not all(keep):
                tallies, poses = tallies[known], poses[known]
        if len(tallies):
            self._ready_tallies.append(tallies)
            self._ready_poses.append(poses)
        frames = self._ready_frames
        for slot, labeled in zip(slots, keep):
            stamp = buffer.stamp_of(slot)
            payload = buffer.remove(slot)
            if labeled:
                frames.append((stamp, payload, reason))
                counters.frames_labeled += 1
            else:
                counters.frames_unlabeled += 1
