"""
Ctrl-C and ``kill`` stop every command and node cleanly, however the process was started.

Python installs its Ctrl-C handler only when SIGINT is not already ignored at start-up, and
a process started in the background by a non-interactive shell (``cmd &`` in a script, CI
runners, some service managers) inherits SIGINT ignored: it would then never stop on Ctrl-C
or when ``ros2 launch`` asks it to. SIGTERM (``ros2 launch``'s second request, ``kill``,
systemd) gets the same clean path, so nodes close and the learner writes its checkpoint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (and receives them)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
