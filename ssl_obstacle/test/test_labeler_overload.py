"""
The labeler node under a slow worker, overload and hostile images, over real DDS.

A worker that is stuck on one message is made by holding ``add_frame`` on an event the test
releases: the stall lasts exactly as long as the test needs, on any machine.
"""

from __future__ import annotations

import os
import pathlib
import struct
import subprocess
import sys
import textwrap
import threading
import zlib

from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
from sensor_msgs.msg import CompressedImage
from ssl_obstacle.nodes.labeler_node import LabelerNode
from std_msgs.msg import Header
from test_labeler_node import RELIABLE, run_messages, StreamPlayer


def png_bomb(width: int, height: int) -> bytes:
    """Return a real PNG of black rgb rows: a few hundred kB declaring width x height."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))
    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    idat = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', idat)
            + chunk(b'IEND', b''))


class HeldWorker:
    """Makes the labeler's worker hang on its first camera frame until released."""

    def __init__(self, labeler: LabelerNode) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        core = labeler.pipeline.labeler
        original = core.add_frame

        def add_frame(stamp, payload=None):
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(120.0)
            return original(stamp, payload)
        core.add_frame = add_frame


def labeler_node(context, **overrides) -> LabelerNode:
    values = {'image_width': 40, 'image_height': 32, 'status_period': 0.1,
              'reorder_window': 3.0, 'time_jump_threshold': 8.0, **overrides}
    return LabelerNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in values.items()])


def split_at_first_frame(messages):
    first = next(i for i, (topic, _) in enumerate(messages) if topic == 'camera/image_raw')
    return messages[:first], messages[first], messages[first + 1:]


def test_a_stuck_worker_stalls_neither_status_nor_subscriptions():
    # The executor thread must never wait for the worker: while the worker is stuck on one
    # message, status keeps coming and every message is taken off DDS into the queue.
    with ros_context() as context:
        labeler = labeler_node(context)  # default queue (200) and sensor_qos_depth
        held = HeldWorker(labeler)
        player = StreamPlayer(context)
        with spinning(context, labeler, player):
            wait_for_subscribers(list(player.pubs.values()), node=labeler)
            before, blocker, after = split_at_first_frame(run_messages(2.5))
            player.play([*before, blocker])
            assert held.entered.wait(30.0)
            odometry = [m for m in after if m[0] == 'odom']
            assert 40 <= len(odometry) < 200
            player.play(odometry)
            # Status goes on, and says the worker is stuck, while it is.
            assert wait_for(lambda: int(player.latest_status().get('queue_length', 0))
                            >= len(odometry), timeout=60.0)
            assert float(player.latest_status()['worker_busy_s']) > 0.0
            held.release.set()
            assert wait_for(lambda: player.latest_status().get('odometry_in')
                            == str(sum(t == 'odom' for t, _ in before) + len(odometry)),
                            timeout=60.0)
            status = player.latest_status()
            assert status['queue_overflow'] == '0' and status['odometry_late'] == '0'
        labeler.close()
        labeler.destroy_node()
        player.destroy_node()


def test_overload_sheds_camera_frames_and_keeps_odometry_and_readings():
    with ros_context() as context:
        before, blocker, after = split_at_first_frame(run_messages(3.0))
        sensors = [m for m in after if m[0] != 'camera/image_raw']
        frames = [m for m in after if m[0] == 'camera/image_raw']
        # Room for every sensor message (those before the first frame may still wait: other
        # topics are not ordered), not for them and the frames too: the frames give way.
        labeler = labeler_node(context, queue_size=len(before) + len(sensors) + 5,
                               camera_queue_size=5,
                               sensor_qos_depth=500, camera_qos_depth=500)
        held = HeldWorker(labeler)
        player = StreamPlayer(context)
        with spinning(context, labeler, player):
            wait_for_subscribers(list(player.pubs.values()), node=labeler)
            player.play([*before, blocker])
            assert held.entered.wait(30.0)
            player.play(after)
            assert wait_for(lambda: player.latest_status().get('camera_shed')
                            == str(len(frames) - 5), timeout=60.0)
            held.release.set()
            odometry = sum(1 for m in before + after if m[0] == 'odom')
            readings = sum(1 for m in before + after if m[0].startswith('proximity/'))
            assert wait_for(lambda: player.latest_status().get('odometry_in') == str(odometry)
                            and player.latest_status().get('readings_in') == str(readings),
                            timeout=60.0)
            status = player.latest_status()
            assert status['frames_in'] == str(1 + 5)  # the blocker and the newest five
            assert status['sensor_dropped'] == '0'
            assert any('shed' in d.status[0].message for d in player.diagnostics)
        labeler.close()
        labeler.destroy_node()
        player.destroy_node()


class CompressedPlayer(Node):
    def __init__(self, context) -> None:
        super().__init__('compressed_player', context=context)
        self.pub = self.create_publisher(CompressedImage, 'camera/image_raw/compressed',
                                         RELIABLE)

    def publish_png(self, data: bytes, stamp) -> None:
        self.pub.publish(CompressedImage(header=Header(stamp=stamp, frame_id='camera'),
                                         format='png', data=data))


def test_a_decompression_bomb_is_refused_over_dds():
    with ros_context() as context:
        labeler = labeler_node(context, camera_transport='compressed')
        player = StreamPlayer(context)
        camera = CompressedPlayer(context)
        with spinning(context, labeler, player, camera):
            wait_for_subscribers([camera.pub, *(pub for topic, pub in player.pubs.items()
                                                if topic != 'camera/image_raw')])
            messages = run_messages(1.0)
            player.play([m for m in messages if m[0] != 'camera/image_raw'])
            camera.publish_png(png_bomb(8000, 8000), messages[5][1].header.stamp)
            assert wait_for(lambda: labeler.status_values().get('bad_image_too_large') == 1,
                            timeout=60.0)
            assert labeler.status_values()['frames_in'] == 0
        labeler.close()
        labeler.destroy_node()
        player.destroy_node()
        camera.destroy_node()


BOMB_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    from rclpy.parameter import Parameter
    from ros_harness import ros_context, spinning, wait_for, wait_for_subscribers
    from ssl_obstacle.nodes.labeler_node import LabelerNode
    from test_labeler_overload import CompressedPlayer, png_bomb
    from builtin_interfaces.msg import Time

    bomb = png_bomb(int(sys.argv[1]), int(sys.argv[1]))
    with ros_context() as context:
        labeler = LabelerNode(context=context, parameter_overrides=[
            Parameter('camera_transport', value='compressed')])
        camera = CompressedPlayer(context)
        with spinning(context, labeler, camera):
            wait_for_subscribers([camera.pub])
            camera.publish_png(png_bomb(64, 48), Time(sec=1))
            assert wait_for(lambda: labeler.status_values()['frames_in'] == 1, 60.0)
            baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            camera.publish_png(bomb, Time(sec=2))
            assert wait_for(lambda: labeler.status_values().get('bad_image_too_large') == 1
                            or labeler.status_values()['frames_in'] == 2, 60.0)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        labeler.close()
    print((peak - baseline) / 1024.0)
""")


def test_a_decompression_bomb_leaves_the_labelers_memory_alone(tmp_path):
    # In a process of its own, so that the peak RSS is the labeler's alone: 8000 x 8000
    # declares 192 MB of rgb, far above the 50 MB the bomb may cost.
    script = tmp_path / 'bomb.py'
    script.write_text(BOMB_MEMORY_SCRIPT)
    test_dir = str(pathlib.Path(__file__).parent)
    env = {**os.environ, 'PYTHONPATH': f'{test_dir}:{os.environ.get("PYTHONPATH", "")}'}
    result = subprocess.run([sys.executable, str(script), '8000'], capture_output=True,
                            text=True, timeout=300, cwd=test_dir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    growth_mb = float(result.stdout.strip().splitlines()[-1])
    assert growth_mb < 50.0
