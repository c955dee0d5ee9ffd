"""
The bag player node: one publisher per replayed topic, publishing recorded CDR bytes as is.

All decisions (topics, names, timing, loop, ``/clock`` values) are made by
:mod:`ssl_obstacle.io.bag_player`; this node only creates the publishers and sends bytes.
Recorded messages are never deserialised: rclpy publishes a ``bytes`` object as a serialized
message of the publisher's type (Humble and later), so replay costs no conversion and
replays fields this package does not know exactly as recorded.

It is not in :mod:`.registry` because it needs a bag to play: ``ssl-obstacle replay`` is its
entry point.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from ..io.bag_player import CLOCK_TOPIC, PlayMessage, TopicPlan
from ..io.messages import time_from_ns

#: Topics whose late subscribers must still get what was published (latched in ROS 1).
LATCHED_TOPIC_NAMES = frozenset({'tf_static', 'robot_description'})


def message_class(msgtype: str) -> type | None:
    """
    Return the rclpy class of ``pkg/msg/Type`` (or ``pkg/Type``), or None if not installed.

    ``rosidl_runtime_py.utilities.get_message`` when available (a full ROS install), else
    the same import by hand (the wheel environment has no rosidl_runtime_py).
    """
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        get_message = None
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        return None
    try:
        if get_message is not None:
            return get_message('/'.join(parts))
        return getattr(importlib.import_module(f'{parts[0]}.{parts[1]}'), parts[2])
    except (ImportError, AttributeError, ValueError):
        return None


def qos_for(topic: str, depth: int) -> QoSProfile:
    """
    Return the publisher QoS of a replayed topic.

    Reliable, so both reliable and best-effort subscribers match; ``depth`` deep, so a
    subscriber that falls behind briefly loses nothing; transient local for latched topics
    (``/tf_static``), so nodes started after the replay began still get them.
    """
    latched = topic.rsplit('/', 1)[-1] in LATCHED_TOPIC_NAMES
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class BagPlayerNode(Node):
    """Publishes the recorded bytes of a bag's topics, and ``/clock`` when asked."""

    def __init__(self, plans: Sequence[TopicPlan], *, clock: bool = False,
                 qos_depth: int = 100, node_name: str = 'bag_player', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.plans: list[TopicPlan] = []
        #: live topic → why it is not published (its type is not installed, …)
        self.skipped: dict[str, str] = {}
        self._pubs: dict[str, Any] = {}
        for plan in plans:
            if plan.topic in self._pubs:  # several recorded topics remapped onto one
                self.plans.append(plan)
                continue
            reason = self._create_publisher(plan, qos_depth)
            if reason is None:
                self.plans.append(plan)
            else:
                self.skipped[plan.topic] = reason
                self.get_logger().warning(f'not replaying {plan.bag_topic}: {reason}')
        self._clock_pub = (self.create_publisher(
            Clock, CLOCK_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            if clock else None)

    def _create_publisher(self, plan: TopicPlan, depth: int) -> str | None:
        cls = message_class(plan.msgtype)
        if cls is None:
            return f'message type {plan.msgtype} is not installed here'
        try:
            self._pubs[plan.topic] = self.create_publisher(cls, plan.topic,
                                                           qos_for(plan.topic, depth))
        except Exception as error:  # noqa: BLE001 - e.g. type support missing: skip the topic
            return f'cannot publish {plan.msgtype}: {type(error).__name__}: {error}'
        return None

    def publish(self, message: PlayMessage) -> None:
        """Publish one recorded message (its CDR bytes) on its live topic."""
        self._pubs[message.topic].publish(message.data)

    def publish_clock(self, stamp: int) -> None:
        """Publish ``/clock`` at ``stamp`` ns of bag time."""
        self._clock_pub.publish(Clock(clock=time_from_ns(stamp)))

    def subscription_counts(self) -> dict[str, int]:
        """Return the subscribers matched per published topic (to see discovery finish)."""
        return {topic: pub.get_subscription_count() for topic, pub in self._pubs.items()}
