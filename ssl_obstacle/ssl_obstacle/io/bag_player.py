"""
Replaying a rosbag2 in recorded time: which topics, under which names, when (no ROS here).

``ssl-obstacle replay`` publishes a bag into live topics as ``ros2 bag play`` does, for
machines without rosbag2. Everything that decides *what* is published *when* lives here and
is testable without ROS or DDS: the topic plan (selection, namespace, remapping), the
messages of each pass over the bag, the timeline that turns bag time into wall time, and the
playback loop, which gets its publishing, clock and sleeping as callables. The node
(:mod:`ssl_obstacle.nodes.bag_player_node`) only owns the publishers.

Names (refinement of ``ros2 bag play``, see docs/architecture.md "Commands"):

* ``--namespace NS`` puts every recorded topic under ``/NS`` except the global ones of
  :data:`GLOBAL_TOPICS` (``/clock``, ``/tf``, ``/tf_static``, …), which ROS nodes subscribe
  to by absolute name whatever their namespace.
* ``--remap FROM:=TO`` rules are then applied as ROS applies ``-r`` rules to a node running
  in namespace ``NS``: a relative ``FROM`` or ``TO`` is resolved under ``/NS``, an absolute
  one is used as is, and the first rule that matches wins. Without a namespace this is
  exactly ``ros2 bag play --remap`` (its player node lives in ``/``, so ``camera:=cam`` and
  ``/camera:=/cam`` are the same rule).

Time: messages are scheduled at ``(bag_time − origin) / rate`` wall seconds after the start,
``origin`` being the bag's start time, against one monotonic start instant (a late message
never delays the next ones' schedule, so nothing drifts). A loop replays the same bag times
again: pass ``k`` is scheduled ``k × period`` later, and ``/clock`` jumps back at each pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import re
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from .bags import BagReader

#: Topics that stay where they are under ``--namespace`` (nodes use them by absolute name).
GLOBAL_TOPICS = frozenset({'/clock', '/tf', '/tf_static', '/rosout', '/parameter_events',
                           '/diagnostics'})

CLOCK_TOPIC = '/clock'

#: ``ros2 bag play --clock`` publishes at 40 Hz by default.
DEFAULT_CLOCK_HZ = 40.0

_NAME = re.compile(r'^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')


# ---------------------------------------------------------------------- names
def check_name(name: str, what: str = 'topic') -> str:
    """Return ``name`` if it is a valid ROS topic name (absolute or relative), else raise."""
    if not _NAME.match(name):
        raise ValueError(f'{what} {name!r} is not a valid ROS topic name (letters, digits, '
                         "'_', tokens separated by '/', no '~' or substitutions)")
    return name


def normalize_namespace(namespace: str) -> str:
    """Return ``'/ns'`` for ``'ns'``, ``'/ns/'`` or ``'/ns'``, and ``''`` for no namespace."""
    stripped = namespace.strip('/')
    if not stripped:
        return ''
    check_name(stripped, 'namespace')
    return f'/{stripped}'


def resolve(name: str, namespace: str = '') -> str:
    """Resolve a topic name as ROS does for a node in ``namespace`` (``''`` = root)."""
    check_name(name)
    if name.startswith('/'):
        return name
    return f'{normalize_namespace(namespace)}/{name}'


def parse_remap(rule: str) -> tuple[str, str]:
    """Split ``FROM:=TO`` (the syntax of ``ros2 bag play --remap`` and ``-r``)."""
    source, separator, target = rule.partition(':=')
    if not separator or not source or not target or ':=' in target:
        raise ValueError(f'remap rule {rule!r} is not of the form FROM:=TO')
    return check_name(source, 'remap source'), check_name(target, 'remap target')


def output_topic(bag_topic: str, namespace: str = '',
                 remaps: Sequence[tuple[str, str]] = ()) -> str:
    """
    Return the live topic of a recorded one: namespaced first, then remapped.

    ``bag_topic`` is absolute, as rosbag2 records it. See the module docstring for the rules.
    """
    ns = normalize_namespace(namespace)
    name = bag_topic if not ns or bag_topic in GLOBAL_TOPICS else f'{ns}{bag_topic}'
    for source, target in remaps:
        if resolve(source, ns) == name:
            return resolve(target, ns)
    return name


@dataclass(frozen=True)
class TopicPlan:
    """One recorded topic to publish: its name in the bag, its live name, its type."""

    bag_topic: str
    topic: str
    msgtype: str  # 'pkg/msg/Type'
    messages: int = 0  # in the bag (index), for progress


def plan_topics(connections: Iterable[tuple[str, str, int]], *, namespace: str = '',
                remaps: Sequence[tuple[str, str]] = (), topics: Sequence[str] = (),
                clock: bool = False) -> list[TopicPlan]:
    """
    Choose what to publish from ``(bag topic, msgtype, message count)`` connections.

    ``topics`` selects recorded topics (relative names are taken from the root, as in
    ``ros2 bag play --topics``); empty means all. With ``clock`` the player makes ``/clock``
    itself, so a recorded topic that would come out on ``/clock`` is left out. Raise
    ``ValueError`` naming what is wrong: a selected topic the bag lacks, or two recorded
    topics of different types sent to one live topic.
    """
    merged: dict[tuple[str, str], int] = {}
    for topic, msgtype, count in connections:
        merged[(topic, msgtype)] = merged.get((topic, msgtype), 0) + int(count)
    recorded = sorted({topic for topic, _ in merged})
    wanted = {resolve(topic) for topic in topics}
    missing = sorted(wanted - set(recorded))
    if missing:
        raise ValueError(f'topics not in the bag: {", ".join(missing)}. '
                         f'The bag has: {", ".join(recorded) or "no topics"}')
    plans: list[TopicPlan] = []
    types: dict[str, tuple[str, str]] = {}
    for (bag_topic, msgtype), count in sorted(merged.items()):
        if wanted and bag_topic not in wanted:
            continue
        topic = output_topic(bag_topic, namespace, remaps)
        if clock and topic == CLOCK_TOPIC:
            continue
        earlier = types.setdefault(topic, (bag_topic, msgtype))
        if earlier[1] != msgtype:
            raise ValueError(f'{earlier[0]} ({earlier[1]}) and {bag_topic} ({msgtype}) would '
                             f'both be published on {topic}')
        plans.append(TopicPlan(bag_topic, topic, msgtype, count))
    return plans


# ---------------------------------------------------------------------- messages
class PlayMessage(NamedTuple):
    """One recorded message to publish: live topic, type, CDR bytes, bag (receive) time."""

    topic: str
    msgtype: str
    data: bytes
    bag_time: int  # ns


def bag_connections(bag: BagReader) -> list[tuple[str, str, int]]:
    """Return ``(topic, msgtype, message count)`` of every connection of the bag."""
    return [(c.topic, c.msgtype, int(c.msgcount)) for c in bag.all_connections]


def read_pass(bag: BagReader, plans: Sequence[TopicPlan],
              prefetch: int = 4) -> Iterator[PlayMessage]:
    """
    Yield every message of ``plans`` once, in bag order, as CDR bytes ready to publish.

    Storage reads run ``prefetch`` batches ahead in a thread (see :meth:`BagReader.messages`),
    so reading overlaps the waits between messages. A damaged bag raises :class:`BagError`.
    """
    by_key = {(plan.bag_topic, plan.msgtype): plan for plan in plans}
    connections = [c for c in bag.all_connections if (c.topic, c.msgtype) in by_key]
    if not connections:
        return
    for connection, stamp, data in bag.messages(connections, prefetch):
        plan = by_key[(connection.topic, connection.msgtype)]
        # rclpy publishes serialized data only from ``bytes`` (not memoryview)
        yield PlayMessage(plan.topic, plan.msgtype,
                          data if type(data) is bytes else bytes(data), int(stamp))


# ---------------------------------------------------------------------- time
def parse_rate(text: str | float) -> float:
    """Return a playback rate: a positive factor, or ``inf`` for ``max`` or ``0``."""
    if isinstance(text, str) and text.strip().lower() in ('max', 'inf'):
        return math.inf
    try:
        rate = float(text)
    except ValueError as error:
        raise ValueError(f'rate {text!r} is not a number or "max"') from error
    if math.isnan(rate) or rate < 0:
        raise ValueError(f'rate must be positive (or 0/max: as fast as possible), not {text}')
    return math.inf if rate == 0 else rate


def loop_period(first: int, last: int, count: int) -> int:
    """
    Return the bag time (ns) between the starts of two passes of a loop.

    The next pass starts one mean message interval after the last message, so the pause
    between passes looks like the gaps within one; never less than 1 ms, so a bag with a
    single instant cannot loop at 100% CPU.
    """
    span = max(0, last - first)
    gap = span // max(1, count - 1)
    return span + max(gap, 1_000_000)


@dataclass(frozen=True)
class Timeline:
    """Maps bag time to wall time and back: ``wall = (bag − origin + pass·period) / rate``."""

    origin: int  # ns: bag time at wall offset 0
    rate: float = 1.0  # bag seconds per wall second; inf = as fast as possible
    period: int = 0  # ns of bag time per pass of a loop (0: no loop)

    @property
    def paced(self) -> bool:
        """Tell whether messages wait for their time (``False`` at rate ``max``)."""
        return math.isfinite(self.rate)

    def due(self, bag_time: int, pass_index: int = 0) -> float:
        """Wall seconds after the start at which this message is published."""
        if not self.paced:
            return 0.0
        return (bag_time - self.origin + pass_index * self.period) / (self.rate * 1e9)

    def bag_time_at(self, elapsed: float) -> tuple[int, int]:
        """Return ``(pass, bag time ns)`` the playback is at ``elapsed`` wall seconds in."""
        offset = int(round(max(0.0, elapsed) * self.rate * 1e9)) if self.paced else 0
        if self.period <= 0:
            return 0, self.origin + offset
        pass_index, within = divmod(offset, self.period)
        return int(pass_index), self.origin + within


class Scheduled(NamedTuple):
    """A message with its pass over the bag and its due time (wall seconds after start)."""

    due: float
    pass_index: int
    message: PlayMessage


def schedule(passes: Iterable[Iterable[PlayMessage]], timeline: Timeline) -> Iterator[Scheduled]:
    """
    Attach pass index and due time to the messages of each pass, in order.

    Stops at the first pass without messages, so looping over nothing cannot spin forever.
    """
    for pass_index, messages in enumerate(passes):
        empty = True
        for message in messages:
            empty = False
            yield Scheduled(timeline.due(message.bag_time, pass_index), pass_index, message)
        if empty:
            return


# ---------------------------------------------------------------------- playback
@dataclass
class PlayStats:
    """What a playback did so far (for the progress line, the summary and tests)."""

    messages: int = 0
    clock_messages: int = 0
    passes: int = 0  # passes started
    bag_time: int | None = None  # ns: last message's bag time
    bag_elapsed: int = 0  # ns of bag time played (from the origin, over all passes)
    wall_elapsed: float = 0.0  # s since the start
    max_lag: float = 0.0  # s: worst delay behind schedule
    per_topic: dict[str, int] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        """Bag seconds played per wall second (NaN before any time has passed)."""
        if self.wall_elapsed <= 0:
            return math.nan
        return self.bag_elapsed / 1e9 / self.wall_elapsed


class _Clock:
    """The ``/clock`` values: never ahead of the next message, monotonic within a pass."""

    def __init__(self, publish: Callable[[int], Any], stats: PlayStats) -> None:
        self._publish = publish
        self._stats = stats
        self.pass_index = -1
        self.last: int | None = None

    def send(self, pass_index: int, stamp: int) -> None:
        if pass_index == self.pass_index and self.last is not None and stamp <= self.last:
            return
        self.pass_index, self.last = pass_index, stamp
        self._publish(stamp)
        self._stats.clock_messages += 1


def play(scheduled: Iterable[Scheduled], timeline: Timeline, *,
         publish: Callable[[PlayMessage], Any],
         publish_clock: Callable[[int], Any] | None = None,
         clock_hz: float = DEFAULT_CLOCK_HZ,
         now: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], Any] = time.sleep,
         progress: Callable[[PlayStats], Any] | None = None,
         progress_period: float = 0.5,
         should_stop: Callable[[], bool] | None = None,
         stats: PlayStats | None = None) -> PlayStats:
    """
    Publish ``scheduled`` messages at their due times; return what was done.

    Waits are computed from one start instant (``now()`` at the call), never by sleeping a
    message's interval, so oversleeping or slow publishing does not accumulate: a late
    message goes out at once and the next ones keep their own times. With
    ``publish_clock``, ``/clock`` gets the playback's bag time every ``1/clock_hz`` wall
    seconds while waiting (never beyond the next message's time) and the message's own time
    right before a message newer than the last clock, so a ``use_sim_time`` subscriber never
    gets data stamped ahead of its clock. At rate ``max`` only the latter is published.
    ``should_stop`` is polled between messages and waits (e.g. the ROS context going down).
    """
    stats = stats if stats is not None else PlayStats()
    start = now()
    clock = _Clock(publish_clock, stats) if publish_clock is not None else None
    tick = 1.0 / clock_hz if clock is not None and clock_hz > 0 else math.inf
    next_tick = 0.0 if clock is not None else math.inf  # wall seconds after start
    next_progress = progress_period
    pass_index = -1

    def stopped() -> bool:
        return should_stop is not None and should_stop()

    for due, index, message in scheduled:
        if index != pass_index:
            pass_index, stats.passes = index, stats.passes + 1
        while timeline.paced:
            elapsed = now() - start
            if elapsed >= due or stopped():
                break
            if clock is not None and elapsed >= next_tick:
                tick_pass, tick_time = timeline.bag_time_at(elapsed)
                if tick_pass == index:  # never ahead of the message about to go out
                    tick_time = min(tick_time, message.bag_time)
                clock.send(tick_pass, tick_time)
                next_tick = max(next_tick + tick, elapsed - elapsed % tick + tick)
            sleep(max(0.0, min(due, next_tick) - elapsed))
        if stopped():
            break
        if clock is not None:
            clock.send(index, message.bag_time)
        publish(message)
        elapsed = now() - start
        if timeline.paced:
            stats.max_lag = max(stats.max_lag, elapsed - due)
        stats.messages += 1
        stats.per_topic[message.topic] = stats.per_topic.get(message.topic, 0) + 1
        stats.bag_time = message.bag_time
        stats.bag_elapsed = message.bag_time - timeline.origin + index * timeline.period
        stats.wall_elapsed = elapsed
        if progress is not None and elapsed >= next_progress:
            progress(stats)
            next_progress = elapsed + progress_period
    stats.wall_elapsed = now() - start
    if progress is not None:
        progress(stats)
    return stats


def passes(read: Callable[[], Iterable[PlayMessage]],
           loop: bool) -> Iterator[Iterable[PlayMessage]]:
    """Yield ``read()`` once, or forever with ``loop`` (each pass reads the bag again)."""
    yield read()
    while loop:
        yield read()


def topic_counts(plans: Sequence[TopicPlan]) -> Mapping[str, int]:
    """Messages per live topic in one pass, from the bag's index."""
    counts: dict[str, int] = {}
    for plan in plans:
        counts[plan.topic] = counts.get(plan.topic, 0) + plan.messages
    return counts
