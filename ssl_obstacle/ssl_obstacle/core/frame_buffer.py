"""
Frames waiting for their labels, indexed by where they were taken.

A proximity reading can only label frames whose position is within ``reach`` of the robot
at the reading's stamp (DESIGN.md §5). A uniform grid with cells ``reach`` wide answers
"which frames could this reading label?" by looking at the 3×3 cells around the reading,
so the cost of a reading does not grow with the buffer. A KD-tree would need rebuilding on
every insertion; the grid is updated in O(1).

Frame data (stamps, poses, the cosine and sine of their yaws, label accumulators) live in
preallocated numpy arrays indexed by slot, so that one reading relates itself to all its
candidate frames and updates their counters in a few vectorised operations. Free slots are
reused lowest first, which keeps the frames packed below :attr:`high_water`. While that
prefix is short, scanning all of it through array *views* is cheaper than asking the grid
(numpy's per-call overhead dominates arrays of a few hundred elements, and views avoid the
copies of fancy indexing); :meth:`~PoseIndexedFrameBuffer.candidates` picks the cheaper.
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from math import cos, floor, sin
from typing import Any

import numpy as np

#: While no slot above this is in use, readings scan all slots up to it rather than the grid.
DEFAULT_SCAN_LIMIT = 256


class PoseIndexedFrameBuffer:
    """
    A bounded set of frames with per-cell counters and a spatial index on their poses.

    Frames must be added in stamp order (the labeler inserts them in key order), which is
    what makes "oldest" a queue head instead of a search.
    """

    def __init__(self, capacity: int, num_sensors: int, num_distances: int,
                 cell_size: float, scan_limit: int = DEFAULT_SCAN_LIMIT) -> None:
        """
        Allocate room for ``capacity`` frames of ``num_sensors`` × ``num_distances`` cells.

        ``cell_size`` must exceed the farthest a reading can be from a frame it labels, for
        the grid to return a superset of the frames a reading can label. ``scan_limit``:
        see :meth:`candidates`.
        """
        self.capacity = int(capacity)
        self.cell_size = float(max(cell_size, 1e-3))
        self.scan_limit = int(scan_limit)
        self.stamps = np.zeros(self.capacity, dtype=np.int64)
        #: x, y, yaw of each frame; x and y are NaN in free slots, so that distance tests
        #: never select them.
        self.poses = np.full((self.capacity, 3), np.nan, dtype=np.float64)
        # cos and sin of the yaw, computed once per frame instead of once per reading.
        self.cos = np.zeros(self.capacity, dtype=np.float64)
        self.sin = np.zeros(self.capacity, dtype=np.float64)
        #: Matching readings ``[:, 0]`` and those that saw an obstacle ``[:, 1]``, per cell.
        self.tallies = np.zeros((self.capacity, 2, num_sensors, num_distances), dtype=np.uint16)
        self._payloads: list[Any] = [None] * self.capacity
        self._cells: list[tuple[int, int] | None] = [None] * self.capacity
        # Stamp of the frame in each slot (None when free), as Python ints for cheap tests.
        self._slot_stamps: list[int | None] = [None] * self.capacity
        self._slot_of_stamp: dict[int, int] = {}
        self._grid: dict[tuple[int, int], set[int]] = {}
        self._free = list(range(self.capacity))  # a min-heap: lowest free slot first
        self._high_water = 0
        # (stamp, slot) in insertion (= stamp) order; entries of removed frames are skipped.
        self._order: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        """Frames held."""
        return len(self._slot_of_stamp)

    def __contains__(self, stamp: object) -> bool:
        """Whether a frame with this stamp is held."""
        return stamp in self._slot_of_stamp

    @property
    def counts(self) -> np.ndarray:
        """Return the matching readings per slot and cell, (capacity, S, D) (a view)."""
        return self.tallies[:, 0]

    @property
    def positives(self) -> np.ndarray:
        """Return the matching readings that saw an obstacle, (capacity, S, D) (a view)."""
        return self.tallies[:, 1]

    @property
    def full(self) -> bool:
        """Whether :meth:`add` needs a frame removed first."""
        return not self._free

    @property
    def high_water(self) -> int:
        """One past the highest slot in use since the buffer was last empty."""
        return self._high_water

    def _cell_of(self, x: float, y: float) -> tuple[int, int]:
        size = self.cell_size
        return floor(x / size), floor(y / size)

    def add(self, stamp: int, x: float, y: float, yaw: float, payload: Any) -> int:
        """Store a frame taken at pose ``(x, y, yaw)``; the caller makes room first."""
        slot = heappop(self._free)
        if slot >= self._high_water:
            self._high_water = slot + 1
        self.stamps[slot] = stamp
        self.poses[slot] = x, y, yaw
        self.cos[slot] = cos(yaw)
        self.sin[slot] = sin(yaw)
        self.tallies[slot] = 0
        self._payloads[slot] = payload
        self._slot_stamps[slot] = stamp
        self._slot_of_stamp[stamp] = slot
        cell = self._cell_of(x, y)
        self._cells[slot] = cell
        members = self._grid.get(cell)
        if members is None:
            self._grid[cell] = {slot}
        else:
            members.add(slot)
        self._order.append((stamp, slot))
        return slot

    def stamp_of(self, slot: int) -> int:
        """Stamp of the frame in ``slot``."""
        return self._slot_stamps[slot]

    def remove(self, slot: int) -> Any:
        """Take a frame out and return its payload (read its pose and tallies before)."""
        stamp = self._slot_stamps[slot]
        del self._slot_of_stamp[stamp]
        self._slot_stamps[slot] = None
        payload = self._payloads[slot]
        self._payloads[slot] = None
        cell = self._cells[slot]
        self._cells[slot] = None
        members = self._grid[cell]
        members.discard(slot)
        if not members:
            del self._grid[cell]
        self.poses[slot, :2] = np.nan
        heappush(self._free, slot)
        if not self._slot_of_stamp:
            self._high_water = 0
            self._order.clear()
        return payload

    def oldest(self) -> int | None:
        """Slot of the oldest frame held, or None when empty."""
        order = self._order
        stamps = self._slot_stamps
        while order:
            stamp, slot = order[0]
            if stamps[slot] == stamp:
                return slot
            order.popleft()
        return None

    def oldest_stamp(self) -> int | None:
        """Stamp of the oldest frame held, or None when empty."""
        slot = self.oldest()
        return None if slot is None else self._slot_stamps[slot]

    def slots_up_to(self, stamp: int) -> list[int]:
        """Slots of the frames with stamps at or before ``stamp``, oldest first."""
        stamps = self._slot_stamps
        found = []
        for frame_stamp, slot in self._order:
            if frame_stamp > stamp:
                break
            if stamps[slot] == frame_stamp:
                found.append(slot)
        return found

    def slots_in_order(self) -> list[int]:
        """Slots of every frame held, oldest first."""
        stamps = self._slot_stamps
        return [slot for stamp, slot in self._order if stamps[slot] == stamp]

    def near(self, x: float, y: float) -> np.ndarray:
        """
        Slots of frames in the 3×3 grid cells around ``(x, y)``.

        A superset of the frames closer than one cell size (one exactly that far may be two
        cells over), which callers then filter exactly.
        """
        cx, cy = self._cell_of(x, y)
        grid = self._grid
        found: list[int] = []
        for ix in (cx - 1, cx, cx + 1):
            for iy in (cy - 1, cy, cy + 1):
                members = grid.get((ix, iy))
                if members:
                    found.extend(members)
        return np.array(found, dtype=np.intp)

    def candidates(self, x: float, y: float) -> slice | np.ndarray:
        """
        Index (into the per-slot arrays) of the frames a reading at ``(x, y)`` may label.

        Either a slice over the used prefix, which may include free slots (their NaN
        positions fail every test), or the slots that :meth:`near` finds.
        """
        if self._high_water <= self.scan_limit:
            return slice(0, self._high_water)
        return self.near(x, y)

    def clear(self) -> int:
        """Remove every frame; return how many were held."""
        held = len(self)
        for slot in self.slots_in_order():
            self.remove(slot)
        self._order.clear()
        return held
