"""
Starting and stopping rclpy the same way in every entry point.

rclpy's own SIGINT handler shuts the context down before our ``finally`` blocks run, so
nodes could no longer log or publish while closing. We let Ctrl-C arrive as
``KeyboardInterrupt`` instead and shut down ourselves (the option exists since Galactic,
so Humble has it).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, Sequence

from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from ..interrupts import interrupt_on_signals

try:
    from rclpy.signals import SignalHandlerOptions
except ImportError:  # pragma: no cover - very old rclpy
    SignalHandlerOptions = None


#: The thread spinning each executor started here and the flag that ends it.
_SPIN_THREADS: dict[Executor, tuple[threading.Thread, threading.Event]] = {}
#: Seconds a spin thread waits in rcl before it checks whether to stop.
SPIN_PERIOD = 0.1


def init_ros(args: Sequence[str] | None) -> None:
    """Initialise rclpy with our shutdown handling."""
    interrupt_on_signals()
    if SignalHandlerOptions is None:  # pragma: no cover
        rclpy.init(args=args)
    else:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def is_shutdown_error(error: BaseException) -> bool:
    """Tell whether ``error`` only means "the context was shut down" (not a bug)."""
    return isinstance(error, KeyboardInterrupt) or \
        type(error).__name__ == 'ExternalShutdownException'


def declare_parameters(node: Node, spec: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
    """
    Declare read-only parameters from ``{name: (default, description)}``; return their values.

    Read-only because the nodes read them once at start-up: a later ``ros2 param set`` would
    otherwise report success and change nothing.
    """
    return {name: node.declare_parameter(
        name, default, ParameterDescriptor(description=text, read_only=True)).value
        for name, (default, text) in spec.items()}


def wall_timer(node: Node, period: float, callback: Callable[[], Any]) -> Any:
    """
    Create a timer on the steady (wall) clock, whatever ``use_sim_time`` says.

    For status, diagnostics and checkpoints: with ``use_sim_time`` a node's own timers stop
    when ``/clock`` stops (a bag ended, a simulator paused), and the last status would then
    never report the frames that arrived after the last tick.
    """
    return node.create_timer(period, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def start_executors(nodes: Sequence[Node], context: Context | None = None,
                    ) -> list[Executor]:
    """
    Spin every node on its own executor and thread; return the executors.

    As if each ran in its own process: a busy node cannot starve another of executor time.
    Single-threaded, because rclpy's MultiThreadedExecutor serves one node's subscriptions
    unevenly under load, which reorders streams by seconds when messages come faster than
    real time; a node whose services must wait for its worker without holding up its
    subscriptions asks for more threads with an ``executor_threads`` attribute.
    """
    executors = []
    for node in nodes:
        threads = int(getattr(node, 'executor_threads', 1))
        executor = (MultiThreadedExecutor(num_threads=threads, context=context) if threads > 1
                    else SingleThreadedExecutor(context=context))
        executor.add_node(node)
        stop = threading.Event()
        thread = threading.Thread(target=_spin, args=(executor, stop),
                                  name=f'spin-{node.get_name()}', daemon=True)
        thread.start()
        _SPIN_THREADS[executor] = (thread, stop)
        executors.append(executor)
    return executors


def _spin(executor: Executor, stop: threading.Event) -> None:
    """
    Spin until told to stop, waking every SPIN_PERIOD to check.

    ``Executor.spin`` cannot be left cleanly: ``shutdown`` destroys the guard conditions a
    spinning thread may still be using, and the thread then dies with an AttributeError
    or InvalidHandle (ros2/rclpy#968). Spinning in short turns, the thread leaves rcl on
    its own before the executor is shut down.
    """
    try:
        while not stop.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    except BaseException as error:  # noqa: BLE001 - the context went away under us
        if not (is_shutdown_error(error) or stop.is_set() or not executor.context.ok()):
            raise


def stop_executors(executors: Sequence[Executor], timeout: float = 5.0) -> None:
    """
    Stop the spin threads, wait for them to leave rclpy, then shut the executors down.

    Destroying a node or the context while its thread still waits inside rcl aborts the
    process ("terminate called without an active exception") on a loaded machine, where the
    thread can take more than a second to notice the shutdown.
    """
    spinning = [_SPIN_THREADS.pop(executor, None) for executor in executors]
    for entry in spinning:
        if entry is not None:
            entry[1].set()
    deadline = time.monotonic() + timeout
    for entry in spinning:
        if entry is not None:
            entry[0].join(max(0.0, deadline - time.monotonic()))
    for executor in executors:
        executor.shutdown(timeout_sec=max(0.0, deadline - time.monotonic()))


def run_nodes(factories: Sequence[Callable[[], Node]], args: Sequence[str] | None) -> None:
    """
    Run nodes in this process until Ctrl-C or shutdown, then close them cleanly.

    The entry point of every node (``ros2 run``) and of ``ssl-obstacle run``/``sim``.
    Nodes with a ``close()`` method get it called while the context is still valid, so
    they can still log, publish and write their last checkpoint.
    """
    init_ros(args)
    nodes: list[Node] = []
    executors: list[Executor] = []
    try:
        for factory in factories:
            nodes.append(factory())
        executors = start_executors(nodes)
        while rclpy.ok():
            time.sleep(0.2)
    except BaseException as error:
        if not is_shutdown_error(error):
            raise
    finally:
        stop_executors(executors)
        for node in nodes:
            if hasattr(node, 'close'):
                node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
