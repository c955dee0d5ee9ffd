"""
One ``/diagnostics`` status per node, built the same way by every node of the package.

``rqt_runtime_monitor`` and ``diagnostic_aggregator`` show a node's problems as its
message and its counters as key/values; all our nodes report that way, so the level is
decided in one place: WARN as soon as there is a problem, OK otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node


def diagnostic_array(node: Node, task: str, values: Mapping[str, Any],
                     problems: Sequence[str], summary: str) -> DiagnosticArray:
    """
    Return the node's status: ``problems`` (WARN) or ``task`` (OK), then ``summary``.

    The name is ``<fully qualified node name>: <task>`` and the hardware id the namespace,
    so several robots' nodes stay apart in one monitor.
    """
    status = DiagnosticStatus(
        name=f'{node.get_fully_qualified_name()}: {task}', hardware_id=node.get_namespace(),
        level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
        message='; '.join([*problems, summary] if problems else [task, summary]),
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = node.get_clock().now().to_msg()
    return array
