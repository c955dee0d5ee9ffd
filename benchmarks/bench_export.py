"""
Benchmark ``ssl-obstacle export`` end to end: bag on disk → labeled HDF5 dataset.

Each run writes a synthetic bag of a scripted Thymio run (``generate_run``: camera 30 Hz,
five proximity sensors at 10 Hz, odometry 20 Hz), then exports it, each step in a fresh
subprocess so that the peak memory (``ru_maxrss``) of one run cannot contaminate another.
Export time covers everything the command does (opening the bag, reading, decoding,
labeling, writing and fsync-ing the dataset); writing the bag is timed separately and
excluded.

Two series, because 640×480 raw frames take 0.92 MB each (30 Hz: 1.66 GB per minute, a
60-minute bag would be ~100 GB):

* ``raw640``: 640×480 rgb8 ``Image`` (the size the ≥ 500 frames/s target is about), for
  the lengths whose bag fits in half the free disk space; longer ones are skipped, and the
  table says so.
* ``jpeg640``: 640×480 ``CompressedImage`` (JPEG, quality 90), as robots usually record,
  at every length (~40 KB per frame). Its per-frame cost includes JPEG decoding, so its
  frames/s is lower than raw; what it shows is how time and memory scale with the length
  of the run. Its frames are synthetic scenes (gradients, shapes, mild noise) rather than
  ``generate_run``'s uniform noise, which no real camera produces and which JPEG would
  inflate to ~10× the size.

The bag is read right after being written, so it is largely in the page cache (as for an
export run right after copying a bag off a robot); the machine conditions are printed.

Usage (``SSL_OBSTACLE_DEV=1`` benchmarks the source tree instead of the install space)::

    scripts/with_env.sh python benchmarks/bench_export.py            # 5, 15, 60 minutes
    scripts/with_env.sh python benchmarks/bench_export.py --quick    # 1 minute smoke run
    scripts/with_env.sh python benchmarks/bench_export.py --minutes 2 10 --storage sqlite3
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import numpy as np
from ssl_obstacle.io import bags
from ssl_obstacle.sim.scripted_run import generate_run

CAMERA_HZ = 30.0
FRAME_SHAPE = (480, 640)
RAW_FRAME_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1] * 3
SERIES = ('raw640', 'jpeg640')


# ---------------------------------------------------------------------- bag writing (child)
def scene_images(count: int = 8, seed: int = 1) -> list[np.ndarray]:
    """Return camera-like 640×480 frames: smooth gradients, a few shapes, sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = FRAME_SHAPE
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        base = rng.uniform(40, 200, size=3)
        slope = rng.uniform(-0.15, 0.15, size=(2, 3))
        image = base + rows[..., None] * slope[0] + cols[..., None] * slope[1]
        image = np.clip(image, 0, 255).astype(np.uint8)
        for _ in range(6):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cv2.circle(image, centre, int(rng.integers(20, 120)), colour, thickness=-1)
        noise = rng.normal(0, 3, size=image.shape)
        images.append(np.clip(image + noise, 0, 255).astype(np.uint8))
    return images


def bench_messages(minutes: float, series: str) -> Iterator[bags.BagMessage]:
    """Yield the run's messages; each distinct JPEG is encoded once, not once per frame."""
    if series == 'raw640':
        events = generate_run(60.0 * minutes, camera_hz=CAMERA_HZ, image_shape=FRAME_SHAPE)
        yield from bags.messages_from_events(events)
        return
    encoded = [bags.compressed_message(0, image).data for image in scene_images()]
    topic = bags.topic_name('', 'camera/image_raw/compressed')
    compressed_image = bags.typestore().types[bags.COMPRESSED_IMAGE]
    frame = 0
    for event in generate_run(60.0 * minutes, camera_hz=CAMERA_HZ, image_shape=None):
        if event.kind != 'frame':
            yield from bags.messages_from_events([event])
            continue
        message = compressed_image(header=bags.header(event.stamp, 'camera_link'),
                                   format='jpeg', data=encoded[frame % len(encoded)])
        frame += 1
        yield bags.BagMessage(topic, bags.COMPRESSED_IMAGE, event.stamp, message)


def write_child(path: str, minutes: float, series: str, storage: str) -> dict[str, Any]:
    """Write one benchmark bag; report its size and how long writing took."""
    started = time.perf_counter()
    count = bags.write_bag(path, bench_messages(minutes, series), storage)
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in pathlib.Path(path).iterdir())
    return {'messages': count, 'write_seconds': seconds, 'bag_bytes': size}


# ---------------------------------------------------------------------- export (child)
def export_child(bag: str, out: str) -> dict[str, Any]:
    """Export one bag in this fresh process; report time, CPU and peak memory."""
    from ssl_obstacle.commands.export import export_bag

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    report = export_bag(bag, out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        'export_seconds': seconds,
        'cpu_seconds': (usage.ru_utime - cpu_before.ru_utime)
        + (usage.ru_stime - cpu_before.ru_stime),
        'camera_frames': report.camera_messages,
        'frames_labeled': report.frames_written,
        'messages_read': report.messages,
        'baseline_rss_mb': baseline_kb / 1024,
        'peak_rss_mb': usage.ru_maxrss / 1024,
        'dataset_bytes': pathlib.Path(out).stat().st_size,
    }


# ---------------------------------------------------------------------- orchestration
def child(*argv: str) -> dict[str, Any]:
    """Run this script in a subprocess for one step; return its JSON report."""
    result = subprocess.run([sys.executable, __file__, *argv], check=True,
                            stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def estimated_bag_bytes(minutes: float, series: str) -> int:
    """Return roughly how big the bag will be, to skip runs the disk cannot hold."""
    frames = minutes * 60 * CAMERA_HZ
    per_frame = RAW_FRAME_BYTES if series == 'raw640' else 45_000
    return int(frames * (per_frame + 1000))


def machine_conditions(workdir: pathlib.Path) -> list[str]:
    """Describe what the figures were measured on: they mean little without it."""
    import cv2
    import h5py

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    free = shutil.disk_usage(workdir).free / 1e9
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    return [
        f'machine: {platform.machine()}, {os.cpu_count()} CPUs ({affinity} usable), '
        f'load {load}, {_memory_gb():.0f} GB RAM, {free:.0f} GB free in {workdir}',
        f'python {platform.python_version()}, numpy {np.__version__}, opencv '
        f'{cv2.__version__} ({cv2.getNumThreads()} threads), h5py {h5py.__version__}',
    ]


def _memory_gb() -> float:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    except (ValueError, OSError):  # pragma: no cover
        return float('nan')


def run_one(workdir: pathlib.Path, minutes: float, series: str, storage: str,
            ) -> dict[str, Any]:
    """Write, export, measure and delete one bag, or say why it was skipped."""
    needed = estimated_bag_bytes(minutes, series)
    free = shutil.disk_usage(workdir).free
    if needed > free / 2:
        return {'skipped': f'needs ~{needed / 1e9:.0f} GB, {free / 1e9:.0f} GB free'}
    bag = workdir / f'{series}_{minutes:g}min'
    out = workdir / f'{series}_{minutes:g}min.h5'
    try:
        written = child('--write-bag', str(bag), '--series', series,
                        '--storage', storage, '--minutes', str(minutes))
        exported = child('--export-bag', str(bag), str(out))
    finally:
        shutil.rmtree(bag, ignore_errors=True)
        out.unlink(missing_ok=True)
    return {**written, **exported}


def format_row(series: str, minutes: float, r: dict[str, Any]) -> str:
    """Format one line of the results table."""
    if 'skipped' in r:
        return f'{series:8} {minutes:5g}  skipped: {r["skipped"]}'
    fps = r['camera_frames'] / r['export_seconds']
    per_frame = 1e6 * r['export_seconds'] / r['camera_frames']
    return (f'{series:8} {minutes:5g} {r["camera_frames"]:8d} {r["bag_bytes"] / 1e9:7.2f} '
            f'{r["write_seconds"]:8.1f} {r["export_seconds"]:8.1f} {fps:8.0f} '
            f'{per_frame:8.0f} {r["cpu_seconds"] / r["export_seconds"]:5.2f} '
            f'{r["peak_rss_mb"]:8.0f} {r["baseline_rss_mb"]:8.0f} {r["frames_labeled"]:8d} '
            f'{r["dataset_bytes"] / 1e6:8.0f}')


HEADER = ('series     min   frames  bag GB  write s export s frames/s us/frame   cpu '
          ' peak MB  base MB  labeled  data MB')


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or one of its steps when invoked as a child process."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n', 1)[0])
    parser.add_argument('--minutes', type=float, nargs='+', default=[5.0, 15.0, 60.0],
                        help='run lengths in minutes (default: 5 15 60)')
    parser.add_argument('--quick', action='store_true',
                        help='1-minute smoke run of each series')
    parser.add_argument('--series', nargs='+', choices=SERIES, default=list(SERIES))
    parser.add_argument('--storage', choices=sorted(bags.STORAGES), default='mcap')
    parser.add_argument('--workdir', default=None,
                        help='where bags are written (default: a temporary directory)')
    parser.add_argument('--write-bag', help=argparse.SUPPRESS)
    parser.add_argument('--export-bag', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.write_bag:  # child process: write one bag
        print(json.dumps(write_child(args.write_bag, args.minutes[0], args.series[0],
                                     args.storage)))
        return 0
    if args.export_bag:  # child process: export one bag
        print(json.dumps(export_child(*args.export_bag)))
        return 0

    minutes = [1.0] if args.quick else args.minutes
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='bench_export_', dir=args.workdir))
    try:
        print('\n'.join(machine_conditions(workdir)))
        print(f'storage {args.storage}; export = open bag → read → decode → label → write '
              f'and fsync HDF5 (bag writing excluded); cpu = CPU time / wall time of the '
              f'export; peak MB = ru_maxrss of the export process, base MB = its RSS after '
              f'imports')
        print(HEADER, flush=True)
        for series in args.series:
            for length in minutes:
                result = run_one(workdir, length, series, args.storage)
                print(format_row(series, length, result), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
