"""``ssl-obstacle record``: a simulated run into a real rosbag2 that rosbags reads back."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from rosbags.rosbag2 import Reader
from ssl_obstacle.commands.record import record
from ssl_obstacle.core.dataset import read_dataset
from ssl_obstacle.io.bags import project_typestore

SECONDS = 20.0


def read_back(path: pathlib.Path) -> dict[str, tuple[str, list[tuple[int, bytes]]]]:
    """
    Return every message per topic, re-serialised by rosbags.

    rclpy (Fast CDR) leaves alignment padding uninitialised, so the recorded bytes differ
    between runs where the messages do not; rosbags writes zero padding, which makes equal
    messages compare equal.
    """
    store = project_typestore()
    with Reader(path) as reader:
        topics: dict[str, tuple[str, list]] = {}
        for connection, stamp, data in reader.messages():
            message = store.deserialize_cdr(data, connection.msgtype)
            canonical = bytes(store.serialize_cdr(message, connection.msgtype))
            topics.setdefault(connection.topic, (connection.msgtype, []))[1].append(
                (stamp, canonical))
    return topics


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_record_writes_every_topic_at_its_rate(tmp_path, storage):
    out = tmp_path / 'run'
    counts = record(out, SECONDS / 60, 'boxes', 3, storage, namespace='thymio10',
                    progress=False)
    assert counts['_collisions'] == 0
    topics = read_back(out)
    expected = {  # topic: (type, rate Hz)
        '/clock': ('rosgraph_msgs/msg/Clock', 100.0),
        '/tf': ('tf2_msgs/msg/TFMessage', 20.0),
        '/thymio10/camera/image_raw': ('sensor_msgs/msg/Image', 15.0),
        '/thymio10/camera/camera_info': ('sensor_msgs/msg/CameraInfo', 15.0),
        '/thymio10/odom': ('nav_msgs/msg/Odometry', 20.0),
        '/thymio10/ground_truth/odom': ('nav_msgs/msg/Odometry', 20.0),
        '/thymio10/ground_truth/labels': ('ssl_obstacle_msgs/msg/LabeledFrame', 15.0),
        '/thymio10/cmd_vel': ('geometry_msgs/msg/Twist', 10.0),
        **{f'/thymio10/proximity/{name}': ('sensor_msgs/msg/Range', 10.0)
           for name in ('left', 'center_left', 'center', 'center_right', 'right')},
    }
    assert set(topics) == set(expected)
    for topic, (msgtype, rate) in expected.items():
        got_type, messages = topics[topic]
        assert got_type == msgtype, topic
        assert abs(len(messages) - rate * SECONDS) <= 2, (topic, len(messages))
        stamps = [stamp for stamp, _ in messages]
        assert stamps == sorted(stamps)


def test_same_seed_gives_the_same_bag_and_another_seed_does_not(tmp_path):
    first = read_back(_record(tmp_path / 'a', seed=5))
    second = read_back(_record(tmp_path / 'b', seed=5))
    other = read_back(_record(tmp_path / 'c', seed=6))
    assert first == second
    assert first['/odom'] != other['/odom']


def _record(path: pathlib.Path, seed: int) -> pathlib.Path:
    record(path, 5 / 60, 'pillars', seed, 'mcap', progress=False)
    return path


def test_recorded_bag_exports_through_the_command_line(tmp_path):
    bag = tmp_path / 'bag'
    command = [sys.executable, '-m', 'ssl_obstacle']
    done = subprocess.run([*command, 'record', '--out', str(bag), '--minutes', '0.5',
                           '--world', 'walls', '--compressed', '--storage', 'sqlite3'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '/camera/image_raw/compressed' in done.stdout
    data = tmp_path / 'data.h5'
    done = subprocess.run([*command, 'export', str(bag), '--out', str(data)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    dataset = read_dataset(data)
    assert len(dataset['stamps']) > 100
    assert (dataset['counts'] > 0).any()
    again = subprocess.run([*command, 'record', '--out', str(bag), '--minutes', '0.1'],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and 'already exists' in again.stderr
