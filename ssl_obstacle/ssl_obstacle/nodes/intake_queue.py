"""
The labeler's bounded intake: camera frames are shed first when the worker falls behind.

A dropped camera frame costs one frame; a dropped odometry sample or proximity reading
corrupts or loses the labels of every frame around it. ``queue.Queue`` drops whatever
arrives when full, so under load it dropped mostly odometry and readings (they are most of
the messages). This queue keeps the arrival order of everything it holds, but holds at most
``camera_capacity`` camera frames and, when full, makes room for a sensor message by
shedding the oldest waiting camera frame; a sensor message is only dropped when no camera
frame is left to shed. Hand-written because no standard queue drops by kind.
"""

from __future__ import annotations

from collections import Counter, deque
from itertools import count
import threading
from typing import Any

#: Name of the stream whose messages are shed first.
CAMERA = 'camera'


class IntakeQueue:
    """
    Bounded, thread-safe FIFO of ``(stream, item)`` that sheds camera frames first.

    ``put`` never blocks (it runs in executor callbacks); ``get`` is for the one worker.
    Counters are written under the queue's lock and read without it: an int read is atomic.
    """

    def __init__(self, capacity: int, camera_capacity: int) -> None:
        """Hold at most ``capacity`` items, of which at most ``camera_capacity`` frames."""
        if capacity < 1 or camera_capacity < 1:
            raise ValueError('queue capacities must be at least 1')
        self.capacity = int(capacity)
        self.camera_capacity = min(int(camera_capacity), self.capacity)
        self._camera: deque[tuple[int, Any]] = deque()
        self._sensors: deque[tuple[int, str, Any]] = deque()
        self._order = count()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        #: Camera frames shed to make room (the worker was behind), and sensor messages
        #: dropped by stream (the queue was full of sensor messages alone).
        self.camera_shed = 0
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        """Return how many items wait."""
        return len(self._camera) + len(self._sensors)

    def put(self, stream: str, item: Any) -> bool:
        """Add an item; return False when it was dropped (a sensor message, queue full)."""
        with self._ready:
            if stream == CAMERA:
                if len(self._camera) >= self.camera_capacity or len(self) >= self.capacity:
                    self._shed_camera()
                self._camera.append((next(self._order), item))
            elif len(self) < self.capacity or self._shed_camera():
                self._sensors.append((next(self._order), stream, item))
            else:
                self.dropped[stream] += 1
                return False
            self._ready.notify()
        return True

    def _shed_camera(self) -> bool:
        if not self._camera:
            return False
        self._camera.popleft()
        self.camera_shed += 1
        return True

    def get(self, timeout: float) -> tuple[str, Any] | None:
        """Return the oldest ``(stream, item)``, or None after ``timeout`` s or once closed."""
        with self._ready:
            if not self._ready.wait_for(lambda: len(self) or self._closed, timeout):
                return None
            if not len(self):
                return None
            camera, sensors = self._camera, self._sensors
            if camera and (not sensors or camera[0][0] < sensors[0][0]):
                return CAMERA, camera.popleft()[1]
            _, stream, item = sensors.popleft()
            return stream, item

    def close(self) -> None:
        """Wake the worker; ``get`` returns None from now on once the queue is empty."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
