"""Helpers for tests that run real rclpy nodes talking over DDS."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


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
    """
    Spin each node in its own executor and thread for the duration of the block.

    One executor per node, as if each ran in its own process: a busy test node then cannot
    starve the node under test of executor time.
    """
    executors = []
    threads = []
    for node in nodes:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        executors.append(executor)
        threads.append(thread)
    try:
        yield executors
    finally:
        for executor in executors:
            executor.shutdown(timeout_sec=2.0)
        for thread in threads:
            thread.join(timeout=5.0)


def wait_for(condition: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return condition()


def wait_for_subscribers(publishers: list, count: int = 1, timeout: float = 10.0,
                         settle: float = 1.0) -> None:
    """
    Block until every publisher is matched by ``count`` subscriptions (discovery).

    Matching is seen from the publisher's side first; the subscriber's side may need a
    moment more, and best-effort messages sent before then are lost, hence ``settle``.
    """
    assert wait_for(lambda: all(p.get_subscription_count() >= count for p in publishers),
                    timeout), 'subscribers were not discovered in time'
    time.sleep(settle)
