"""
A bounded replay buffer of labeled frames for the online learner.

Obstacles are rare while the robot explores: most labeled frames carry no positive cell at
all. A plain FIFO would then hold few positive-bearing frames, and a long stretch of open
floor would flush them out entirely, so the model would forget what an obstacle looks like.
Two policies keep them:

* **Eviction** (when full). Frames are split into two pools: *positive-bearing* (some known
  cell ≥ ``positive_threshold``) and *negative-only*. A pool holding fewer than
  ``min_pool_fraction`` × capacity frames is protected: the new frame replaces the oldest
  frame of the *other* pool. When neither pool is short, the oldest frame overall gives way
  (plain FIFO, so the buffer follows the world as it changes). With the default 0.3, rare
  positives are never evicted by negatives until they fill 30 % of the buffer; beyond that
  they age out like any frame. The rule is symmetric, so a stream of obstacles cannot flush
  the last frames of free space either.
* **Sampling**. Each batch element comes from the positive-bearing pool with probability
  ``max(share, positive_sample_fraction)`` (its share of the buffer, raised to at least the
  target), uniformly within the pool. Positive-bearing frames still contain many negative
  cells (other sensors, other distances), so cell-level balance is milder than frame-level
  balance; the over-sampling shifts the calibration of the probabilities upwards a little,
  which leaves ROC AUC, the figure the project reports, unaffected.
* **Even exposure** (``even_exposure``, on in the learner). Drawn uniformly, a frame that
  arrives early is sampled far more often than a late one over a run: while the buffer is
  small every batch draws from a few frames, and the last minute's frames are barely seen
  before the run ends (in a 10-minute demo, ~56 draws for a frame of second 10, ~0.2 for
  one of minute 10), so the model is fitted to its first minutes. Offline training sees
  every frame equally often (epochs). With even exposure a pool's share of a batch is its
  least-drawn frames among ``EXPOSURE_CANDIDATES`` times as many distinct random ones:
  frames seen less are preferred, so exposure evens out as in epochs (in a run in miniature,
  late frames get 0.7 of the early ones' draws, against 0.06 uniformly), while the choice
  stays random.

All storage is preallocated numpy arrays indexed by slot, so memory stays flat however long
the robot runs. One lock guards every method, because the ROS node adds frames from a
subscription callback while the training thread samples.
"""

from __future__ import annotations

from collections import deque
import threading

import numpy as np

#: A known label at least this large makes a frame positive-bearing.
DEFAULT_POSITIVE_THRESHOLD = 0.5
#: A pool (positive-bearing or negative-only) smaller than this share of the capacity is
#: protected from eviction.
DEFAULT_MIN_POOL_FRACTION = 0.3
#: Sample at least this share of positive-bearing frames when the buffer holds any.
DEFAULT_POSITIVE_SAMPLE_FRACTION = 0.5
#: With even exposure, a batch is the least-drawn of this many times as many random frames.
EXPOSURE_CANDIDATES = 8


class ReplayBuffer:
    """
    Labeled frames (image, labels, stamp) with class-aware eviction and balanced sampling.

    ``labels`` are (num_sensors, num_distances) float32 with NaN for unknown cells. Slots
    are reused in place; ``sample`` returns copies, so a caller never sees a frame being
    overwritten.
    """

    def __init__(self, capacity: int, image_shape: tuple[int, int, int], num_sensors: int,
                 num_distances: int, seed: int = 0,
                 positive_threshold: float = DEFAULT_POSITIVE_THRESHOLD,
                 min_pool_fraction: float = DEFAULT_MIN_POOL_FRACTION,
                 positive_sample_fraction: float = DEFAULT_POSITIVE_SAMPLE_FRACTION,
                 even_exposure: bool = False) -> None:
        """
        Allocate ``capacity`` slots for images of ``image_shape`` (H, W, 3) uint8.

        ``min_pool_fraction`` must lie in [0, 0.5]: above 0.5 both pools could be short at
        once and the rule would be ambiguous.
        """
        if capacity < 1:
            raise ValueError(f'capacity must be positive, got {capacity}')
        if not 0.0 <= min_pool_fraction <= 0.5:
            raise ValueError(f'min_pool_fraction must be in [0, 0.5], got {min_pool_fraction}')
        if not 0.0 <= positive_sample_fraction <= 1.0:
            raise ValueError('positive_sample_fraction must be in [0, 1], '
                             f'got {positive_sample_fraction}')
        self.capacity = int(capacity)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.label_shape = (int(num_sensors), int(num_distances))
        self.positive_threshold = float(positive_threshold)
        self.min_pool_fraction = float(min_pool_fraction)
        self.positive_sample_fraction = float(positive_sample_fraction)
        self.even_exposure = bool(even_exposure)
        self.images = np.zeros((self.capacity, *self.image_shape), dtype=np.uint8)
        self.labels = np.full((self.capacity, *self.label_shape), np.nan, dtype=np.float32)
        self.stamps = np.zeros(self.capacity, dtype=np.int64)
        self.positive = np.zeros(self.capacity, dtype=bool)
        #: How many times each slot's frame has been drawn into a batch.
        self.draws = np.zeros(self.capacity, dtype=np.int64)
        # Insertion sequence number of each slot's frame: decides "oldest" across pools.
        self._sequence = np.zeros(self.capacity, dtype=np.int64)
        # Occupied slots of each pool, oldest first (index 1: positive-bearing). Evictions
        # only ever take a head, so both stay in insertion order.
        self._pools: tuple[deque[int], deque[int]] = (deque(), deque())
        self._next_free = 0  # slots below this have been filled at least once
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        #: Frames ever added, and frames that gave way to newer ones.
        self.added = 0
        self.evicted = 0

    def __len__(self) -> int:
        """Return the number of frames held."""
        with self._lock:
            return len(self._pools[0]) + len(self._pools[1])

    @property
    def positive_frames(self) -> int:
        """Return the number of positive-bearing frames held."""
        with self._lock:
            return len(self._pools[1])

    def is_positive(self, labels: np.ndarray) -> bool:
        """Return whether some known cell of ``labels`` reaches the positive threshold."""
        known = labels[~np.isnan(labels)]
        return bool(known.size and known.max() >= self.positive_threshold)

    def add(self, image: np.ndarray, labels: np.ndarray, stamp: int) -> int:
        """
        Store one frame, evicting one when full (see the module docstring); return its slot.

        The image is copied in, so the caller may reuse its array.
        """
        image = np.asarray(image)
        labels = np.asarray(labels, dtype=np.float32)
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise ValueError(f'image must be uint8 {self.image_shape}, got '
                             f'{image.dtype} {image.shape}')
        if labels.shape != self.label_shape:
            raise ValueError(f'labels must be {self.label_shape}, got {labels.shape}')
        positive = self.is_positive(labels)
        with self._lock:
            if self._next_free < self.capacity:
                slot = self._next_free
                self._next_free += 1
            else:
                slot = self._evict()
            self.images[slot] = image
            self.labels[slot] = labels
            self.stamps[slot] = int(stamp)
            self.positive[slot] = positive
            self.draws[slot] = 0
            self._sequence[slot] = self.added
            self._pools[int(positive)].append(slot)
            self.added += 1
            return slot

    def _evict(self) -> int:
        """Free the slot of the frame that gives way; the caller holds the lock."""
        quota = self.min_pool_fraction * self.capacity
        negatives, positives = self._pools
        if len(positives) < quota and negatives:
            pool = negatives
        elif len(negatives) < quota and positives:
            pool = positives
        elif not positives:
            pool = negatives
        elif not negatives:
            pool = positives
        else:  # neither pool is short: the oldest frame overall
            older_positive = self._sequence[positives[0]] < self._sequence[negatives[0]]
            pool = positives if older_positive else negatives
        self.evicted += 1
        return pool.popleft()

    def sample(self, batch_size: int, rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Return ``batch_size`` frames drawn with replacement: (images, labels, slots).

        Positive-bearing frames make up about ``max(share, positive_sample_fraction)`` of the
        batch; within a pool, frames are uniform or, with ``even_exposure``, the least-drawn of a
        few random candidates. The arrays are copies taken under the lock, so a concurrent ``add``
        never tears a sampled frame. ``rng`` defaults to the buffer's own generator.
        """
        with self._lock:
            rng = self._rng if rng is None else rng
            negatives, positives = self._pools
            held = len(negatives) + len(positives)
            if held == 0:
                raise ValueError('cannot sample from an empty replay buffer')
            share = len(positives) / held
            if positives and negatives:
                fraction = max(share, self.positive_sample_fraction)
            else:
                fraction = share
            from_positive = rng.random(batch_size) < fraction
            slots = np.empty(batch_size, dtype=np.int64)
            # Every slot below _next_free is occupied (a slot is only freed to be refilled
            # at once), so the pools are masks of that prefix: O(capacity) vectorised, where
            # indexing the deques would be O(capacity) per element.
            filled = self.positive[:self._next_free]
            for flag, members in ((False, np.flatnonzero(~filled)),
                                  (True, np.flatnonzero(filled))):
                chosen = from_positive == flag
                count = int(chosen.sum())
                if count:
                    slots[chosen] = self._draw(members, count, rng)
            np.add.at(self.draws, slots, 1)
            return self.images[slots], self.labels[slots], slots

    def _draw(self, members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``count`` slots of a pool: uniform, or least-drawn of random candidates."""
        if not self.even_exposure:
            return members[rng.integers(0, members.size, size=count)]
        pool = min(members.size, EXPOSURE_CANDIDATES * count)
        if pool <= count:  # a pool smaller than the batch: every frame, then uniform
            return members[rng.integers(0, members.size, size=count)]
        candidates = members[rng.choice(members.size, size=pool, replace=False)]
        # The least-drawn distinct candidates; a random tie-break keeps equal counts uniform.
        score = self.draws[candidates] + rng.random(pool)
        return candidates[np.argpartition(score, count - 1)[:count]]

    def counters(self) -> dict[str, int]:
        """Return the counters: frames added, evicted, held, and positive-bearing held."""
        with self._lock:
            return {'added': self.added, 'evicted': self.evicted,
                    'held': len(self._pools[0]) + len(self._pools[1]),
                    'positive_frames': len(self._pools[1])}

    def clear(self) -> None:
        """Forget every frame (the counters keep counting)."""
        with self._lock:
            for pool in self._pools:
                pool.clear()
            self._next_free = 0
            self.positive[:] = False
