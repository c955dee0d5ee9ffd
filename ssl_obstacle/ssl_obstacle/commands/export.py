"""
``ssl-obstacle export BAG --out DATA.h5``: label a recorded run offline into a dataset file.

The bag is read with rosbags and fed, message by message in bag order, to the same
:class:`~ssl_obstacle.io.pipeline.LabelingPipeline` the live labeler node uses, so a
dataset exported from a bag holds the frames and labels the node would have published while
it was recorded. The output appears only when complete (see
:class:`~ssl_obstacle.core.dataset.DatasetWriter`).
"""

from __future__ import annotations

import argparse
from collections import Counter
import contextlib
from dataclasses import asdict, dataclass, field
import datetime
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..core.dataset import DatasetWriter
from ..core.params import LabelParams
from ..io.bags import (BagError, BagReader, feed_pipeline, FeedStats, message_count,
                       plan_streams, Stream)
from ..io.params_file import load_labeler_config, unknown_parameters
from ..io.pipeline import InputSettings, LabelingPipeline


class ExportError(RuntimeError):
    """Export cannot proceed; the message says why, in terms a user can act on."""


@dataclass
class ExportReport:
    """What an export did: enough for the summary, tests and benchmarks."""

    bag: str
    output: str
    storage: str
    topics: list[str]
    messages: int = 0
    camera_messages: int = 0
    frames_written: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    bad_inputs: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    sensor_names: tuple[str, ...] = ()
    distances: tuple[float, ...] = ()
    known_cells: np.ndarray | None = None  # (S, D): frames with the cell known
    positive_sum: np.ndarray | None = None  # (S, D): sum of labels over known cells


class _CellTally:
    """Per-cell statistics accumulated while frames stream past, in O(S·D) memory."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.known = np.zeros(shape, dtype=np.int64)
        self.positive = np.zeros(shape, dtype=np.float64)

    def add(self, labels: np.ndarray, counts: np.ndarray) -> None:
        known = counts > 0
        self.known += known
        self.positive += np.where(known, labels, 0.0)


def _load_config(params_path: str | None) -> tuple[LabelParams, InputSettings, str]:
    try:
        params, settings, values = load_labeler_config(params_path)
    except (OSError, ValueError, TypeError) as error:
        raise ExportError(f'cannot use parameter file {params_path!r}: {error}') from error
    except Exception as error:  # e.g. yaml.YAMLError: report it, do not trace it
        raise ExportError(f'cannot parse parameter file {params_path!r}: {error}') from error
    unknown = unknown_parameters(values)
    if unknown:
        print(f'warning: {params_path} sets unknown parameter(s) {", ".join(unknown)}; '
              'they are ignored', file=sys.stderr)
    transport = str(values.get('camera_transport', 'raw'))
    return params, settings, transport


def _check_output(out: pathlib.Path) -> None:
    directory = out.parent
    if not directory.exists():
        raise ExportError(f'output directory {str(directory)!r} does not exist')
    if not directory.is_dir():
        raise ExportError(f'output directory {str(directory)!r} is not a directory')
    if out.is_dir():
        raise ExportError(f'output path {str(out)!r} is a directory')
    if not os.access(directory, os.W_OK):
        raise ExportError(f'output directory {str(directory)!r} is not writable')


def export_bag(bag_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
               namespace: str = '', params: LabelParams | None = None,
               settings: InputSettings | None = None, camera_transport: str = 'raw',
               compression: str | None = None, progress: bool = False,
               poll_every: int = 256, prefetch: int = 4) -> ExportReport:
    """
    Export one bag to one dataset file; raise :class:`ExportError` if it cannot.

    On any failure, including ``KeyboardInterrupt``, nothing is left at ``out_path`` (an
    existing file there is kept unchanged) and no temporary file remains.
    """
    params = params or LabelParams()
    settings = settings or InputSettings()
    out = pathlib.Path(out_path)
    _check_output(out)
    started = time.perf_counter()
    try:
        with BagReader(bag_path) as bag:
            streams = plan_streams(bag.topics, namespace, params.sensor_names,
                                   settings.proximity_source, camera_transport)
            report = ExportReport(
                bag=str(bag_path), output=str(out), storage=bag.storage,
                topics=[s.topic for s in streams], sensor_names=tuple(params.sensor_names),
                distances=tuple(params.distances))
            pipeline = LabelingPipeline(params, settings)
            attrs = _provenance(bag_path, namespace, streams, settings, bag.storage)
            with DatasetWriter(out, image_size=(settings.image_height, settings.image_width),
                               sensor_names=params.sensor_names, distances=params.distances,
                               label_params=params.to_dict(), attrs=attrs,
                               compression=compression) as writer:
                _label_into(writer, bag, streams, pipeline, report, progress=progress,
                            poll_every=poll_every, prefetch=prefetch)
    except BagError as error:
        raise ExportError(str(error)) from error
    except OSError as error:  # writing the dataset: disk full, permissions, ...
        raise ExportError(f'cannot write {str(out)!r}: {error}') from error
    report.seconds = time.perf_counter() - started
    return report


def _label_into(writer: DatasetWriter, bag: BagReader, streams: Sequence[Stream],
                pipeline: LabelingPipeline, report: ExportReport, *, progress: bool,
                poll_every: int, prefetch: int) -> None:
    """Stream the bag through the pipeline into the writer, filling in the report."""
    connections = [connection for connection, _ in bag.connections(streams)]
    report.camera_messages = message_count(
        c for c in connections if c.topic == streams[0].topic)
    stats = FeedStats()
    tally = _CellTally((len(report.sensor_names), len(report.distances)))
    with tqdm(total=message_count(connections), unit='msg', unit_scale=True,
              disable=not progress, file=sys.stderr, mininterval=0.5, dynamic_ncols=True,
              desc='export') as bar, \
            contextlib.closing(feed_pipeline(  # closed: stops the reader thread on errors
                bag, streams, pipeline, stats=stats, poll_every=poll_every,
                progress=lambda n: _advance(bar, n, writer), prefetch=prefetch)) as labeled:
        for result in labeled:
            writer.append(result.payload, result.labels, result.counts, result.stamp,
                          result.pose)
            tally.add(result.labels, result.counts)
        _advance(bar, 0, writer)  # the frames finalised at the end of the bag
    report.frames_written = len(writer)
    _finish_report(report, pipeline, stats, tally)
    writer.set_attrs({'counters': report.counters, 'bad_inputs': dict(report.bad_inputs),
                      'rejected': dict(report.rejected)})


def _advance(bar: tqdm, messages: int, writer: DatasetWriter) -> None:
    bar.update(messages)
    if not bar.disable:
        bar.set_postfix_str(f'{len(writer)} labeled', refresh=False)


def _provenance(bag_path: Any, namespace: str, streams: Sequence[Any],
                settings: InputSettings, storage: str) -> dict[str, Any]:
    return {
        'source_bag': str(pathlib.Path(bag_path).resolve()),
        'source_storage': storage,
        'namespace': namespace,
        'topics': [s.topic for s in streams],
        'input_settings': asdict(settings),
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'created_by': f'ssl-obstacle export {__version__}',
    }


def _finish_report(report: ExportReport, pipeline: LabelingPipeline, stats: FeedStats,
                   tally: _CellTally) -> None:
    report.messages = stats.messages
    report.counters = pipeline.labeler.counters.as_dict()
    report.bad_inputs = Counter(pipeline.bad_inputs)
    if stats.undecodable:
        report.bad_inputs['deserialize'] += stats.undecodable
    report.rejected = Counter(pipeline.rejected)
    report.known_cells = tally.known
    report.positive_sum = tally.positive


# ---------------------------------------------------------------------- summary
def _counts_line(counts: Counter) -> str:
    return ', '.join(f'{kind} {n}' for kind, n in sorted(counts.items())) or 'none'


def format_summary(report: ExportReport) -> str:
    """Format the end-of-export summary: what went in, what came out, what was wrong."""
    c = report.counters
    rate = report.messages / report.seconds if report.seconds > 0 else 0.0
    fps = report.camera_messages / report.seconds if report.seconds > 0 else 0.0
    lines = [
        f'bag {report.bag} ({report.storage}): {report.messages} messages in '
        f'{report.seconds:.1f} s ({rate:.0f} msg/s, {fps:.0f} camera frames/s)',
        f'  topics: {" ".join(report.topics)}',
        f'  frames: in {report.camera_messages}, accepted {c.get("frames_in", 0)}, '
        f'labeled {c.get("frames_labeled", 0)}, dropped unlabeled '
        f'{c.get("frames_unlabeled", 0)}, evicted {c.get("frames_evicted", 0)}, '
        f'no odometry {c.get("no_odometry", 0)}',
        f'  finalised: complete {c.get("final_complete", 0)}, window '
        f'{c.get("final_window", 0)}, reach {c.get("final_reach", 0)}, end of bag '
        f'{c.get("final_flush", 0)}',
        f'  bad inputs: {_counts_line(report.bad_inputs)}',
        f'  late/rejected: {_counts_line(report.rejected)}; resets {c.get("resets", 0)} '
        f'(dropped {c.get("dropped_on_reset", 0)} pending frames)',
        f'  wrote {report.frames_written} frames to {report.output}',
    ]
    if report.known_cells is not None and report.frames_written:
        lines.append(_distance_table(report))
    return '\n'.join(lines)


def _distance_table(report: ExportReport, blocks: int = 3) -> str:
    """Known cells and obstacle share per distance, in side-by-side blocks to stay short."""
    known = report.known_cells.sum(axis=0)
    positive = report.positive_sum.sum(axis=0)
    total = report.frames_written * len(report.sensor_names)
    cells = [f'{d:5.2f} {k:7d} {100.0 * k / total:5.1f}% '
             f'{(100.0 * p / k if k else float("nan")):5.1f}%'
             for d, k, p in zip(report.distances, known, positive)]
    rows = -(-len(cells) // blocks)
    header = ' d[m]   known  known%  obst%'
    lines = [f'  known cells per distance (of {report.frames_written} frames x '
             f'{len(report.sensor_names)} sensors = {total}):',
             '  ' + ' | '.join([header] * min(blocks, len(cells)))]
    for row in range(rows):
        parts = [cells[i] for i in range(row, len(cells), rows)]
        lines.append('  ' + ' | '.join(f'{part:<{len(header)}}' for part in parts).rstrip())
    return '\n'.join(lines)


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``export`` subcommand."""
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap), or a single '
                                    '.mcap/.db3 file')
    parser.add_argument('--out', required=True, help='dataset file to write (HDF5)')
    parser.add_argument('--namespace', default='',
                        help="robot namespace of the topics, e.g. 'thymio10' (default: none)")
    parser.add_argument('--params', default=None,
                        help='ROS 2 parameter file of the labeler (default: built-in '
                             'defaults, as in config/labeler.yaml)')
    parser.add_argument('--compression', choices=('none', 'lzf', 'gzip'), default='none',
                        help='HDF5 compression of the datasets (default: none)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args: argparse.Namespace) -> int:
    """Run the export; 0 on success, 2 with ``error: ...`` on stderr when it cannot."""
    try:
        params, settings, transport = _load_config(args.params)
        report = export_bag(
            args.bag, args.out, namespace=args.namespace, params=params, settings=settings,
            camera_transport=transport,
            compression=None if args.compression == 'none' else args.compression,
            progress=not args.no_progress and sys.stderr.isatty())
    except ExportError as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; no dataset written', file=sys.stderr)
        return 130
    print(format_summary(report))
    if report.frames_written == 0:
        print('warning: no frame earned a label (did the robot move? do the topics match '
              'the parameters?)', file=sys.stderr)
    return 0
