"""The nodes this package provides, by name, for ``ssl-obstacle run`` and tests."""

from __future__ import annotations

import importlib
from typing import Callable

from rclpy.node import Node

#: name → "module:Class" of every node the package runs.
NODES: dict[str, str] = {
    'labeler': 'ssl_obstacle.nodes.labeler_node:LabelerNode',
    'simulator': 'ssl_obstacle.nodes.simulator_node:SimulatorNode',
    'explorer': 'ssl_obstacle.nodes.explorer_node:ExplorerNode',
    'avoider': 'ssl_obstacle.nodes.avoider_node:AvoiderNode',
    'trainer': 'ssl_obstacle.nodes.trainer_node:TrainerNode',
    'predictor': 'ssl_obstacle.nodes.predictor_node:PredictorNode',
    'scan_to_range': 'ssl_obstacle.nodes.scan_to_range_node:ScanToRangeNode',
}


def node_factory(name: str) -> Callable[..., Node]:
    """Return the class of a node by its name; raise KeyError naming the known nodes."""
    if name not in NODES:
        raise KeyError(f'unknown node {name!r}; known: {", ".join(sorted(NODES))}')
    module, cls = NODES[name].split(':')
    return getattr(importlib.import_module(module), cls)
