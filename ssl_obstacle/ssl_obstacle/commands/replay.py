"""
``ssl-obstacle replay BAG``: publish a rosbag2 into live topics, as ``ros2 bag play`` does.

For machines without rosbag2 (the wheel environment): the bag is read with rosbags (sqlite3
or mcap, a bag directory or a bare ``.mcap``/``.db3`` file) and every recorded message is
published as its recorded CDR bytes at its recorded time, scaled by ``--rate``, optionally
with ``/clock`` for ``use_sim_time`` nodes and in a loop. What is published when is decided by
:mod:`ssl_obstacle.io.bag_player`;
:class:`~ssl_obstacle.nodes.bag_player_node.BagPlayerNode` owns the publishers.

Exit codes as ``export``: 0 when the bag was played to its end, 2 with one ``error: …`` line
(missing, truncated or corrupt bag, bad option), 130 on Ctrl-C (the normal way to stop
``--loop``; a summary of what was played is printed first).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from typing import Any, Sequence

from tqdm import tqdm

from ..io.bag_player import (bag_connections, DEFAULT_CLOCK_HZ, loop_period,
                             normalize_namespace, parse_rate, parse_remap, passes, plan_topics,
                             play, PlayStats, read_pass, resolve, schedule, Timeline,
                             topic_counts, TopicPlan)
from ..io.bags import BagError, BagReader


class ReplayError(RuntimeError):
    """Replay cannot proceed; the message says why, in terms a user can act on."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``replay`` subcommand."""
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap), or a single '
                                    '.mcap/.db3 file')
    parser.add_argument('--rate', default='1', type=str,
                        help="playback speed: 2 plays twice as fast; 0 or 'max' as fast as "
                             'possible (default: 1)')
    parser.add_argument('--clock', nargs='?', type=float, const=DEFAULT_CLOCK_HZ,
                        default=None, metavar='HZ',
                        help='publish /clock from the bag time, at HZ wall-clock Hz '
                             f'(default {DEFAULT_CLOCK_HZ:g}) and before every message; '
                             'a recorded /clock is then not replayed')
    parser.add_argument('--loop', action='store_true',
                        help='start over at the end, forever (bag times repeat: subscribers '
                             'see time jump back at each pass)')
    parser.add_argument('--namespace', default='',
                        help='put the recorded topics under /NS (except /clock, /tf, '
                             '/tf_static, /rosout, /parameter_events, /diagnostics)')
    parser.add_argument('--remap', nargs='+', action='extend', default=[],
                        metavar='FROM:=TO',
                        help='rename topics, applied after --namespace like ROS -r rules of a '
                             'node in that namespace (relative names resolve under it)')
    parser.add_argument('--topics', nargs='+', action='extend', default=[], metavar='TOPIC',
                        help='replay only these recorded topics (default: all)')
    parser.add_argument('--qos-depth', type=int, default=100,
                        help='history depth of the (reliable) publishers (default: 100)')
    parser.add_argument('--wait-for', nargs='+', action='extend', default=[],
                        metavar='TOPIC',
                        help='before playing, wait until these live topics (relative names '
                             'resolve under --namespace) have a subscriber')
    parser.add_argument('--delay', type=float, default=0.5,
                        help='wall seconds between creating the publishers (or the end of '
                             '--wait-for) and the first message, for DDS discovery '
                             '(default: 0.5)')
    parser.add_argument('--no-progress', action='store_true', help='no progress line')


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Check the options that do not need the bag; raise ReplayError naming the bad one."""
    try:
        rate = parse_rate(args.rate)
        remaps = [parse_remap(rule) for rule in args.remap]
        wait_for = [resolve(topic, normalize_namespace(args.namespace))
                    for topic in args.wait_for]
    except ValueError as error:
        raise ReplayError(str(error)) from error
    if args.clock is not None and not (math.isfinite(args.clock) and args.clock > 0):
        raise ReplayError(f'--clock rate must be a positive number of Hz, not {args.clock}')
    if args.qos_depth < 1:
        raise ReplayError(f'--qos-depth must be at least 1, not {args.qos_depth}')
    if not (math.isfinite(args.delay) and args.delay >= 0):
        raise ReplayError(f'--delay must be zero or more seconds, not {args.delay}')
    return {'rate': rate, 'remaps': remaps, 'wait_for': wait_for}


def _plan(bag: BagReader, args: argparse.Namespace, remaps: Sequence[tuple[str, str]],
          ) -> list[TopicPlan]:
    try:
        plans = plan_topics(bag_connections(bag), namespace=args.namespace, remaps=remaps,
                            topics=args.topics, clock=args.clock is not None)
    except ValueError as error:
        raise ReplayError(str(error)) from error
    if not plans:
        raise ReplayError(f'nothing to replay: bag {args.bag!r} has no messages on the '
                          'selected topics')
    return plans


class _Progress:
    """A tqdm line: messages, bag time, achieved rate, pass of a loop."""

    def __init__(self, enabled: bool, total: int | None, origin: int, loop: bool) -> None:
        self._bar = tqdm(total=total, unit='msg', unit_scale=True, disable=not enabled,
                         file=sys.stderr, dynamic_ncols=True, desc='replay', mininterval=0.5)
        self._origin = origin
        self._loop = loop
        self._shown = 0

    def __call__(self, stats: PlayStats) -> None:
        if self._bar.disable:
            return
        self._bar.update(stats.messages - self._shown)
        self._shown = stats.messages
        bag = (stats.bag_time - self._origin) / 1e9 if stats.bag_time is not None else 0.0
        postfix = f'bag {bag:7.1f} s, x{stats.achieved_rate:.2f}'
        if self._loop:
            postfix += f', pass {stats.passes}'
        self._bar.set_postfix_str(postfix, refresh=False)

    def close(self) -> None:
        self._bar.close()


def _init_context(context: Any) -> None:
    import rclpy
    try:  # Ctrl-C as KeyboardInterrupt, so we close the node ourselves (see nodes.runtime)
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # pragma: no cover - very old rclpy
        rclpy.init(args=['ssl-obstacle'], context=context)
    else:
        rclpy.init(args=['ssl-obstacle'], context=context,
                   signal_handler_options=SignalHandlerOptions.NO)


def _wait_for_subscribers(node: Any, topics: Sequence[str], context: Any) -> None:
    """Block until every topic in ``topics`` has a subscriber (Ctrl-C stops waiting)."""
    counts = node.subscription_counts()
    unknown = [topic for topic in topics if topic not in counts]
    if unknown:
        raise ReplayError(f'--wait-for {", ".join(unknown)}: not replayed; replayed topics: '
                          f'{", ".join(sorted(counts))}')
    told = False
    while context.ok():
        counts = node.subscription_counts()
        missing = [topic for topic in topics if counts[topic] == 0]
        if not missing:
            return
        if not told:
            print(f'waiting for subscribers on {", ".join(missing)}', file=sys.stderr)
            told = True
        time.sleep(0.05)


def replay(bag: BagReader, plans: Sequence[TopicPlan], args: argparse.Namespace, rate: float,
           stats: PlayStats, skipped: list[str], wait_for: Sequence[str] = ()) -> None:
    """
    Create the player node and publish the bag, filling ``stats`` and ``skipped`` (topics).

    The caller catches ``KeyboardInterrupt``; the node and the ROS context are closed here
    in any case.
    """
    import rclpy
    from rclpy.context import Context

    from ..nodes.bag_player_node import BagPlayerNode

    first, last, count = bag.time_range()
    context = Context()
    _init_context(context)
    node = None
    progress = None
    try:
        node = BagPlayerNode(plans, clock=args.clock is not None, qos_depth=args.qos_depth,
                             context=context)
        skipped.extend(sorted(node.skipped))
        if not node.plans:
            raise ReplayError('nothing to replay: no topic of the selection has a message '
                              'type installed here')
        timeline = Timeline(origin=first, rate=rate,
                            period=loop_period(first, last, count) if args.loop else 0)
        total = None if args.loop else sum(topic_counts(node.plans).values())
        progress = _Progress(not args.no_progress and sys.stderr.isatty(), total, first,
                             args.loop)
        _wait_for_subscribers(node, wait_for, context)
        time.sleep(args.delay)
        scheduled = schedule(passes(lambda: read_pass(bag, node.plans), args.loop), timeline)
        with contextlib.closing(scheduled):
            play(scheduled, timeline, publish=node.publish,
                 publish_clock=node.publish_clock if args.clock is not None else None,
                 clock_hz=args.clock or DEFAULT_CLOCK_HZ, progress=progress,
                 should_stop=lambda: not context.ok(), stats=stats)
    finally:
        if progress is not None:
            progress.close()
        if node is not None:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)


def format_summary(bag_path: str, storage: str, stats: PlayStats, skipped: Sequence[str],
                   interrupted: bool = False) -> str:
    """Summarise a replay: messages, bag and wall time, achieved rate, lag, skipped topics."""
    verb = 'interrupted after playing' if interrupted else 'played'
    passes = f' in {stats.passes} passes' if stats.passes > 1 else ''
    rate = stats.achieved_rate
    timing = (f'{stats.bag_elapsed / 1e9:.1f} s of bag time in {stats.wall_elapsed:.1f} s '
              f'(x{rate:.2f} achieved), ' if math.isfinite(rate) else '')
    lines = [f'{verb} {stats.messages} messages of {len(stats.per_topic)} topics from '
             f'{bag_path} ({storage}){passes}: {timing}{stats.clock_messages} /clock '
             f'messages, worst lag {stats.max_lag * 1e3:.0f} ms']
    if skipped:
        lines.append(f'  not replayed (message type missing here): {", ".join(skipped)}')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``replay``; 0 at the end of the bag, 2 with ``error: …`` on stderr, 130 on Ctrl-C."""
    stats = PlayStats()
    skipped: list[str] = []
    storage = '?'
    try:
        options = _options(args)
        with BagReader(args.bag) as bag:
            storage = bag.storage
            plans = _plan(bag, args, options['remaps'])
            for plan in plans:
                if plan.topic != plan.bag_topic:
                    print(f'  {plan.bag_topic} -> {plan.topic}', file=sys.stderr)
            replay(bag, plans, args, options['rate'], stats, skipped, options['wait_for'])
    except (ReplayError, BagError) as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print(format_summary(args.bag, storage, stats, skipped, interrupted=True))
        return 130
    print(format_summary(args.bag, storage, stats, skipped))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``replay`` on its own (``python -m ssl_obstacle.commands.replay BAG …``)."""
    from ..interrupts import interrupt_on_signals

    interrupt_on_signals()
    parser = argparse.ArgumentParser(prog='ssl-obstacle replay',
                                     description='Publish a rosbag2 into live ROS 2 topics.')
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
