"""
rosbag2 reading and writing with ``rosbags`` (pure Python, no ROS install needed).

Reading finds the streams of DESIGN.md §4 in a bag (sqlite3 or mcap; rosbags detects the
storage from ``metadata.yaml``), deserialises them in bag order and feeds them to the shared
:class:`~.pipeline.LabelingPipeline`, so export labels exactly as the live node does.
Writing serves tests, benchmarks and ``record``. Messages are rosbags dataclasses; this
module never imports rclpy, so ``ssl-obstacle export`` runs where ROS does not.

Failures are split in two: a bad *message* (undecodable, malformed, NaN) is counted and
skipped, because one glitch must not cost a whole run; a bad *bag* (missing, truncated,
corrupt, lacking a topic) raises :class:`BagError` with a message that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import pathlib
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from .conversions import BadInput
from .pipeline import LabelingPipeline, THYMIO_LASER_ORDER
from ..core.geometry import quaternion_from_yaw
from ..core.labeler import LabeledResult
from ..core.thymio import (LASER_ANGLES, LASER_SHIFT, PROXIMITY_FIELD_OF_VIEW,
                           PROXIMITY_MAX_RANGE, PROXIMITY_MIN_RANGE, raw_proximity_value)

try:  # only the image-message builders need OpenCV (JPEG/PNG encoding)
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
RANGE = 'sensor_msgs/msg/Range'
LASER_SCAN = 'sensor_msgs/msg/LaserScan'
ODOMETRY = 'nav_msgs/msg/Odometry'

#: Storage names accepted by :func:`write_bag` and shown in messages.
STORAGES: dict[str, StoragePlugin] = {'sqlite3': StoragePlugin.SQLITE3,
                                      'mcap': StoragePlugin.MCAP}

RANGE_INFRARED = 1  # sensor_msgs/Range.INFRARED


class BagError(RuntimeError):
    """The bag as a whole cannot be used (missing, corrupt, truncated, lacks topics)."""


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """
    Return the Jazzy message definitions, shared by all readers and writers.

    Image, Range, LaserScan and Odometry are unchanged since Humble, so bags of any
    current distro deserialise with them.
    """
    return get_typestore(Stores.ROS2_JAZZY)


def _project_msg_dir() -> pathlib.Path | None:
    """Find ssl_obstacle_msgs' .msg files: installed share directory, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = pathlib.Path(get_package_share_directory('ssl_obstacle_msgs')) / 'msg'
        if share.is_dir():
            return share
    except Exception:  # noqa: BLE001 - not installed: try the checkout
        pass
    source = pathlib.Path(__file__).resolve().parents[3] / 'ssl_obstacle_msgs' / 'msg'
    return source if source.is_dir() else None


@functools.lru_cache(maxsize=1)
def project_typestore() -> Any:
    """
    Return the Jazzy store plus this project's messages (LabeledFrame, …), for recording.

    rosbags only knows the distribution's messages; ours are registered from their .msg
    definitions, so bags with ``ground_truth/labels`` carry the exact ROS type.
    """
    from rosbags.typesys import get_types_from_msg

    store = get_typestore(Stores.ROS2_JAZZY)
    directory = _project_msg_dir()
    if directory is None:
        raise BagError('cannot find the ssl_obstacle_msgs message definitions')
    types: dict[str, Any] = {}
    for path in sorted(directory.glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'ssl_obstacle_msgs/msg/{path.stem}'))
    store.register(types)
    return store


# ---------------------------------------------------------------------- topics
def topic_name(namespace: str, relative: str) -> str:
    """Absolute topic of a relative name under a namespace (``''``, ``ns``, ``/ns/`` alike)."""
    namespace = namespace.strip('/')
    return f'/{namespace}/{relative}' if namespace else f'/{relative}'


@dataclass(frozen=True)
class Stream:
    """One input stream of the labeler, as found in a bag."""

    topic: str
    msgtype: str
    kind: str  # 'image', 'compressed', 'range', 'laser' or 'odom'
    sensor: str | None = None  # for 'range'


def plan_streams(topics: Mapping[str, str | None], namespace: str,
                 sensor_names: Sequence[str], proximity_source: str,
                 camera_transport: str = 'raw') -> list[Stream]:
    """
    Choose the bag topics to read, or explain precisely which ones are missing.

    ``topics`` maps each topic of the bag to its message type. The camera may be raw or
    compressed; when both were recorded ``camera_transport`` decides (raw by default,
    since it needs no decoding and loses nothing).
    """
    def wanted(relative: str, msgtype: str) -> tuple[str, str, bool]:
        topic = topic_name(namespace, relative)
        return topic, msgtype, topics.get(topic) == msgtype

    problems: list[str] = []
    streams: list[Stream] = []
    raw = wanted('camera/image_raw', IMAGE)
    compressed = wanted('camera/image_raw/compressed', COMPRESSED_IMAGE)
    camera_options = [raw, compressed] if camera_transport != 'compressed' else [compressed, raw]
    camera = next((option for option in camera_options if option[2]), None)
    if camera is None:
        problems.append(_describe_missing(topics, raw[0], raw[1]) + ' or '
                        + _describe_missing(topics, compressed[0], compressed[1]))
    else:
        streams.append(Stream(camera[0], camera[1],
                              'image' if camera[1] == IMAGE else 'compressed'))
    if proximity_source == 'laser':
        proximity = [(wanted('proximity/laser', LASER_SCAN), 'laser', None)]
    else:
        proximity = [(wanted(f'proximity/{name}', RANGE), 'range', name)
                     for name in sensor_names]
    proximity.append((wanted('odom', ODOMETRY), 'odom', None))
    hint = ''
    for (topic, msgtype, present), kind, sensor in proximity:
        if present:
            streams.append(Stream(topic, msgtype, kind, sensor))
            continue
        problems.append(_describe_missing(topics, topic, msgtype))
        if kind == 'range' and topics.get(topic_name(namespace, 'proximity/laser')):
            hint = ('. The bag has proximity/laser: set proximity_source: laser in the '
                    'parameter file')
        elif kind == 'laser' and topics.get(topic_name(namespace, 'proximity/center')):
            hint = ('. The bag has proximity/<sensor> ranges: set proximity_source: range '
                    'in the parameter file')
    if problems:
        found = ', '.join(f'{name} ({kind})' for name, kind in sorted(topics.items()))
        where = f' under namespace {namespace!r}' if namespace.strip('/') else ''
        raise BagError(f'missing topics{where}: {"; ".join(problems)}. '
                       f'The bag has: {found or "no topics"}{hint}'
                       f'{_namespace_hint(topics, namespace)}')
    return streams


def _namespace_hint(topics: Mapping[str, str | None], namespace: str) -> str:
    """Suggest the namespaces under which the bag has both odometry and a camera."""
    current = namespace.strip('/')
    prefixes = {topic[:-len('/odom')].strip('/') for topic, msgtype in topics.items()
                if topic.endswith('/odom') and msgtype == ODOMETRY}
    candidates = sorted(
        prefix for prefix in prefixes - {current}
        if topic_name(prefix, 'camera/image_raw') in topics
        or topic_name(prefix, 'camera/image_raw/compressed') in topics)
    if not candidates:
        return ''
    options = ' or '.join(repr(c) if c else "'' (none)" for c in candidates)
    return f'. Wrong namespace? The bag has a camera and odometry under namespace {options}'


def _describe_missing(topics: Mapping[str, str | None], topic: str, msgtype: str) -> str:
    if topic in topics:
        return f'{topic} has type {topics[topic]}, expected {msgtype}'
    return topic


# ---------------------------------------------------------------------- reading
def _storage_of(path: pathlib.Path) -> str:
    names = [p.name for p in path.iterdir()] if path.is_dir() else [path.name]
    if any('.mcap' in name for name in names):
        return 'mcap'
    if any('.db3' in name for name in names):
        return 'sqlite3'
    return 'unknown storage'


class BagReader:
    """
    A rosbag2 bag opened for reading, with every failure turned into :class:`BagError`.

    ``path`` is a bag directory (with ``metadata.yaml``) or a single ``.mcap``/``.db3``
    file, which rosbags reads without metadata (useful for a bag whose recorder died
    before writing it).
    """

    def __init__(self, path: str | pathlib.Path) -> None:
        """Open the bag and read its index; raise :class:`BagError` if it is unusable."""
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise BagError(f'bag {str(self.path)!r} does not exist')
        if self.path.is_dir() and not (self.path / 'metadata.yaml').exists():
            storage = [p.name for p in self.path.iterdir() if p.suffix in ('.mcap', '.db3')]
            hint = (f'; to read the storage file alone, pass {str(self.path / storage[0])!r}'
                    if storage else '')
            raise BagError(f'bag {str(self.path)!r} has no metadata.yaml: not a rosbag2 '
                           f'directory, or its recording did not finish{hint}')
        self.storage = _storage_of(self.path)
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags, sqlite and I/O errors alike
            raise BagError(self._explain('cannot open', error)) from error

    def _explain(self, action: str, error: BaseException) -> str:
        detail = str(error).strip().rstrip('.') or type(error).__name__
        return (f'{action} bag {str(self.path)!r} ({self.storage}): {detail} '
                f'(the bag is truncated or corrupt)')

    @property
    def topics(self) -> dict[str, str | None]:
        """Topic → message type (None if a topic was recorded with several types)."""
        return {name: info.msgtype for name, info in self._reader.topics.items()}

    @property
    def all_connections(self) -> list[Any]:
        """Every connection of the bag (topic, msgtype, msgcount …), in storage order."""
        return list(self._reader.connections)

    def time_range(self) -> tuple[int, int, int]:
        """
        Return ``(first, last, message count)`` from the bag's index or summary (ns).

        rosbags reports the end as one past the last message and a huge start for an empty
        bag; both are normalised here. A damaged index raises :class:`BagError`.
        """
        try:
            start, end = int(self._reader.start_time), int(self._reader.end_time)
            count = int(self._reader.message_count)
        except Exception as error:  # noqa: BLE001 - rosbags raises various errors here
            raise BagError(self._explain('cannot read the time range of', error)) from error
        if count == 0 or end <= start:
            return start, start, count
        return start, end - 1, count

    def connections(self, streams: Iterable[Stream]) -> list[tuple[Any, Stream]]:
        """Return the bag's connections that carry ``streams``, each with its stream."""
        by_topic = {stream.topic: stream for stream in streams}
        return [(connection, by_topic[connection.topic])
                for connection in self._reader.connections
                if connection.topic in by_topic
                and connection.msgtype == by_topic[connection.topic].msgtype]

    def messages(self, connections: Sequence[Any],
                 prefetch: int = 0) -> Iterator[tuple[Any, int, bytes]]:
        """
        Iterate ``(connection, log time ns, CDR bytes)`` in bag order; errors → BagError.

        With ``prefetch`` > 0 a background thread reads up to that many batches ahead, so
        storage reads overlap the caller's image decoding and resizing (which release the
        GIL): about a third faster on 640×480 raw frames. Order is unchanged.
        """
        source = self._guarded(connections)
        return _prefetched(source, prefetch) if prefetch > 0 else source

    def _guarded(self, connections: Sequence[Any]) -> Iterator[tuple[Any, int, bytes]]:
        try:
            yield from self._reader.messages(connections)
        except Exception as error:  # whatever the storage layer raises
            raise BagError(self._explain('cannot read', error)) from error

    def close(self) -> None:
        """Release the storage files."""
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> BagReader:
        """Use as a context manager that closes the bag."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the bag."""
        self.close()


_DONE = object()


def _prefetched(source: Iterator[Any], depth: int, batch: int = 16) -> Iterator[Any]:
    """
    Iterate ``source`` from a background thread, at most ``depth`` batches ahead.

    Memory stays bounded (``depth × batch`` items). Exceptions of the source, including
    :class:`BagError`, are re-raised in the consumer. When the consumer stops early (an
    error, Ctrl-C, ``break``) the thread is stopped and joined before this returns, so the
    bag is never closed under a running read.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            chunk: list[Any] = []
            for item in source:
                chunk.append(item)
                if len(chunk) == batch:
                    if not put(chunk):
                        return
                    chunk = []
            if not chunk or put(chunk):
                put(_DONE)
        except BaseException as error:  # handed over to the consumer thread
            put(error)
        finally:
            close = getattr(source, 'close', None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name='bag-prefetch', daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        thread.join()


@dataclass
class FeedStats:
    """What :func:`feed_pipeline` saw besides what the pipeline itself counts."""

    messages: int = 0
    undecodable: int = 0


def _handlers(pipeline: LabelingPipeline) -> dict[str, Callable[..., Any]]:
    return {'image': pipeline.on_image, 'compressed': pipeline.on_compressed_image,
            'laser': pipeline.on_laser, 'odom': pipeline.on_odometry}


def feed_pipeline(bag: BagReader, streams: Sequence[Stream], pipeline: LabelingPipeline,
                  *, stats: FeedStats | None = None, poll_every: int = 256,
                  progress: Callable[[int], Any] | None = None,
                  prefetch: int = 4) -> Iterator[LabeledResult]:
    """
    Feed every message of ``streams`` to ``pipeline``; yield frames as they are labeled.

    Bad messages are counted (``pipeline.bad_inputs`` by kind; undecodable CDR in
    ``stats.undecodable``) and skipped. ``pipeline.poll`` runs every ``poll_every``
    messages, which bounds memory without paying its cost per message; the labels do not
    depend on it. ``progress(n)`` is called with the number of messages since its last call.
    ``prefetch`` is passed to :meth:`BagReader.messages`.
    """
    stats = stats if stats is not None else FeedStats()
    handlers = _handlers(pipeline)
    store = typestore()
    dispatch: dict[int, tuple[str, Callable[[Any], Any]]] = {}
    selected = bag.connections(streams)
    for connection, stream in selected:
        if stream.kind == 'range':
            handler = functools.partial(pipeline.on_range, stream.sensor)
        else:
            handler = handlers[stream.kind]
        dispatch[connection.id] = (connection.msgtype, handler)
    deserialize = store.deserialize_cdr
    since_poll = 0
    for connection, _, rawdata in bag.messages([c for c, _ in selected], prefetch):
        msgtype, handler = dispatch[connection.id]
        since_poll += 1
        try:
            message = deserialize(rawdata, msgtype)
        except Exception:  # CDR that does not decode as its type
            stats.undecodable += 1
        else:
            try:  # noqa: SIM105 - the hot loop: cheaper than contextlib.suppress
                handler(message)
            except BadInput:
                pass  # counted by the pipeline, by kind
        if since_poll >= poll_every:
            stats.messages += since_poll
            if progress is not None:
                progress(since_poll)
            since_poll = 0
            yield from pipeline.poll()
    stats.messages += since_poll
    if progress is not None and since_poll:
        progress(since_poll)
    yield from pipeline.poll()
    yield from pipeline.flush()


def message_count(connections: Iterable[Any]) -> int:
    """Messages on ``connections`` according to the bag's index (for progress bars)."""
    return sum(int(connection.msgcount) for connection in connections)


# ---------------------------------------------------------------------- writing
class BagMessage(NamedTuple):
    """One message to write: ``stamp`` is the bag's (receive) time in ns."""

    topic: str
    msgtype: str
    stamp: int
    message: Any


class BagWriter:
    """
    Write messages to a new rosbag2 bag (sqlite3 or mcap); a context manager.

    Connections are created on first use of a topic. :meth:`write_serialized` takes CDR
    bytes as they come from ``rclpy.serialization`` (for ``record``); :meth:`write` takes a
    rosbags message object.
    """

    def __init__(self, path: str | pathlib.Path, storage: str = 'sqlite3',
                 version: int = 9) -> None:
        """Prepare the writer; rosbags refuses to overwrite an existing path."""
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, not {storage!r}')
        self._writer = Writer(pathlib.Path(path), version=version,
                              storage_plugin=STORAGES[storage])
        self._connections: dict[tuple[str, str], Any] = {}
        self._store = project_typestore()

    def _connection(self, topic: str, msgtype: str) -> Any:
        key = (topic, msgtype)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._connections[key] = connection
        return connection

    def write(self, topic: str, msgtype: str, stamp: int, message: Any) -> None:
        """Serialise and write one rosbags message object."""
        self.write_serialized(topic, msgtype, stamp,
                              self._store.serialize_cdr(message, msgtype))

    def write_serialized(self, topic: str, msgtype: str, stamp: int,
                         data: bytes | memoryview) -> None:
        """Write one message already in CDR form."""
        self._writer.write(self._connection(topic, msgtype), int(stamp), data)

    def __enter__(self) -> BagWriter:
        """Create the bag directory and open its storage."""
        self._writer.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Write the index and metadata.yaml, or abort the storage on an exception."""
        self._writer.__exit__(*exc_info)


def write_bag(path: str | pathlib.Path, messages: Iterable[BagMessage | tuple],
              storage: str = 'sqlite3') -> int:
    """Write ``(topic, msgtype, stamp_ns, message)`` tuples to a new bag; return the count."""
    count = 0
    with BagWriter(path, storage) as writer:
        for topic, msgtype, stamp, message in messages:
            writer.write(topic, msgtype, stamp, message)
            count += 1
    return count


# ---------------------------------------------------------------------- message builders
def _types() -> Any:
    return typestore().types


def header(stamp: int, frame_id: str) -> Any:
    """Build a ``std_msgs/Header`` at ``stamp`` ns."""
    types = _types()
    stamp = int(stamp)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=stamp // 1_000_000_000,
                                                   nanosec=stamp % 1_000_000_000),
        frame_id=frame_id)


def image_message(stamp: int, rgb: np.ndarray, encoding: str = 'rgb8',
                  frame_id: str = 'camera_link') -> Any:
    """Build a ``sensor_msgs/Image`` of an (H, W, 3) rgb array, as rgb8, bgr8 or mono8."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if encoding == 'rgb8':
        pixels = rgb
    elif encoding == 'bgr8':
        pixels = rgb[:, :, ::-1]
    elif encoding == 'mono8':
        pixels = rgb.mean(axis=2).round().astype(np.uint8)
    else:
        raise ValueError(f'cannot build an image with encoding {encoding!r}')
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return _types()[IMAGE](
        header=header(stamp, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=pixels.strides[0], data=pixels.reshape(-1))


def compressed_message(stamp: int, rgb: np.ndarray, fmt: str = 'jpeg', quality: int = 90,
                       frame_id: str = 'camera_link') -> Any:
    """Build a ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``) of an rgb array."""
    if cv2 is None:  # pragma: no cover
        raise RuntimeError('OpenCV is needed to compress images')
    bgr = cv2.cvtColor(np.asarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    if fmt == 'jpeg':
        ok, data = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == 'png':
        ok, data = cv2.imencode('.png', bgr)
    else:
        raise ValueError(f'format must be jpeg or png, not {fmt!r}')
    if not ok:  # pragma: no cover
        raise RuntimeError(f'OpenCV could not encode a {fmt} image')
    return _types()[COMPRESSED_IMAGE](header=header(stamp, frame_id), format=fmt,
                                      data=data.reshape(-1))


def range_message(stamp: int, sensor: str, value: float, frame_prefix: str = '') -> Any:
    """Build the driver's ``sensor_msgs/Range`` of one sensor (``-1.0``: nothing seen)."""
    return _types()[RANGE](
        header=header(stamp, f'{frame_prefix}proximity_{sensor}_link'),
        radiation_type=RANGE_INFRARED, field_of_view=PROXIMITY_FIELD_OF_VIEW,
        min_range=PROXIMITY_MIN_RANGE, max_range=PROXIMITY_MAX_RANGE, range=float(value),
        variance=0.0)


def laser_message(stamp: int, values: Mapping[str, float],
                  order: Sequence[str] = THYMIO_LASER_ORDER,
                  frame_id: str = 'laser_link') -> Any:
    """
    Build the driver's ``proximity/laser`` ``LaserScan`` from per-sensor ranges (m, -1.0).

    Like the driver, beams run right to left, every range is clamped into
    ``[min_range, max_range]`` and shifted by :data:`LASER_SHIFT`, and the raw sensor
    values go in ``intensities`` (0 = nothing seen).
    """
    angles = [LASER_ANGLES.get(name, 0.0) for name in order]
    ranges = [min(PROXIMITY_MAX_RANGE, max(PROXIMITY_MIN_RANGE, values[name])) + LASER_SHIFT
              for name in order]
    intensities = [raw_proximity_value(values[name]) for name in order]
    increment = (angles[-1] - angles[0]) / max(1, len(angles) - 1)
    return _types()[LASER_SCAN](
        header=header(stamp, frame_id), angle_min=float(angles[0]),
        angle_max=float(angles[-1]), angle_increment=float(increment), time_increment=0.0,
        scan_time=0.0, range_min=PROXIMITY_MIN_RANGE + LASER_SHIFT,
        range_max=PROXIMITY_MAX_RANGE + LASER_SHIFT,
        ranges=np.asarray(ranges, dtype=np.float32),
        intensities=np.asarray(intensities, dtype=np.float32))


def odometry_message(stamp: int, x: float, y: float, yaw: float, frame_id: str = 'odom',
                     child_frame_id: str = 'base_link') -> Any:
    """Build a ``nav_msgs/Odometry`` of a planar pose (zero twist: the labeler ignores it)."""
    types = _types()
    qx, qy, qz, qw = quaternion_from_yaw(yaw)
    pose = types['geometry_msgs/msg/Pose'](
        position=types['geometry_msgs/msg/Point'](x=float(x), y=float(y), z=0.0),
        orientation=types['geometry_msgs/msg/Quaternion'](x=qx, y=qy, z=qz, w=qw))
    vector = types['geometry_msgs/msg/Vector3']
    twist = types['geometry_msgs/msg/Twist'](linear=vector(x=0.0, y=0.0, z=0.0),
                                             angular=vector(x=0.0, y=0.0, z=0.0))
    return types[ODOMETRY](
        header=header(stamp, frame_id), child_frame_id=child_frame_id,
        pose=types['geometry_msgs/msg/PoseWithCovariance'](
            pose=pose, covariance=np.zeros(36, dtype=np.float64)),
        twist=types['geometry_msgs/msg/TwistWithCovariance'](
            twist=twist, covariance=np.zeros(36, dtype=np.float64)))


def messages_from_events(events: Iterable[Any], *, namespace: str = '',
                         camera: str = 'raw', encoding: str = 'rgb8', jpeg_quality: int = 90,
                         proximity: str = 'range',
                         laser_order: Sequence[str] = THYMIO_LASER_ORDER,
                         ) -> Iterator[BagMessage]:
    """
    Turn the ``Event`` stream of :mod:`ssl_obstacle.sim.scripted_run` into bag messages.

    ``camera`` is ``raw`` (Image in ``encoding``), ``jpeg`` or ``png``; ``proximity`` is
    ``range`` (one Range per sensor) or ``laser`` (one LaserScan per stamp, built from the
    five readings that share it). Messages are stamped and logged at their event's stamp.
    """
    camera_topic = topic_name(namespace, 'camera/image_raw')
    if camera != 'raw':
        camera_topic += '/compressed'
    odom_topic = topic_name(namespace, 'odom')
    laser_topic = topic_name(namespace, 'proximity/laser')
    pending: dict[str, float] = {}
    pending_stamp = 0

    def laser() -> Iterator[BagMessage]:
        if pending:
            yield BagMessage(laser_topic, LASER_SCAN, pending_stamp,
                             laser_message(pending_stamp, dict(pending), laser_order))
            pending.clear()

    for event in events:
        if proximity == 'laser' and pending and (
                event.kind != 'range' or event.stamp != pending_stamp):
            yield from laser()
        if event.kind == 'odom':
            yield BagMessage(odom_topic, ODOMETRY, event.stamp,
                             odometry_message(event.stamp, *event.pose))
        elif event.kind == 'frame':
            if camera == 'raw':
                message = image_message(event.stamp, event.image, encoding)
                yield BagMessage(camera_topic, IMAGE, event.stamp, message)
            else:
                message = compressed_message(event.stamp, event.image, camera, jpeg_quality)
                yield BagMessage(camera_topic, COMPRESSED_IMAGE, event.stamp, message)
        elif event.kind == 'range':
            if proximity == 'laser':
                pending[event.sensor] = event.value
                pending_stamp = event.stamp
            else:
                yield BagMessage(topic_name(namespace, f'proximity/{event.sensor}'), RANGE,
                                 event.stamp, range_message(event.stamp, event.sensor,
                                                            event.value))
    yield from laser()
