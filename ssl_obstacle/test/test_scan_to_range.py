"""The scan_to_range adapter: Gazebo's one-beam scans become the Thymio driver's Range."""

from __future__ import annotations

import math

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import LaserScan, Range
from ssl_obstacle.core.thymio import NOTHING_SEEN, SENSOR_NAMES
from ssl_obstacle.io.conversions import BadInput, range_saw_obstacle
from ssl_obstacle.io.scan_conversion import (beam_range, check_stamp, range_from_scan,
                                             RangeSettings)
from ssl_obstacle.nodes.scan_to_range_node import ScanToRangeNode
from std_msgs.msg import Header

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
INF = math.inf


def scan(ranges, sec: int = 12, nanosec: int = 345_000_000) -> LaserScan:
    """Build a scan as ros_gz_bridge delivers a one-beam gpu_lidar's."""
    return LaserScan(header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id='thymio/x'),
                     angle_min=0.0, angle_max=0.0, angle_increment=0.0, range_min=0.005,
                     range_max=0.14, ranges=[float(r) for r in ranges])


# ------------------------------------------------------------------- conversion (pure)
@pytest.mark.parametrize('ranges, expected', [
    ([0.05], 0.05),                 # a hit inside the range
    ([0.0], 0.0),                   # touching, exactly min_range
    ([0.14], 0.14),                 # exactly max_range still counts
    ([INF], NOTHING_SEEN),          # Gazebo: nothing within max range
    ([0.1400001], NOTHING_SEEN),    # beyond max_range (float32 noise past the limit)
    ([float('nan')], NOTHING_SEEN),
    ([-INF], 0.0),                  # nearer than the lidar's min: an obstacle at contact
    ([-0.001], 0.0),                # noise below min_range: still contact
    ([INF, 0.09, 0.03], 0.03),      # several beams: the nearest return
    ([float('nan'), INF], NOTHING_SEEN),
])
def test_beam_range_follows_the_driver_convention(ranges, expected):
    assert beam_range(ranges) == pytest.approx(expected)


def test_too_close_can_be_reported_as_the_driver_does():
    settings = RangeSettings(too_close_is_min_range=False)
    assert beam_range([-INF], settings) == -INF
    assert beam_range([0.05], settings) == pytest.approx(0.05)


def test_min_range_is_honoured():
    settings = RangeSettings(min_range=0.0215)
    assert beam_range([0.01], settings) == pytest.approx(0.0215)
    assert beam_range([0.03], settings) == pytest.approx(0.03)


def test_empty_scan_and_bad_stamps_are_bad_input():
    with pytest.raises(BadInput) as error:
        beam_range([])
    assert error.value.kind == 'scan_empty'
    with pytest.raises(BadInput) as error:
        check_stamp(Time(sec=1, nanosec=1_500_000_000))
    assert error.value.kind == 'bad_stamp'

    class FloatStamp:  # bag readers may hand over plain objects
        sec, nanosec = float('nan'), 0
    with pytest.raises(BadInput) as error:
        check_stamp(FloatStamp())
    assert error.value.kind == 'bad_stamp'
    check_stamp(Time(sec=0, nanosec=0))  # the first scan of a simulation is valid


@pytest.mark.parametrize('bad', [{'min_range': -0.1}, {'max_range': 0.0},
                                 {'min_range': 0.2, 'max_range': 0.1},
                                 {'max_range': float('inf')}, {'field_of_view': 0.0}])
def test_settings_reject_ambiguous_limits(bad):
    with pytest.raises(ValueError):
        RangeSettings(**bad)


def test_range_message_matches_the_driver_and_the_labeler_reads_it():
    msg = range_from_scan(scan([0.06]), 'center_left', frame_prefix='thymio10/')
    assert msg.header.frame_id == 'thymio10/proximity_center_left_link'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345_000_000)
    assert msg.radiation_type == Range.INFRARED
    assert msg.field_of_view == pytest.approx(0.3)
    assert msg.min_range == 0.0 and msg.max_range == pytest.approx(0.14)
    assert msg.range == pytest.approx(0.06)
    assert range_saw_obstacle(msg)
    nothing = range_from_scan(scan([INF]), 'left')
    assert nothing.range == NOTHING_SEEN and not range_saw_obstacle(nothing)
    assert range_saw_obstacle(range_from_scan(scan([-INF]), 'left'))


# ------------------------------------------------------------------- the node over DDS
class Gazebo(Node):
    """Plays the bridge (scans in) and watches the adapter's outputs."""

    def __init__(self, context, namespace: str) -> None:
        super().__init__('fake_bridge', namespace=namespace, context=context)
        self.scans = {name: self.create_publisher(LaserScan, f'proximity/{name}/scan', RELIABLE)
                      for name in SENSOR_NAMES}
        self.ranges: dict[str, list[Range]] = {name: [] for name in SENSOR_NAMES}
        for name in SENSOR_NAMES:
            self.create_subscription(Range, f'proximity/{name}', self.ranges[name].append,
                                     RELIABLE)
        self.diagnostics: list[DiagnosticArray] = []
        self.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)


def test_node_republishes_scans_as_ranges_and_counts_bad_input():
    with ros_context() as context:
        adapter = ScanToRangeNode(context=context, namespace='gz_robot')
        gazebo = Gazebo(context, 'gz_robot')
        with spinning(context, adapter, gazebo):
            wait_for_subscribers(list(gazebo.scans.values()))
            sent = {
                'left': [scan([0.05], sec=3, nanosec=100)],               # hit
                'center_left': [scan([INF], sec=3, nanosec=200)],        # nothing seen
                'center': [scan([float('nan')], sec=3, nanosec=300),
                           scan([0.0301], sec=3, nanosec=400)],
                'center_right': [scan([], sec=3),                        # malformed
                                 scan([0.1], sec=3, nanosec=1_500_000_000),  # bad stamp
                                 scan([0.1], sec=4)],
                'right': [scan([-INF], sec=5)],                          # touching
            }
            for name, messages in sent.items():
                for msg in messages:
                    gazebo.scans[name].publish(msg)
            expected = {'left': 1, 'center_left': 1, 'center': 2, 'center_right': 1,
                        'right': 1}
            assert wait_for(lambda: all(len(gazebo.ranges[n]) >= k
                                        for n, k in expected.items()), 10.0), \
                {n: len(v) for n, v in gazebo.ranges.items()}
            assert wait_for(lambda: adapter.counters['bad_inputs'] == 2, 5.0)
            assert adapter.bad_inputs == {'scan_empty': 1, 'bad_stamp': 1}
            assert wait_for(lambda: any(
                kv.key == 'bad_scan_empty' and kv.value == '1'
                for msg in gazebo.diagnostics for status in msg.status
                if 'scan to range' in status.name for kv in status.values), 5.0)

    values = {n: [m.range for m in v] for n, v in gazebo.ranges.items()}
    assert values['left'] == [pytest.approx(0.05)]
    assert values['center_left'] == [NOTHING_SEEN]
    assert values['center'] == [NOTHING_SEEN, pytest.approx(0.0301)]
    assert values['center_right'] == [pytest.approx(0.1)]
    assert values['right'] == [0.0]
    for name, messages in gazebo.ranges.items():
        for msg in messages:
            assert msg.header.frame_id == f'proximity_{name}_link'
            assert msg.radiation_type == Range.INFRARED
            assert (msg.min_range, msg.max_range) == (0.0, pytest.approx(0.14))
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in gazebo.ranges['center']]
    assert stamps == [(3, 300), (3, 400)]  # the scans' own stamps, never arrival time
    assert gazebo.ranges['center_right'][0].header.stamp.sec == 4
