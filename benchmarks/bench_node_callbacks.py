#!/usr/bin/env python3
"""
Per-message cost of the labeler node's callbacks and of its worker, by message type.

The subscription callbacks only enqueue, so their cost is what the executor pays per
message; the worker's cost per message (conversion + labeling + publishing what became final)
decides how fast a stream the node keeps up with. Messages come from the scripted run; the
node is a real LabelerNode in a real rclpy context, but nothing is sent over DDS here (see
the DDS tests for that), so the figures are the node's own CPU cost.

Run: scripts/with_env.sh python benchmarks/bench_node_callbacks.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import rclpy
from rclpy.context import Context
from sensor_msgs.msg import CompressedImage
from ssl_obstacle.io.messages import odometry_msg, range_msg, rgb_to_image_msg, time_from_ns
from ssl_obstacle.nodes.labeler_node import LabelerNode
from ssl_obstacle.sim.scripted_run import generate_run
from std_msgs.msg import Header


def build_messages(seconds: float, shape: tuple[int, int], jpeg: bool) -> list:
    messages = []
    for event in generate_run(seconds, seed=1, image_shape=shape):
        if event.kind == 'odom':
            messages.append(('odom', odometry_msg(event.stamp, *event.pose)))
        elif event.kind == 'frame':
            header = Header(stamp=time_from_ns(event.stamp), frame_id='camera')
            if jpeg:
                ok, data = cv2.imencode('.jpg', event.image)
                messages.append(('camera', CompressedImage(header=header, format='jpeg',
                                                           data=data.tobytes())))
            else:
                messages.append(('camera', rgb_to_image_msg(event.image, header)))
        else:
            messages.append((event.sensor, range_msg(event.sensor, event.stamp, event.value)))
    return messages


def measure(seconds: float, shape: tuple[int, int], jpeg: bool) -> dict[str, dict[str, float]]:
    context = Context()
    rclpy.init(context=context)
    node = LabelerNode(context=context)
    node.close()  # stop the worker thread: we drive the handlers ourselves, timed
    callbacks = {stream: node._enqueue(stream, lambda msg: None)
                 for stream in ['camera', 'odom', *node.params.sensor_names]}
    pipeline = node.pipeline
    handlers = {'camera': pipeline.on_compressed_image if jpeg else pipeline.on_image,
                'odom': pipeline.on_odometry}
    for name in node.params.sensor_names:
        handlers[name] = (lambda n: lambda msg: pipeline.on_range(n, msg))(name)
    messages = build_messages(seconds, shape, jpeg)
    enqueue: dict[str, list[float]] = {}
    work: dict[str, list[float]] = {}
    published = 0
    for stream, msg in messages:
        kind = 'camera' if stream == 'camera' else 'odom' if stream == 'odom' else 'range'
        start = time.perf_counter()
        callbacks[stream](msg)
        enqueue.setdefault(kind, []).append(time.perf_counter() - start)
        node._queue.get_nowait()
        start = time.perf_counter()
        handlers[stream](msg)
        for result in pipeline.poll():
            node._publish(result)
            published += 1
        work.setdefault(kind, []).append(time.perf_counter() - start)
    node.destroy_node()
    rclpy.shutdown(context=context)
    summary = {}
    for kind in enqueue:
        summary[kind] = {
            'messages': len(work[kind]),
            'callback_us': 1e6 * statistics.median(enqueue[kind]),
            'worker_us_median': 1e6 * statistics.median(work[kind]),
            'worker_us_mean': 1e6 * statistics.fmean(work[kind]),
        }
    summary['_published'] = {'frames': published}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0, help='simulated run length')
    args = parser.parse_args()
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'python {platform.python_version()}; run of {args.seconds:.0f} s '
          '(camera 30 Hz, 5 x Range 10 Hz, odometry 20 Hz)')
    for shape, jpeg, label in [((480, 640), False, '640x480 rgb8'),
                               ((240, 320), False, '320x240 rgb8'),
                               ((480, 640), True, '640x480 JPEG')]:
        summary = measure(args.seconds, shape, jpeg)
        print(f'\ncamera {label}: {summary["_published"]["frames"]} LabeledFrames published')
        print(f'  {"message":8} {"count":>7} {"callback µs":>12} {"worker µs (median)":>19} '
              f'{"worker µs (mean)":>17}')
        for kind in ('camera', 'range', 'odom'):
            row = summary[kind]
            print(f'  {kind:8} {row["messages"]:7d} {row["callback_us"]:12.1f} '
                  f'{row["worker_us_median"]:19.1f} {row["worker_us_mean"]:17.1f}')
        per_second = sum(summary[k]['worker_us_mean'] * rate for k, rate in
                         (('camera', 30), ('range', 50), ('odom', 20)))
        print(f'  worker load at real time: {per_second / 1e4:.2f}% of one core '
              f'(→ keeps up with ~{1e6 / per_second:.0f}x real time)')


if __name__ == '__main__':
    main()
