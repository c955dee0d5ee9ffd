"""
The built-in world as a ROS node: Thymios with camera, IR sensors and odometry.

It publishes exactly what the ROS 2 Thymio driver and a camera driver publish (relative
topics, the driver's frames and ``-1.0`` for nothing seen), so the labeler and the learner
cannot tell it from the robot, plus ground truth for evaluation. The simulator owns time: a
loop thread steps the pure :class:`~ssl_obstacle.sim.simulator.Simulator`, publishes
``/clock`` and stamps everything with simulated time, paced by ``real_time_factor``
(0 = as fast as the CPU allows).

By default it simulates one robot in the node's own namespace. With ``robots`` it hosts a
fleet: each robot in a world of its own (``worlds``, seed ``seed + i``) under its own
namespace, all stepped in lockstep by the one loop thread on one ``/clock``, so every
robot's messages of one tick carry the same stamp.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import functools
import math
import threading
import time
from typing import Any

from geometry_msgs.msg import Twist
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidNamespaceException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.validate_namespace import validate_namespace

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
    'robots': ([], 'namespaces of a fleet, e.g. [thymio1, thymio2] (leading / optional): '
                   'each robot publishes under /<namespace>/ and obeys /<namespace>/cmd_vel, '
                   "all on one /clock; [] (or ['']) = one robot in the node's own namespace"),
    'worlds': ([], 'layout of each robot, one per robot in the order of robots; [] = `world` '
                   'for every robot. Robot i (from 0) uses seed `seed` + i'),
}

#: String lists with an empty default, which has no type rclpy could infer (it would take
#: ``[]`` for a byte array and then refuse a list of strings): declared with dynamic typing
#: and checked here, so ``[]``, ``['']`` and ``[a, b]`` work from Python, YAML and the
#: command line alike, on Humble as on Jazzy.
LIST_PARAMETERS = ('robots', 'worlds')


@dataclass
class _Robot:
    """One simulated robot of the fleet: its world, its messages and its publishers."""

    namespace: str  # absolute, e.g. '/thymio1' ('/' for the root namespace)
    world_name: str
    seed: int
    sim: Simulator
    builder: SimMessages
    publishers: dict[str, Publisher]


def declare_list_parameters(node: Node) -> dict[str, list[str]]:
    """
    Declare :data:`LIST_PARAMETERS` read-only and dynamically typed; return them as lists.

    Any empty array (rclpy types an empty override by guess, usually as bytes) and ``['']``
    (for launch files and YAML, which cannot always write an empty list) mean "none".
    """
    values = {}
    for name in LIST_PARAMETERS:
        default, text = PARAMETERS[name]
        value = node.declare_parameter(name, default, ParameterDescriptor(
            description=text, read_only=True, dynamic_typing=True)).value
        if value is None or (isinstance(value, (list, tuple, array.array)) and not len(value)):
            value = []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f'{name} must be a list of strings, got {value!r}')
        values[name] = [] if list(value) == [''] else list(value)
    return values


def robot_namespaces(robots: list[str]) -> list[str]:
    """
    Return the fleet's namespaces as absolute names, rejecting invalid or repeated ones.

    Robots' topics are created with absolute names, so a namespace must be valid as one;
    a repeated one would make two robots publish on, and obey, the same topics.
    """
    namespaces = []
    for name in robots:
        namespace = '/' + name.strip().strip('/')
        if namespace == '/':
            raise ValueError(f'robots: empty namespace in {robots!r}')
        try:
            validate_namespace(namespace)
        except InvalidNamespaceException as error:
            raise ValueError(f'robots: invalid namespace {name!r}: {error}') from None
        if namespace in namespaces:
            raise ValueError(f'robots: namespace {namespace!r} given twice in {robots!r}')
        namespaces.append(namespace)
    return namespaces


def robot_worlds(worlds: list[str], world: str, count: int) -> list[str]:
    """Return one layout per robot: ``worlds`` if given (one per robot), else ``world``."""
    if not worlds:
        return [world] * count
    if len(worlds) != count:
        raise ValueError(f'worlds has {len(worlds)} layout(s) for {count} robot(s): give one '
                         'per robot, in the order of robots, or none to use `world` for all')
    return list(worlds)


def sim_settings(values: dict[str, Any]) -> SimSettings:
    """Return the simulation settings named by the node's parameter values."""
    return SimSettings(
        camera_rate=float(values['camera_rate']), camera_width=int(values['camera_width']),
        camera_height=int(values['camera_height']),
        proximity_rate=float(values['proximity_rate']), odom_rate=float(values['odom_rate']),
        cmd_timeout=float(values['cmd_timeout']), odom_noise=float(values['odom_noise']),
        proximity_noise=float(values['proximity_noise']), sensor_names=SENSOR_NAMES,
        distances=LabelParams().distances, ground_truth=bool(values['ground_truth']),
        appearance_period=float(values['appearance_period']))


class SimulatorNode(Node):
    """
    Publishes the simulated robots' streams and obeys their ``cmd_vel``.

    ``sim`` is the first robot's :class:`Simulator` (the only one without ``robots``),
    ``sims`` all of them and ``namespaces`` their absolute namespaces, in the same order.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('simulator', **kwargs)
        values = declare_parameters(self, {name: spec for name, spec in PARAMETERS.items()
                                           if name not in LIST_PARAMETERS})
        try:  # a bad fleet is the caller's error: no half-built node left behind
            values.update(declare_list_parameters(self))
            self.values = values
            fleet = values['robots']
            namespaces = robot_namespaces(fleet) if fleet else [self.get_namespace()]
            worlds = robot_worlds(values['worlds'], str(values['world']), len(namespaces))
            self.settings = sim_settings(values)
            self.camera = CameraModel(width=self.settings.camera_width,
                                      height=self.settings.camera_height)
            seed = int(values['seed'])
            sims = [self._make_sim(name, seed + index) for index, name in enumerate(worlds)]
        except ValueError:
            self.destroy_node()
            raise
        #: The first robot's simulator: the one robot's without ``robots``.
        self.sim = sims[0]
        #: Every robot's simulator, stepped in lockstep (same settings, hence same ticks).
        self.sims: list[Simulator] = sims
        #: Each robot's absolute namespace, in the order of ``sims``.
        self.namespaces: list[str] = namespaces
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
        self._robots = self._make_robots(namespaces, worlds, seed, absolute=bool(fleet))
        #: The first robot's message builder.
        self.builder = self._robots[0].builder
        for robot in self._robots:
            self.get_logger().info(
                f'robot {robot.namespace}: world {robot.world_name!r} (seed {robot.seed})')
        self.get_logger().info(
            f'{len(self._robots)} robot(s) on one /clock, camera '
            f'{self.camera.width}x{self.camera.height} at {self.settings.camera_rate:g} Hz, '
            f'real-time factor {self._rtf:g}'
            + (f'; appearance re-drawn every {self.settings.appearance_period:g} s'
               if self.settings.appearance_period else '')
            + ('' if TFMessage else '; no tf2_msgs: no /tf'))
        self._thread = threading.Thread(target=self._loop, name='simulator', daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ wiring
    def _make_sim(self, world_name: str, seed: int) -> Simulator:
        """Build one robot's world, renderer and simulator (its seed drives all three)."""
        world = make_world(world_name, seed, bool(self.values['vary_appearance']))
        renderer = Renderer(world, self.camera, noise=float(self.values['image_noise']))
        return Simulator(world, self.settings, seed=seed, renderer=renderer)

    def _make_robots(self, namespaces: list[str], worlds: list[str], seed: int,
                     absolute: bool) -> list[_Robot]:
        """
        Create every robot's publishers and its ``cmd_vel`` subscription.

        One robot alone keeps the driver's relative topics (the node's namespace decides);
        a fleet's are absolute under each robot's namespace. ``/clock`` and ``/tf`` are
        shared: one publisher each, whatever the number of robots.
        """
        shared: dict[str, Publisher] = {}
        robots = []
        for index, (namespace, world_name, sim) in enumerate(zip(namespaces, worlds,
                                                                 self.sims)):
            builder = SimMessages(
                camera=self.camera, sensor_names=self.settings.sensor_names,
                distances=self.settings.distances, namespace=namespace,
                compressed_camera=bool(self.values['publish_compressed']),
                laser=bool(self.values['publish_laser']),
                label_size=(int(self.values['label_width']),
                            int(self.values['label_height'])))
            prefix = f'{namespace}/' if absolute else ''
            publishers: dict[str, Publisher] = {}
            for topic, msg_type in builder.topics().items():
                if topic == 'cmd_vel':
                    continue  # the explorer's (or a user's) topic, not ours
                if topic.startswith('/'):
                    if topic not in shared:
                        shared[topic] = self.create_publisher(msg_type, topic, 10)
                    publishers[topic] = shared[topic]
                    continue
                qos = QoSProfile(depth=100) if topic == 'ground_truth/labels' else SENSOR_QOS
                publishers[topic] = self.create_publisher(msg_type, prefix + topic, qos)
            self.create_subscription(Twist, prefix + 'cmd_vel',
                                     functools.partial(self._on_cmd_vel, index), 10)
            robots.append(_Robot(namespace, world_name, seed + index, sim, builder,
                                 publishers))
        return robots

    def _on_cmd_vel(self, index: int, msg: Twist) -> None:
        linear, angular = float(msg.linear.x), float(msg.angular.z)
        if not (math.isfinite(linear) and math.isfinite(angular)):
            self.bad_commands += 1
            self._log_bad(f'cmd_vel {index}',
                          f'{self.namespaces[index]} cmd_vel with non-finite values '
                          f'({linear}, {angular}): stopping the robot')
        with self._sim_lock:
            self.sims[index].set_command(linear, angular)

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
                with self._sim_lock:  # every robot's tick at once: one simulated time
                    ticks = [(robot, robot.sim.step()) for robot in self._robots]
                    now = self.sim.now_ns
                self._publish(self._robots[0], self.builder.clock(now))
                for robot, events in ticks:
                    for event in events:
                        self._publish(robot, robot.builder.messages(event))
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

    @staticmethod
    def _publish(robot: _Robot, messages: list[tuple[str, Any]]) -> None:
        for topic, msg in messages:
            robot.publishers[topic].publish(msg)

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
        """Stop the simulation loop and report every robot's collisions."""
        self._stop.set()
        self._go.set()
        self._thread.join(timeout=5.0)
        if len(self._robots) == 1:
            collisions = f'{self.sim.collisions} collision(s)'
        else:
            collisions = ', '.join(f'{robot.namespace} {robot.sim.collisions} collision(s)'
                                   for robot in self._robots)
        self.get_logger().info(
            f'stopped at {self.sim.now_ns / 1e9:.1f} s simulated; {collisions}')


def main(args: list[str] | None = None) -> None:
    """Entry point of ``ros2 run ssl_obstacle simulator``."""
    run_nodes([SimulatorNode], args)


if __name__ == '__main__':
    main()
