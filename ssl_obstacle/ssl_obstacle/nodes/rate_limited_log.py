"""
Per-kind rate limiting for log lines about bad input.

rclpy's ``throttle_duration_sec`` throttles per call site, so one noisy kind of bad input
would hide every other kind logged from the same line; here each kind has its own budget
and the next line says how many were suppressed meanwhile.
"""

from __future__ import annotations

import time
from typing import Callable


class RateLimitedLog:
    """Log at most one line per ``period`` seconds for each key."""

    def __init__(self, emit: Callable[[str], None], period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` logged within the period; return whether it did."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f'{message} ({suppressed} similar message(s) suppressed)'
        self._last[key] = now
        self._emit(message)
        return True
