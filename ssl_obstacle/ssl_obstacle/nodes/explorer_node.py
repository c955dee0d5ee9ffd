"""
The explorer: the paper's data-collection behaviour, for the simulator and the real robot.

It only reads ``proximity/<name>`` (``sensor_msgs/Range``, the Thymio driver's convention)
and publishes ``cmd_vel``; the behaviour itself is :class:`~ssl_obstacle.core.explorer.
Explorer`. With ``use_sim_time`` its control timer follows the simulator's ``/clock``. For
safety on a real robot it stops when the proximity sensors go silent.
"""

from __future__ import annotations

from dataclasses import fields
import math
from typing import Any

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Range

from .runtime import declare_parameters, run_nodes
from ..core.explorer import Explorer, ExplorerSettings
from ..core.thymio import SENSOR_NAMES

NODE_PARAMETERS: dict[str, tuple[Any, str]] = {
    'sensor_names': (list(SENSOR_NAMES), 'front proximity sensors (proximity/<name>)'),
    'control_rate': (10.0, 'Hz: how often cmd_vel is computed and published'),
    'sensor_timeout': (0.5, 'seconds without proximity data before stopping'),
    'seed': (0, 'seed of the random turns'),
}


class ExplorerNode(Node):
    """Drives straight, backs off and turns at obstacles, and wanders: Nava et al.'s robot."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('explorer', **kwargs)
        defaults = ExplorerSettings()
        settings = declare_parameters(self, {
            spec.name: (float(getattr(defaults, spec.name)), 'see core/explorer.py')
            for spec in fields(ExplorerSettings)})
        values = declare_parameters(self, NODE_PARAMETERS)
        self.explorer = Explorer(ExplorerSettings(**settings), seed=int(values['seed']))
        self._timeout_ns = int(float(values['sensor_timeout']) * 1e9)
        self._ranges: dict[str, float] = {}
        self._last_reading_ns: int | None = None
        self._stopped_for_silence = False
        for name in values['sensor_names']:
            self.create_subscription(Range, f'proximity/{name}', self._on_range(name),
                                     qos_profile_sensor_data)
        self._cmd = self.create_publisher(Twist, 'cmd_vel', 10)
        self.create_timer(1.0 / float(values['control_rate']), self._control)
        self.get_logger().info(
            f'exploring at {self.explorer.settings.cruise_speed:g} m/s; turning away from '
            f'obstacles closer than {self.explorer.settings.obstacle_threshold:g} m')

    def _on_range(self, name: str):
        def callback(msg: Range) -> None:
            value = float(msg.range)
            self._ranges[name] = -1.0 if math.isnan(value) else value
            self._last_reading_ns = self.get_clock().now().nanoseconds
        return callback

    def _control(self) -> None:
        now = self.get_clock().now().nanoseconds
        if self._last_reading_ns is None or now - self._last_reading_ns > self._timeout_ns:
            if not self._stopped_for_silence and self._last_reading_ns is not None:
                self.get_logger().warning('proximity sensors silent: stopping')
            self._stopped_for_silence = self._last_reading_ns is not None
            self._cmd.publish(Twist())
            return
        self._stopped_for_silence = False
        linear, angular = self.explorer.update(now / 1e9, dict(self._ranges))
        msg = Twist()
        msg.linear.x, msg.angular.z = float(linear), float(angular)
        self._cmd.publish(msg)

    def close(self) -> None:
        """Stop the robot before going away."""
        self._cmd.publish(Twist())


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle explorer``."""
    run_nodes([ExplorerNode], args)


if __name__ == '__main__':
    main()
