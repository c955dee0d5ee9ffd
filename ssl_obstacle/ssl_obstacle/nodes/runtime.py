"""
Starting and stopping rclpy the same way in every entry point.

rclpy's own SIGINT handler shuts the context down before our ``finally`` blocks run, so
nodes could no longer log or publish while closing. We let Ctrl-C arrive as
``KeyboardInterrupt`` instead and shut down ourselves (the option exists since Galactic,
so Humble has it).
"""

from __future__ import annotations

from typing import Sequence

import rclpy

try:
    from rclpy.signals import SignalHandlerOptions
except ImportError:  # pragma: no cover - very old rclpy
    SignalHandlerOptions = None


def init_ros(args: Sequence[str] | None) -> None:
    """Initialise rclpy with our shutdown handling."""
    if SignalHandlerOptions is None:  # pragma: no cover
        rclpy.init(args=args)
    else:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def is_shutdown_error(error: BaseException) -> bool:
    """Tell whether ``error`` only means "the context was shut down" (not a bug)."""
    return isinstance(error, KeyboardInterrupt) or \
        type(error).__name__ == 'ExternalShutdownException'
