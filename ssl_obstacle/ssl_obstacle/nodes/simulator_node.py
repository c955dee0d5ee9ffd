"""
The built-in world as a ROS node: a Thymio with camera, IR sensors and odometry.

It publishes exactly what the ROS 2 Thymio driver and a camera driver publish (relative
topics, the driver's frames and ``-1.0`` for nothing seen), so the labeler and the learner
cannot tell it from the robot, plus ground truth for evaluation. The simulator owns time: a
loop thread steps the pure :class:`~ssl_obstacle.sim.simulator.Simulator`, publishes
``/clock`` and stamps everything with simulated time, paced by ``real_time_factor``
(0 = as fast as the CPU allows).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from .rate_limited_log import RateLimitedLog
from .runtime import declare_parameters, is_shutdown_error, run_nodes
from ..core.params import LabelParams
from ..core.thymio import SENSOR_NAMES
from ..io.sim_messages import SimMessages, TFMessage
from ..sim.camera import CameraModel, Renderer
from ..sim.simulator import SimSettings, Simulator
from ..sim.world import make_world, WORLD_NAMES

#: Like the Thymio driver (reliable), with room for bursts when running faster than real time.
SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

PARAMETERS: dict[str, tuple[Any, str]] = {
    'world': ('boxes', f'layout: {", ".join(WORLD_NAMES)} or random'),
    'seed': (0, 'seed of the random world, noise and start pose'),
    'vary_appearance': (False, 'relight and tint the world from the seed'),
    'appearance_period': (0.0, 'simulated seconds between re-draws of colours, textures and '
                               'light, geometry kept (domain randomisation); 0 = never'),
    'real_time_factor': (1.0, 'simulated seconds per wall second; 0 = as fast as possible'),
    'camera_width': (320, 'pixels'),
    'camera_height': (240, 'pixels'),
    'camera_rate': (15.0, 'Hz'),
    'publish_compressed': (False, 'also publish camera/image_raw/compressed (JPEG)'),
    'proximity_rate': (10.0, 'Hz'),
    'publish_laser': (False, "also publish the driver's proximity/laser LaserScan"),
    'odom_rate': (20.0, 'Hz'),
    'odom_noise': (0.02, 'relative std of wheel speed noise (0 = odometry is exact)'),
    'proximity_noise': (0.003, 'metres std of IR readings'),
    'image_noise': (2.0, 'std of pixel noise'),
    'cmd_timeout': (0.5, 'simulated seconds without cmd_vel before the robot stops'),
    'ground_truth': (True, 'publish ground_truth/labels for every camera frame'),
    'label_width': (80, 'pixels: image width in ground_truth/labels'),
    'label_height': (64, 'pixels: image height in ground_truth/labels'),
    'duration': (0.0, 'simulated seconds to run, then stop publishing (0 = forever)'),
}


class SimulatorNode(Node):
    """Publishes the simulated robot's streams and obeys ``cmd_vel``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('simulator', **kwargs)
        values = declare_parameters(self, PARAMETERS)
        self.values = values
        world = make_world(str(values['world']), int(values['seed']),
                           bool(values['vary_appearance']))
        label_params = LabelParams()
        self.settings = SimSettings(
            camera_rate=float(values['camera_rate']),
            camera_width=int(values['camera_width']),
            camera_height=int(values['camera_height']),
            proximity_rate=float(values['proximity_rate']),
            odom_rate=float(values['odom_rate']),
            cmd_timeout=float(values['cmd_timeout']),
            odom_noise=float(values['odom_noise']),
            proximity_noise=float(values['proximity_noise']),
            sensor_names=SENSOR_NAMES,
            distances=label_params.distances,
            ground_truth=bool(values['ground_truth']),
            appearance_period=float(values['appearance_period']),
        )
        self.camera = CameraModel(width=self.settings.camera_width,
                                  height=self.settings.camera_height)
        renderer = Renderer(world, self.camera, noise=float(values['image_noise']))
        self.sim = Simulator(world, self.settings, seed=int(values['seed']), renderer=renderer)
        self._first_ns = self.sim.now_ns
        self._sim_lock = threading.Lock()
        self._rtf = max(0.0, float(values['real_time_factor']))
        self._duration_ns = int(float(values['duration']) * 1e9)
        self._stop = threading.Event()
        self.bad_commands = 0
        self._log_bad = RateLimitedLog(self.get_logger().warning, period=5.0)
        self.finished = threading.Event()
        # Set while the simulation may run; cleared by hold() (the demo paces it to learning).
        self._go = threading.Event()
        self._go.set()
        self._make_publishers()
        self.create_subscription(Twist, 'cmd_vel', self._on_cmd_vel, 10)
        self.get_logger().info(
            f'world {world.name!r} (seed {values["seed"]}), camera '
            f'{self.camera.width}x{self.camera.height} at {self.settings.camera_rate:g} Hz, '
            f'real-time factor {self._rtf:g}'
            + (f'; appearance re-drawn every {self.settings.appearance_period:g} s'
               if self.settings.appearance_period else '')
            + ('' if TFMessage else '; no tf2_msgs: no /tf'))
        self._thread = threading.Thread(target=self._loop, name='simulator', daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ wiring
    def _make_publishers(self) -> None:
        self.builder = SimMessages(
            camera=self.camera, sensor_names=self.settings.sensor_names,
            distances=self.settings.distances, namespace=self.get_namespace(),
            compressed_camera=bool(self.values['publish_compressed']),
            laser=bool(self.values['publish_laser']),
            label_size=(int(self.values['label_width']), int(self.values['label_height'])))
        self._topic_publishers = {}
        for topic, msg_type in self.builder.topics().items():
            if topic == 'cmd_vel':
                continue  # the explorer's (or a user's) topic, not ours
            qos = QoSProfile(depth=100) if topic == 'ground_truth/labels' else \
                10 if topic.startswith('/') else SENSOR_QOS
            self._topic_publishers[topic] = self.create_publisher(msg_type, topic, qos)

    def _on_cmd_vel(self, msg: Twist) -> None:
        linear, angular = float(msg.linear.x), float(msg.angular.z)
        if not (math.isfinite(linear) and math.isfinite(angular)):
            self.bad_commands += 1
            self._log_bad('cmd_vel', f'cmd_vel with non-finite values ({linear}, {angular}): '
                                     'stopping the robot')
        with self._sim_lock:
            self.sim.set_command(linear, angular)

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        try:
            start_wall = time.monotonic()
            start_sim = self.sim.now_ns
            while not self._stop.is_set():
                if not self._go.is_set():
                    self._go.wait(0.1)
                    # Simulated time stood still: pace the real-time factor from here.
                    start_wall = time.monotonic()
                    start_sim = self.sim.now_ns
                    continue
                with self._sim_lock:
                    events = self.sim.step()
                    now = self.sim.now_ns
                self._publish(self.builder.clock(now))
                for event in events:
                    self._publish(self.builder.messages(event))
                if self._duration_ns and now - self._first_ns >= self._duration_ns:
                    break
                if self._rtf > 0:
                    delay = start_wall + (now - start_sim) / 1e9 / self._rtf - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
        except Exception as error:  # noqa: BLE001 - report, do not die silently
            if not is_shutdown_error(error) and not self._stop.is_set():
                self.get_logger().error(f'simulation stopped: {type(error).__name__}: {error}')
        finally:
            self.finished.set()

    def _publish(self, messages: list[tuple[str, Any]]) -> None:
        for topic, msg in messages:
            self._topic_publishers[topic].publish(msg)

    # ------------------------------------------------------------------ pacing
    def hold(self) -> None:
        """
        Stop simulated time after the current tick until :meth:`release` (nothing is lost).

        For a process that runs faster than real time and needs the rest of the system to
        keep up, e.g. the demo, which gives the learner a fixed number of training steps
        per simulated second as a robot driving in real time would get.
        """
        self._go.clear()

    def release(self) -> None:
        """Let simulated time run again after :meth:`hold`."""
        self._go.set()

    @property
    def held(self) -> bool:
        """Return whether simulated time is held."""
        return not self._go.is_set()

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the simulation loop."""
        self._stop.set()
        self._go.set()
        self._thread.join(timeout=5.0)
        self.get_logger().info(
            f'stopped at {self.sim.now_ns / 1e9:.1f} s simulated; '
            f'{self.sim.collisions} collision(s)')


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle simulator``."""
    run_nodes([SimulatorNode], args)


if __name__ == '__main__':
    main()
