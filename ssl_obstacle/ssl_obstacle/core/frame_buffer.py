"""Frames waiting for their labels, indexed by where they were taken.

A proximity reading can only label frames whose position is within ``reach`` of the robot
at the reading's stamp (DESIGN.md §5). A uniform grid with cells ``reach`` wide answers
"which frames could this reading label?" by looking at the 3×3 cells around the reading,
so the cost of a reading does not grow with the buffer. A KD-tree would need rebuilding on
every insertion; the grid is updated in O(1).

Label accumulators live in preallocated numpy arrays indexed by slot, so one reading
updates all its frames with a single fancy-indexed addition.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np


@dataclass
class FrameRecord:
    """What the buffer returns when a frame leaves it."""

    stamp: int
    pose: np.ndarray
    payload: Any
    counts: np.ndarray
    positives: np.ndarray


class PoseIndexedFrameBuffer:
    """A bounded set of frames with per-cell counters and a spatial index on their poses."""

    def __init__(self, capacity: int, num_sensors: int, num_distances: int, cell_size: float):
        self.capacity = int(capacity)
        self.cell_size = float(max(cell_size, 1e-3))
        self.stamps = np.zeros(self.capacity, dtype=np.int64)
        self.poses = np.zeros((self.capacity, 3), dtype=np.float64)
        self.active = np.zeros(self.capacity, dtype=bool)
        self.counts = np.zeros((self.capacity, num_sensors, num_distances), dtype=np.uint16)
        self.positives = np.zeros((self.capacity, num_sensors, num_distances), dtype=np.uint16)
        self._payloads: list[Any] = [None] * self.capacity
        self._cells: list[tuple[int, int] | None] = [None] * self.capacity
        self._grid: dict[tuple[int, int], set[int]] = {}
        self._free = list(range(self.capacity - 1, -1, -1))
        self._order: deque[tuple[int, int]] = deque()  # (slot, stamp) in insertion order

    def __len__(self) -> int:
        return self.capacity - len(self._free)

    @property
    def full(self) -> bool:
        return not self._free

    def _cell_of(self, x: float, y: float) -> tuple[int, int]:
        return int(np.floor(x / self.cell_size)), int(np.floor(y / self.cell_size))

    def add(self, stamp: int, pose: np.ndarray, payload: Any) -> int:
        """Store a frame; the caller makes room first (see :meth:`oldest`)."""
        slot = self._free.pop()
        self.stamps[slot] = stamp
        self.poses[slot] = pose
        self.active[slot] = True
        self.counts[slot] = 0
        self.positives[slot] = 0
        self._payloads[slot] = payload
        cell = self._cell_of(pose[0], pose[1])
        self._cells[slot] = cell
        self._grid.setdefault(cell, set()).add(slot)
        self._order.append((slot, stamp))
        return slot

    def remove(self, slot: int) -> FrameRecord:
        """Take a frame out and return it with its accumulated counters."""
        record = FrameRecord(
            stamp=int(self.stamps[slot]),
            pose=self.poses[slot].copy(),
            payload=self._payloads[slot],
            counts=self.counts[slot].copy(),
            positives=self.positives[slot].copy(),
        )
        cell = self._cells[slot]
        members = self._grid[cell]
        members.discard(slot)
        if not members:
            del self._grid[cell]
        self._payloads[slot] = None
        self._cells[slot] = None
        self.active[slot] = False
        self._free.append(slot)
        return record

    def _prune_order(self) -> None:
        while self._order:
            slot, stamp = self._order[0]
            if self.active[slot] and self.stamps[slot] == stamp:
                return
            self._order.popleft()

    def oldest(self) -> int | None:
        """Slot of the oldest frame still held (frames enter in stamp order)."""
        self._prune_order()
        return self._order[0][0] if self._order else None

    def iter_oldest(self) -> Iterator[int]:
        """Slots from the oldest on; stop iterating before removing what it yields."""
        self._prune_order()
        for slot, stamp in self._order:
            if self.active[slot] and self.stamps[slot] == stamp:
                yield slot

    def near(self, x: float, y: float) -> np.ndarray:
        """Slots of frames in the 3×3 grid cells around ``(x, y)``: a superset of those within
        one cell size, which callers then filter exactly."""
        cx, cy = self._cell_of(x, y)
        grid = self._grid
        found: list[int] = []
        for ix in (cx - 1, cx, cx + 1):
            for iy in (cy - 1, cy, cy + 1):
                members = grid.get((ix, iy))
                if members:
                    found.extend(members)
        return np.fromiter(found, dtype=np.intp, count=len(found))

    def active_slots(self) -> np.ndarray:
        return np.flatnonzero(self.active)

    def clear(self) -> list[int]:
        """Remove every frame; return how many were dropped."""
        slots = list(self.active_slots())
        for slot in slots:
            self.remove(int(slot))
        self._order.clear()
        return slots
