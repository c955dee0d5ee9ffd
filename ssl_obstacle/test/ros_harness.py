"""Helpers for tests that run real rclpy nodes talking over DDS."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from ssl_obstacle.nodes.runtime import start_executors, stop_executors


@contextlib.contextmanager
def ros_context(args: list[str] | None = None) -> Iterator[Context]:
    """Provide a fresh rclpy context (its own DDS participant), shut down afterwards."""
    context = Context()
    rclpy.init(args=args, context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@contextlib.contextmanager
def spinning(context: Context, *nodes: Node) -> Iterator[list[SingleThreadedExecutor]]:
    """Spin each node on its own executor thread, as the package runs them, for the block."""
    executors = start_executors(nodes, context)
    try:
        yield executors
    finally:
        stop_executors(executors)


def wait_for(condition: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return condition()


def wait_for_subscribers(publishers: list, count: int = 1, timeout: float = 10.0,
                         settle: float = 1.0, node: Node | None = None) -> None:
    """
    Block until every publisher is matched by ``count`` subscriptions (discovery).

    Matching is seen from the publisher's side first; the subscriber's side may need a
    moment more, and best-effort messages sent before then are lost, hence ``settle``.
    With ``node``, also wait until each of its subscriptions on those topics has matched a
    publisher on its own side (``Subscription.get_publisher_count``, rclpy 4 and newer; on a
    loaded machine that side lagged the settle time, and the first frames were lost).
    """
    assert wait_for(lambda: all(p.get_subscription_count() >= count for p in publishers),
                    timeout), 'subscribers were not discovered in time'
    if node is not None:
        topics = {p.topic_name for p in publishers}
        subscriptions = [s for s in node.subscriptions if s.topic_name in topics
                         and hasattr(s, 'get_publisher_count')]
        assert wait_for(lambda: all(s.get_publisher_count() >= 1 for s in subscriptions),
                        timeout), 'the subscriptions did not match their publishers in time'
    time.sleep(settle)
