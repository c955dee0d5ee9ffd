"""
``ssl-obstacle record``: a simulated run, as fast as the CPU allows, into a rosbag2.

The simulator and the explorer run in one loop without DDS (see
:mod:`ssl_obstacle.sim.closed_loop`), which makes the bag deterministic for a seed; the
messages are built by the same code as the simulator node publishes, serialised with rclpy
and written with rosbags. The bag is written under a temporary name and renamed when
complete, so an interrupted recording leaves nothing that looks like a bag.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
from typing import Any

from rclpy.serialization import serialize_message
from tqdm import tqdm

from ..core.explorer import Explorer
from ..core.params import LabelParams
from ..core.thymio import SENSOR_NAMES
from ..io.bags import BagWriter, topic_name
from ..io.sim_messages import SimMessages
from ..sim.camera import CameraModel, Renderer
from ..sim.closed_loop import ClosedLoop
from ..sim.simulator import SimSettings, Simulator
from ..sim.world import make_world, WORLD_NAMES


def ros_type_name(message: Any) -> str:
    """Return ``package/msg/Type`` of an rclpy message (the name bags store)."""
    cls = type(message)
    return f'{cls.__module__.split(".")[0]}/msg/{cls.__name__}'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``record``."""
    parser.add_argument('--out', required=True, help='bag directory to create')
    parser.add_argument('--minutes', type=float, default=10.0, help='simulated minutes')
    parser.add_argument('--world', default='boxes',
                        help=f'layout: {", ".join(WORLD_NAMES)} or random')
    parser.add_argument('--seed', type=int, default=0, help='seed of world, noise, explorer')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--compressed', action='store_true',
                        help='record camera/image_raw/compressed (JPEG) instead of raw images')
    parser.add_argument('--namespace', default='', help='record topics under /NAMESPACE/')
    parser.add_argument('--camera-width', type=int, default=320)
    parser.add_argument('--camera-height', type=int, default=240)
    parser.add_argument('--odom-noise', type=float, default=SimSettings().odom_noise,
                        help='relative wheel speed noise (0: exact odometry)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def record(out: pathlib.Path, minutes: float, world_name: str, seed: int, storage: str,
           compressed: bool = False, namespace: str = '', camera_size=(320, 240),
           odom_noise: float | None = None, progress: bool = True) -> dict[str, int]:
    """Record a run; return messages per topic."""
    world = make_world(world_name, seed)
    defaults = SimSettings()
    settings = SimSettings(camera_width=camera_size[0], camera_height=camera_size[1],
                           odom_noise=defaults.odom_noise if odom_noise is None else odom_noise,
                           sensor_names=SENSOR_NAMES, distances=LabelParams().distances)
    camera = CameraModel(width=settings.camera_width, height=settings.camera_height)
    sim = Simulator(world, settings, seed=seed, renderer=Renderer(world, camera))
    loop = ClosedLoop(sim, Explorer(seed=seed))
    builder = SimMessages(camera=camera, sensor_names=settings.sensor_names,
                          distances=settings.distances, namespace=namespace,
                          raw_camera=not compressed, compressed_camera=compressed)
    counts: dict[str, int] = {}
    partial = out.with_name(f'.{out.name}.partial-{os.getpid()}')
    duration_ns = int(round(minutes * 60e9))
    start = sim.now_ns
    bar = tqdm(total=round(minutes * 60), unit='sim s', disable=not progress,
               file=sys.stderr, dynamic_ncols=True, desc=f'recording {world.name}')
    try:
        with BagWriter(partial, storage=storage) as writer:
            while sim.now_ns - start < duration_ns:
                events = loop.step()
                messages = builder.clock(sim.now_ns)
                for event in events:
                    messages += [(topic, msg, event.stamp) for topic, msg in
                                 builder.messages(event)]
                for item in messages:
                    topic, msg = item[0], item[1]
                    stamp = item[2] if len(item) > 2 else sim.now_ns
                    name = topic_name(namespace, topic) if not topic.startswith('/') else topic
                    writer.write_serialized(name, ros_type_name(msg), stamp,
                                            serialize_message(msg))
                    counts[name] = counts.get(name, 0) + 1
                elapsed = (sim.now_ns - start) // 1_000_000_000
                if elapsed > bar.n:
                    bar.update(elapsed - bar.n)
        bar.close()
        partial.rename(out)
    except BaseException:
        bar.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    counts['_collisions'] = sim.collisions
    return counts


def run(args: argparse.Namespace) -> int:
    """Run ``record``; 0 on success, 2 with a one-line error."""
    out = pathlib.Path(args.out)
    if out.exists():
        print(f'error: {out} already exists; rosbag2 bags are never overwritten',
              file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(f'error: directory {out.parent} does not exist', file=sys.stderr)
        return 2
    try:
        counts = record(out, args.minutes, args.world, args.seed, args.storage,
                        args.compressed, args.namespace,
                        (args.camera_width, args.camera_height), args.odom_noise,
                        progress=not args.no_progress and sys.stderr.isatty())
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; no bag written', file=sys.stderr)
        return 130
    collisions = counts.pop('_collisions')
    print(f'wrote {out} ({args.storage}): {args.minutes:g} simulated minutes in world '
          f'{args.world!r}, seed {args.seed}, {collisions} collision(s)')
    for topic in sorted(counts):
        print(f'  {topic:40} {counts[topic]:8d} messages')
    return 0
