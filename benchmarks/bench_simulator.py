#!/usr/bin/env python3
"""
Real-time factor of the built-in simulator with the camera at 15 Hz.

Three levels, each on the same world and seed:
  core    Simulator + camera rendering + IR sensors + odometry + ground-truth labels +
          the explorer (sim.closed_loop), no messages;
  record  the same plus building every ROS message and serialising it (what `record`
          does, minus disk writes);
  node    the SimulatorNode publishing over DDS as fast as possible (real_time_factor 0)
          while the explorer drives it and a subscriber takes the camera images.
Target: >= 5x real time at 320x240 for the node.

Run: scripts/with_env.sh python benchmarks/bench_simulator.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from ssl_obstacle.core.explorer import Explorer
from ssl_obstacle.io.sim_messages import SimMessages
from ssl_obstacle.nodes.explorer_node import ExplorerNode
from ssl_obstacle.nodes.simulator_node import SimulatorNode
from ssl_obstacle.sim.camera import CameraModel, Renderer
from ssl_obstacle.sim.closed_loop import ClosedLoop
from ssl_obstacle.sim.simulator import SimSettings, Simulator
from ssl_obstacle.sim.world import make_world


def offline_factor(seconds: float, width: int, height: int, messages: bool) -> float:
    world = make_world('boxes', 0)
    settings = SimSettings(camera_width=width, camera_height=height)
    camera = CameraModel(width=width, height=height)
    sim = Simulator(world, settings, seed=0, renderer=Renderer(world, camera))
    loop = ClosedLoop(sim, Explorer(seed=0))
    builder = SimMessages(camera=camera, sensor_names=settings.sensor_names,
                          distances=settings.distances)
    start = time.perf_counter()
    for event in loop.run(seconds):
        if messages:
            for _, msg in builder.messages(event):
                serialize_message(msg)
    return seconds / (time.perf_counter() - start)


def node_factor(seconds: float, width: int, height: int) -> tuple[float, int]:
    context = Context()
    rclpy.init(context=context)
    sim = SimulatorNode(context=context, parameter_overrides=[
        Parameter('real_time_factor', value=0.0), Parameter('duration', value=seconds),
        Parameter('camera_width', value=width), Parameter('camera_height', value=height)])
    explorer = ExplorerNode(context=context,
                            parameter_overrides=[Parameter('use_sim_time', value=True)])
    listener = Node('listener', context=context)
    images: list[int] = []
    listener.create_subscription(Image, 'camera/image_raw', lambda m: images.append(1),
                                 qos_profile_sensor_data)
    executors = []
    for node in (explorer, listener):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        executors.append(executor)
    start = time.perf_counter()
    sim_start = sim.sim.now_ns
    sim.finished.wait()
    elapsed = time.perf_counter() - start
    factor = (sim.sim.now_ns - sim_start) / 1e9 / elapsed
    for executor in executors:
        executor.shutdown()
    sim.close()
    for node in (sim, explorer, listener):
        node.destroy_node()
    rclpy.shutdown(context=context)
    return factor, len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0, help='simulated seconds')
    args = parser.parse_args()
    print(f'machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, python '
          f'{platform.python_version()}, numpy {np.__version__}; {args.seconds:g} simulated s, '
          'camera 15 Hz, proximity 10 Hz, odometry 20 Hz, physics 100 Hz, ground truth on')
    print(f'{"resolution":>11} {"core x":>8} {"record x":>9} {"node x":>8} {"images":>7}')
    for width, height in ((160, 120), (320, 240), (640, 480)):
        core = offline_factor(args.seconds, width, height, messages=False)
        recorded = offline_factor(args.seconds, width, height, messages=True)
        node, images = node_factor(args.seconds, width, height)
        print(f'{width:>5}x{height:<5} {core:8.1f} {recorded:9.1f} {node:8.1f} {images:7d}')
    print('x = simulated seconds per wall-clock second (real-time factor)')


if __name__ == '__main__':
    main()
