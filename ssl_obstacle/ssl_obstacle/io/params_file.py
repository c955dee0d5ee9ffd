"""
Read the labeler's parameters from a ROS 2 parameter YAML file.

The node gets them from ``--ros-args --params-file``; export, which runs without ROS, reads
the same file through this module, so both use one configuration.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

import yaml

from .pipeline import InputSettings
from ..core.params import LabelParams

#: Parameters of the labeler node that are neither label rule nor input settings.
NODE_PARAMETERS: dict[str, Any] = {
    'camera_transport': 'raw',
    'queue_size': 200,
    # Camera frames waiting for the worker: 1/3 s at 30 Hz, 9 MB of raw 640x480 at most.
    'camera_queue_size': 10,
    # Odometry and proximity history: 2.5 s at 20 Hz covers a stalled executor (a loaded
    # computer, a GC pause); at under 1 kB a message it costs under 50 kB per topic.
    'sensor_qos_depth': 50,
    # 1/3 s at 30 Hz: a lost frame costs only itself, and each raw 640x480 one held 0.9 MB.
    'camera_qos_depth': 10,
    'stale_timeout': 1.0,
    'status_period': 1.0,
}
#: Parameters every rclpy node has.
_ROS_PARAMETERS = {'use_sim_time', 'qos_overrides', 'start_type_description_service'}


def unknown_parameters(values: Mapping[str, Any]) -> list[str]:
    """
    List the names in ``values`` that the labeler does not know.

    ROS ignores overrides of undeclared parameters without a word, so a typo such as
    ``tolx`` would silently keep the default; callers warn about these instead.
    """
    known = set(LabelParams().to_dict()) | set(InputSettings.__dataclass_fields__) | \
        set(NODE_PARAMETERS) | _ROS_PARAMETERS
    return sorted(name for name in values if name not in known
                  and not name.startswith('qos_overrides.'))


def read_ros_parameters(path: str | pathlib.Path, node_name: str = 'labeler') -> dict[str, Any]:
    """
    Read the ``ros__parameters`` for ``node_name`` (or ``/**``) from a parameter file.

    Entries under ``/**`` apply first, then those under the node's name in any namespace
    (``/**/labeler``, as the multi-node files of config/ write it), then under its plain name,
    as ``--params-file`` does for a node outside a namespace.
    """
    with open(path, encoding='utf-8') as stream:
        document = yaml.safe_load(stream) or {}
    if not isinstance(document, Mapping):
        raise ValueError(f'{path}: not a ROS 2 parameter file (top level is not a mapping)')
    merged: dict[str, Any] = {}
    for key in ('/**', '/**/' + node_name, node_name, '/' + node_name):
        section = document.get(key)
        if isinstance(section, Mapping) and isinstance(section.get('ros__parameters'), Mapping):
            merged.update(section['ros__parameters'])
    if not merged:
        raise ValueError(f'{path}: no ros__parameters for /** or {node_name}')
    return merged


def settings_from_mapping(values: Mapping[str, Any]) -> InputSettings:
    """Build input settings from a parameter mapping, ignoring unrelated keys."""
    kwargs: dict[str, Any] = {}
    for key in ('image_width', 'image_height'):
        if key in values:
            kwargs[key] = int(values[key])
    if 'proximity_source' in values:
        kwargs['proximity_source'] = str(values['proximity_source'])
    if 'laser_sensor_order' in values:
        kwargs['laser_sensor_order'] = tuple(str(v) for v in values['laser_sensor_order'])
    if 'max_image_pixels' in values:
        kwargs['max_image_pixels'] = int(values['max_image_pixels'])
    if 'too_close_is_obstacle' in values:
        kwargs['too_close_is_obstacle'] = bool(values['too_close_is_obstacle'])
    return InputSettings(**kwargs)


def load_labeler_config(path: str | pathlib.Path | None,
                        node_name: str = 'labeler') -> tuple[LabelParams, InputSettings, dict]:
    """Return label parameters, input settings and the raw mapping (defaults for None)."""
    if path is None:
        return LabelParams(), InputSettings(), {}
    values = read_ros_parameters(path, node_name)
    return LabelParams.from_mapping(values), settings_from_mapping(values), values


def node_sections(path: str | pathlib.Path) -> list[str]:
    """
    List the node names a parameter file has sections for (``/**/learner`` → ``learner``).

    The bringup files of config/ hold one section per node, so tests and ``ssl-obstacle up``
    can check each against what the named node declares.
    """
    with open(path, encoding='utf-8') as stream:
        document = yaml.safe_load(stream) or {}
    return [str(key).rsplit('/', 1)[-1] for key in document
            if str(key) != '/**' and isinstance(document[key], Mapping)]
