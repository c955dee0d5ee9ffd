"""
The ``scan_to_range`` adapter: Gazebo's single-ray scans in, the Thymio driver's ``Range`` out.

``ros_gz_bridge`` cannot produce ``sensor_msgs/Range``, so the Gazebo world carries each
front proximity sensor as a one-beam ``gpu_lidar`` bridged to ``proximity/<name>/scan``;
this node republishes every scan as ``proximity/<name>`` exactly as the robot's driver
would (see :mod:`ssl_obstacle.io.scan_conversion`), with the scan's own stamp. Bad scans
(no beams, an invalid stamp) are dropped with a rate-limited log line and counted in
``/diagnostics``; nothing is ever published from them.
"""

from __future__ import annotations

from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import LaserScan, Range

from .diagnostics import diagnostic_array
from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, run_nodes, wall_timer
from ..core.thymio import PROXIMITY_FIELD_OF_VIEW, PROXIMITY_MAX_RANGE, SENSOR_NAMES
from ..io.conversions import BadInput
from ..io.scan_conversion import range_from_scan, RangeSettings

PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(SENSOR_NAMES),
                     'sensors: proximity/<name>/scan (LaserScan) -> proximity/<name> (Range)'),
    'min_range': (0.0, 'metres: Range.min_range (the driver in Gazebo: 0)'),
    'max_range': (PROXIMITY_MAX_RANGE, 'metres: Range.max_range; farther = nothing seen (-1)'),
    'field_of_view': (PROXIMITY_FIELD_OF_VIEW, 'radians: Range.field_of_view'),
    'too_close_is_min_range': (True, 'report a reading nearer than min_range as min_range '
                                     '(an obstacle) instead of -inf (REP 117 too close)'),
    'frame_prefix': ('', "prepended to proximity_<name>_link (the driver's tf_prefix, "
                         "e.g. 'thymio10/')"),
    'qos_depth': (5, 'history depth of the scan subscriptions and Range publishers'),
    'status_period': (1.0, 'seconds between /diagnostics messages'),
}


class ScanToRangeNode(Node):
    """Republishes one-beam ``LaserScan`` messages as the Thymio driver's ``Range``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('scan_to_range', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.settings = RangeSettings(
            min_range=float(values['min_range']), max_range=float(values['max_range']),
            field_of_view=float(values['field_of_view']),
            too_close_is_min_range=bool(values['too_close_is_min_range']))
        self.sensor_names = [str(name) for name in values['sensor_names']]
        if not self.sensor_names or len(set(self.sensor_names)) != len(self.sensor_names):
            raise ValueError(f'sensor_names must be distinct and non-empty: {self.sensor_names}')
        self._frame_prefix = str(values['frame_prefix'])
        depth = max(1, int(values['qos_depth']))
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self.counters: dict[str, int] = {'scans_in': 0, 'ranges_out': 0, 'bad_inputs': 0}
        self.bad_inputs: dict[str, int] = {}
        # Scans arrive best effort or reliable (the bridge publishes reliable): a best-effort
        # subscription matches both. The ranges go out reliable, as the driver publishes
        # them, which best-effort subscribers (labeler, explorer) match as well.
        scan_qos = QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                              reliability=qos_profile_sensor_data.reliability,
                              durability=qos_profile_sensor_data.durability)
        range_qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self._range_publishers = {}
        for name in self.sensor_names:
            publisher = self.create_publisher(Range, f'proximity/{name}', range_qos)
            self._range_publishers[name] = publisher
            self.create_subscription(LaserScan, f'proximity/{name}/scan',
                                     self._on_scan(name, publisher), scan_qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        wall_timer(self, float(values['status_period']), self._publish_status)
        self.get_logger().info(
            f'republishing proximity/<name>/scan as sensor_msgs/Range on proximity/<name> for '
            f'{", ".join(self.sensor_names)} (range {self.settings.min_range:g}-'
            f'{self.settings.max_range:g} m, -1.0 = nothing seen)')

    def _on_scan(self, name: str, publisher: Any) -> Callable[[LaserScan], None]:
        def callback(msg: LaserScan) -> None:
            self.counters['scans_in'] += 1
            try:
                out = range_from_scan(msg, name, self.settings, self._frame_prefix)
            except BadInput as error:
                self.counters['bad_inputs'] += 1
                self.bad_inputs[error.kind] = self.bad_inputs.get(error.kind, 0) + 1
                self._log_bad(error.kind, f'proximity/{name}/scan: {error} (dropped)')
                return
            publisher.publish(out)
            self.counters['ranges_out'] += 1
        return callback

    def status_values(self) -> dict[str, int]:
        """Return the counters (inputs, outputs, bad inputs by kind) for diagnostics."""
        return {**self.counters, **{f'bad_{kind}': n for kind, n in self.bad_inputs.items()}}

    def _publish_status(self) -> None:
        values = self.status_values()
        problems = [f'{values["bad_inputs"]} bad scan(s) dropped'] if values['bad_inputs'] else []
        msg = diagnostic_array(self, 'scan to range', values, problems,
                               f'{values["ranges_out"]} ranges from {values["scans_in"]} scans')
        self._diagnostics.publish(msg)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle scan_to_range``."""
    run_nodes([ScanToRangeNode], args)


if __name__ == '__main__':
    main()
