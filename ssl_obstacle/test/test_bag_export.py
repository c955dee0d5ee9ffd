"""
Offline export: real rosbag2 bags (sqlite3 and mcap) in, HDF5 dataset out.

The reference for every comparison is the shared LabelingPipeline fed the very same message
objects directly (polled after every message, as the live node does), so these tests pin
down that export labels exactly as the node would, whatever the storage, transport,
namespace or proximity source.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import pathlib
import threading

import h5py
import numpy as np
import pytest
from ssl_obstacle.commands.export import add_arguments, export_bag, ExportError, run
from ssl_obstacle.core.dataset import DatasetWriter, read_dataset
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.bags import (BagMessage, BagWriter, COMPRESSED_IMAGE, IMAGE,
                                  messages_from_events, ODOMETRY, RANGE, topic_name,
                                  write_bag)
from ssl_obstacle.io.conversions import resize_rgb
from ssl_obstacle.io.pipeline import InputSettings, LabelingPipeline
from ssl_obstacle.sim.scripted_run import generate_run

NS = 1_000_000_000
IMAGE_SHAPE = (96, 128)  # small, and not the learner's 64×80, so resizing is exercised


@functools.cache
def events(duration: float = 20.0, seed: int = 0) -> tuple:
    return tuple(generate_run(duration, seed, image_shape=IMAGE_SHAPE))


def messages(duration: float = 20.0, seed: int = 0, **kwargs) -> list[BagMessage]:
    return list(messages_from_events(events(duration, seed), **kwargs))


def reference(msgs: list[BagMessage], params: LabelParams | None = None,
              settings: InputSettings | None = None, namespace: str = ''):
    """Run the pipeline directly on the messages, polling after each one (online style)."""
    pipeline = LabelingPipeline(params, settings)
    prefix = topic_name(namespace, 'proximity/')
    results = []
    for msg in msgs:
        try:
            if msg.msgtype == IMAGE:
                pipeline.on_image(msg.message)
            elif msg.msgtype == COMPRESSED_IMAGE:
                pipeline.on_compressed_image(msg.message)
            elif msg.msgtype == ODOMETRY:
                pipeline.on_odometry(msg.message)
            elif msg.msgtype == RANGE:
                pipeline.on_range(msg.topic[len(prefix):], msg.message)
            else:
                pipeline.on_laser(msg.message)
        except ValueError:  # BadInput, counted by the pipeline
            pass
        results.extend(pipeline.poll())
    results.extend(pipeline.flush())
    return pipeline, results


def assert_matches(data: dict, results: list) -> None:
    assert len(results) > 0
    assert data['images'].shape[0] == len(results)
    np.testing.assert_array_equal(data['stamps'], [r.stamp for r in results])
    np.testing.assert_array_equal(data['labels'], np.stack([r.labels for r in results]))
    np.testing.assert_array_equal(data['counts'], np.stack([r.counts for r in results]))
    np.testing.assert_array_equal(data['poses'],
                                  np.stack([r.pose for r in results]).astype(np.float32))
    np.testing.assert_array_equal(data['images'], np.stack([r.payload for r in results]))


def export_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args([*argv, '--no-progress']))


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith('.partial'))


LASER_PARAMS = '/**:\n  ros__parameters:\n    proximity_source: laser\n'


# ---------------------------------------------------------------------- equivalence
@pytest.mark.parametrize('storage, camera, encoding, namespace, proximity', [
    ('sqlite3', 'raw', 'rgb8', '', 'range'),
    ('mcap', 'raw', 'rgb8', 'thymio10', 'range'),
    ('mcap', 'raw', 'bgr8', '', 'laser'),
    ('sqlite3', 'raw', 'mono8', 'thymio10', 'laser'),
    ('sqlite3', 'jpeg', 'rgb8', 'thymio10', 'range'),
    ('mcap', 'jpeg', 'rgb8', '', 'laser'),
    ('mcap', 'png', 'rgb8', 'thymio10', 'range'),
])
def test_export_equals_pipeline(tmp_path, storage, camera, encoding, namespace, proximity):
    msgs = messages(namespace=namespace, camera=camera, encoding=encoding, proximity=proximity)
    write_bag(tmp_path / 'bag', msgs, storage)
    settings = InputSettings(proximity_source=proximity)
    report = export_bag(tmp_path / 'bag', tmp_path / 'out.h5', namespace=namespace,
                        settings=settings)
    pipeline, results = reference(msgs, settings=settings, namespace=namespace)
    data = read_dataset(tmp_path / 'out.h5')
    assert_matches(data, results)
    assert report.frames_written == len(results)
    assert report.counters == pipeline.labeler.counters.as_dict()
    assert report.storage == storage
    assert not report.bad_inputs
    assert leftovers(tmp_path) == []


def test_raw_images_are_the_resized_frames(tmp_path):
    write_bag(tmp_path / 'bag', messages(), 'mcap')
    export_bag(tmp_path / 'bag', tmp_path / 'out.h5')
    data = read_dataset(tmp_path / 'out.h5')
    frames = {e.stamp: e.image for e in events() if e.kind == 'frame'}
    expected = np.stack([resize_rgb(frames[int(s)], 80, 64) for s in data['stamps']])
    assert data['images'].shape[1:] == (64, 80, 3)
    np.testing.assert_array_equal(data['images'], expected)


def test_dataset_attributes(tmp_path):
    write_bag(tmp_path / 'bag', messages(namespace='thymio10'), 'sqlite3')
    params = LabelParams(tol_x=0.02, distances=(0.0, 0.1, 0.2))
    export_bag(tmp_path / 'bag', tmp_path / 'out.h5', namespace='thymio10', params=params)
    data = read_dataset(tmp_path / 'out.h5')
    assert data['label_params'] == params.to_dict()
    assert data['sensor_names'] == list(params.sensor_names)
    np.testing.assert_array_equal(data['distances'], params.distances)
    assert data['labels'].shape[1:] == (5, 3)
    attrs = data['attrs']
    assert attrs['topics'][0] == '/thymio10/camera/image_raw'
    assert attrs['counters']['frames_labeled'] == data['stamps'].size
    with h5py.File(tmp_path / 'out.h5') as file:
        assert file['images'].dtype == np.uint8 and file['labels'].dtype == np.float32
        assert file['counts'].dtype == np.uint8 and file['stamps'].dtype == np.int64
        assert file['poses'].dtype == np.float32 and file['poses'].shape[1] == 3
        assert file['images'].chunks is not None and file['images'].maxshape[0] is None
    known = data['counts'] > 0
    assert np.isnan(data['labels'][~known]).all() and not np.isnan(data['labels'][known]).any()


def test_cli_with_params_file_laser_and_summary(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(namespace='thymio10', proximity='laser'), 'mcap')
    params_file = tmp_path / 'labeler.yaml'
    params_file.write_text(LASER_PARAMS)
    code = export_cli(str(tmp_path / 'bag'), '--out', str(tmp_path / 'out.h5'),
                      '--namespace', '/thymio10/', '--params', str(params_file))
    out = capsys.readouterr().out
    assert code == 0
    assert '/thymio10/proximity/laser' in out and 'labeled' in out
    assert 'known cells per distance' in out and ' 0.30 ' in out
    assert read_dataset(tmp_path / 'out.h5', images=False)['stamps'].size > 0


def test_prefers_raw_camera_when_both_recorded(tmp_path):
    raw = messages()
    compressed = [m for m in messages(camera='jpeg') if m.msgtype == COMPRESSED_IMAGE]
    write_bag(tmp_path / 'bag', sorted(raw + compressed, key=lambda m: m.stamp), 'sqlite3')
    report = export_bag(tmp_path / 'bag', tmp_path / 'out.h5')
    assert report.topics[0] == '/camera/image_raw'
    assert_matches(read_dataset(tmp_path / 'out.h5'), reference(raw)[1])
    report = export_bag(tmp_path / 'bag', tmp_path / 'jpeg.h5', camera_transport='compressed')
    assert report.topics[0] == '/camera/image_raw/compressed'


def test_single_storage_file_without_metadata(tmp_path):
    write_bag(tmp_path / 'bag', messages(), 'mcap')
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    report = export_bag(tmp_path / 'bag' / 'bag.mcap', tmp_path / 'out.h5')
    assert report.frames_written == len(reference(messages())[1])


# ---------------------------------------------------------------------- bad messages
def replace_nth(msgs: list[BagMessage], msgtype: str, n: int, **changes) -> BagMessage:
    """Replace the n-th message of a type by a copy with changed fields; return it."""
    index = [i for i, m in enumerate(msgs) if m.msgtype == msgtype][n]
    message = dataclasses.replace(msgs[index].message, **changes)
    msgs[index] = msgs[index]._replace(message=message)
    return msgs[index]


def export_and_check(tmp_path, msgs, storage='sqlite3', **kwargs):
    """Export, compare with the reference, and check good data still made it through."""
    write_bag(tmp_path / 'bag', msgs, storage)
    report = export_bag(tmp_path / 'bag', tmp_path / 'out.h5', **kwargs)
    pipeline, results = reference(msgs, **{k: v for k, v in kwargs.items()
                                           if k in ('settings', 'params')})
    data = read_dataset(tmp_path / 'out.h5')
    assert_matches(data, results)
    assert report.bad_inputs == pipeline.bad_inputs
    assert report.counters == pipeline.labeler.counters.as_dict()
    assert report.frames_written > 400  # nearly all of the ~600 frames
    return report


def test_image_size_mismatch(tmp_path):
    msgs = messages()
    good = msgs[[i for i, m in enumerate(msgs) if m.msgtype == IMAGE][100]].message
    replace_nth(msgs, IMAGE, 100, data=good.data[:-7])
    replace_nth(msgs, IMAGE, 200, height=good.height + 1)
    report = export_and_check(tmp_path, msgs)
    assert report.bad_inputs == {'image_size': 2}
    assert report.counters['frames_in'] == sum(e.kind == 'frame' for e in events()) - 2


def test_unknown_encoding(tmp_path):
    msgs = messages()
    replace_nth(msgs, IMAGE, 50, encoding='yuv422')
    assert export_and_check(tmp_path, msgs).bad_inputs == {'image_encoding': 1}


def test_undecodable_jpeg(tmp_path):
    msgs = messages(camera='jpeg')
    replace_nth(msgs, COMPRESSED_IMAGE, 10, data=np.frombuffer(b'\xff\xd8not a jpeg at all',
                                                               dtype=np.uint8))
    replace_nth(msgs, COMPRESSED_IMAGE, 20, data=np.zeros(0, dtype=np.uint8))
    report = export_and_check(tmp_path, msgs, storage='mcap')
    assert report.bad_inputs == {'image_decode': 2}


def test_decompression_bomb_and_oversized_raw_images_are_refused(tmp_path):
    from test_labeler_overload import png_bomb
    msgs = messages(camera='jpeg')
    replace_nth(msgs, COMPRESSED_IMAGE, 10, format='png',
                data=np.frombuffer(png_bomb(8000, 8000), dtype=np.uint8))
    report = export_and_check(tmp_path, msgs, storage='mcap')
    assert report.bad_inputs == {'image_too_large': 1}
    # Raw images too, against the limit given in the parameters (here below their size).
    (tmp_path / 'raw').mkdir()
    write_bag(tmp_path / 'raw' / 'bag', messages(), 'sqlite3')
    below = InputSettings(max_image_pixels=IMAGE_SHAPE[0] * IMAGE_SHAPE[1] - 1)
    report = export_bag(tmp_path / 'raw' / 'bag', tmp_path / 'raw' / 'out.h5', settings=below)
    assert report.bad_inputs == {'image_too_large': sum(e.kind == 'frame' for e in events())}
    assert report.frames_written == 0


def test_nan_pose(tmp_path):
    msgs = messages()
    message = replace_nth(msgs, ODOMETRY, 40).message
    message.pose.pose.position.x = math.nan
    assert export_and_check(tmp_path, msgs).bad_inputs == {'pose_nan': 1}


def test_nan_range(tmp_path):
    msgs = messages()
    replace_nth(msgs, RANGE, 77, range=math.nan)
    assert export_and_check(tmp_path, msgs, storage='mcap').bad_inputs == {'range_nan': 1}


def test_nan_laser_range(tmp_path):
    msgs = messages(proximity='laser')
    message = replace_nth(msgs, 'sensor_msgs/msg/LaserScan', 33).message
    message.ranges = message.ranges.copy()
    message.ranges[2] = math.nan
    report = export_and_check(tmp_path, msgs, settings=InputSettings(proximity_source='laser'))
    assert report.bad_inputs == {'range_nan': 1}


def test_undeserializable_message(tmp_path):
    msgs = messages()
    write_bag(tmp_path / 'good', msgs, 'sqlite3')
    with BagWriter(tmp_path / 'bag', 'sqlite3') as writer:
        for i, m in enumerate(msgs):
            writer.write(m.topic, m.msgtype, m.stamp, m.message)
            if i == 500:
                writer.write_serialized('/odom', ODOMETRY, m.stamp, b'\x00\x01\x00\x00garbage')
    report = export_bag(tmp_path / 'bag', tmp_path / 'out.h5')
    assert report.bad_inputs == {'deserialize': 1}
    assert_matches(read_dataset(tmp_path / 'out.h5'), reference(msgs)[1])


def test_odometry_slightly_backwards_is_late(tmp_path):
    msgs = messages()
    index = [i for i, m in enumerate(msgs) if m.msgtype == ODOMETRY][100]
    late = msgs[index]
    stamp = late.stamp - NS // 2 - 1_000_000  # 0.5 s back: past the reorder window
    message = dataclasses.replace(
        late.message, header=dataclasses.replace(late.message.header, stamp=dataclasses.replace(
            late.message.header.stamp, sec=stamp // NS, nanosec=stamp % NS)))
    msgs.insert(index + 1, late._replace(message=message))  # logged now, stamped earlier
    report = export_and_check(tmp_path, msgs)
    assert report.counters['odometry_late'] == 1
    assert report.rejected == {'odom_late': 1}
    assert report.counters['resets'] == 0


def test_bag_played_in_a_loop_exports_every_frame_of_both_passes(tmp_path):
    single = messages()
    duration = single[-1].stamp - single[0].stamp + NS
    looped = single + [m._replace(stamp=m.stamp + duration) for m in messages()]
    report = export_and_check(tmp_path, looped, storage='mcap')
    assert report.counters['resets'] == 1
    # The first pass ends as a bag ends: its pending frames are finalised, none dropped.
    assert report.counters['dropped_on_reset'] == 0
    assert report.counters['flushed_on_reset'] > 0
    _, fresh = reference(single)
    data = read_dataset(tmp_path / 'out.h5')
    assert data['stamps'].size == 2 * len(fresh)
    for part in (slice(0, len(fresh)), slice(len(fresh), None)):
        assert_matches({k: v[part] for k, v in data.items() if k in (
            'images', 'labels', 'counts', 'stamps', 'poses')}, fresh)


# ---------------------------------------------------------------------- bad bags
def check_failure(tmp_path, capsys, bag, *words, extra=()):
    out = tmp_path / 'out' / 'data.h5'
    out.parent.mkdir(exist_ok=True)
    code = export_cli(str(bag), '--out', str(out), *extra)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err
    assert list(out.parent.iterdir()) == []  # no output, no temporary file
    return err


def test_missing_topics(tmp_path, capsys):
    msgs = [m for m in messages(namespace='thymio10')
            if m.msgtype != ODOMETRY and not m.topic.endswith('/center')]
    write_bag(tmp_path / 'bag', msgs, 'sqlite3')
    err = check_failure(tmp_path, capsys, tmp_path / 'bag', '/thymio10/odom',
                        '/thymio10/proximity/center;', '/thymio10/proximity/left (',
                        extra=('--namespace', 'thymio10'))
    assert '/thymio10/proximity/left;' not in err  # present topics are not called missing


def test_wrong_namespace_is_hinted(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(namespace='thymio10'), 'mcap')
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'missing topics', '/odom',
                  "namespace 'thymio10'")


def test_wrong_proximity_source_is_hinted(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(proximity='laser'), 'mcap')
    check_failure(tmp_path, capsys, tmp_path / 'bag', '/proximity/left',
                  'proximity_source: laser')


def test_truncated_mcap(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(), 'mcap')
    path = tmp_path / 'bag' / 'bag.mcap'
    os.truncate(path, path.stat().st_size // 2)
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'cannot open bag', '(mcap)',
                  'truncated or corrupt')


def test_mcap_corrupt_mid_run_leaves_no_output(tmp_path, capsys):
    """Corruption found only after frames were written: the partial dataset is removed."""
    write_bag(tmp_path / 'bag', messages(), 'mcap')
    path = tmp_path / 'bag' / 'bag.mcap'
    data = bytearray(path.read_bytes())
    # An odometry record in the second half: 'odom' frame id at CDR offset 16 of its data.
    record = data.find(b'\x05\x00\x00\x00odom\x00', len(data) // 2) - 12 - 31
    assert data[record] == 0x05
    data[record + 1:record + 9] = (1 << 40).to_bytes(8, 'little')
    path.write_bytes(bytes(data))
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'cannot read bag', 'truncated')


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_corrupt_sqlite3(tmp_path, capsys, damage):
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    path = tmp_path / 'bag' / 'bag.db3'
    size = path.stat().st_size
    if damage == 'truncate':
        os.truncate(path, size // 2)
    else:
        with open(path, 'r+b') as stream:
            stream.seek(size // 3)
            stream.write(np.random.default_rng(0).bytes(size // 3))
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'sqlite3', 'malformed')


def test_sqlite3_overwritten_from_the_start(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    path = tmp_path / 'bag' / 'bag.db3'
    path.write_bytes(b'this is not a database' * 1000)
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'cannot open bag', 'not a database')


def test_missing_metadata(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'metadata.yaml', 'bag.db3')


def test_missing_bag_and_bad_params(tmp_path, capsys):
    check_failure(tmp_path, capsys, tmp_path / 'nope', 'does not exist')
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    (tmp_path / 'bad.yaml').write_text('[1, 2')
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'bad.yaml',
                  extra=('--params', str(tmp_path / 'bad.yaml')))
    check_failure(tmp_path, capsys, tmp_path / 'bag', 'missing.yaml',
                  extra=('--params', str(tmp_path / 'missing.yaml')))


def test_output_directory_missing(tmp_path, capsys):
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    code = export_cli(str(tmp_path / 'bag'), '--out', str(tmp_path / 'no' / 'where.h5'))
    assert code == 2
    assert 'output directory' in capsys.readouterr().err
    with pytest.raises(ExportError, match='is a directory'):
        export_bag(tmp_path / 'bag', tmp_path)


# ---------------------------------------------------------------------- atomic writing
def new_writer(path, **kwargs) -> DatasetWriter:
    return DatasetWriter(path, image_size=(4, 5), sensor_names=('a', 'b'),
                         distances=(0.0, 0.1, 0.2), label_params={'x': 1}, **kwargs)


def append_frames(writer: DatasetWriter, count: int) -> None:
    for i in range(count):
        writer.append(np.full((4, 5, 3), i, dtype=np.uint8), np.full((2, 3), 0.5, np.float32),
                      np.ones((2, 3), np.uint8), i, (i, 0.0, 0.0))


@pytest.mark.parametrize('error', [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_file(tmp_path, error):
    with pytest.raises(error), new_writer(tmp_path / 'data.h5', batch_frames=4) as writer:
        append_frames(writer, 10)  # two batches already on disk in the temporary file
        assert leftovers(tmp_path)
        raise error('boom')
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / 'data.h5'
    target.write_bytes(b'previous')
    with pytest.raises(ValueError), new_writer(target) as writer:
        append_frames(writer, 3)
        writer.append(np.zeros((9, 9, 3), np.uint8), np.zeros((2, 3), np.float32),
                      np.zeros((2, 3), np.uint8), 0, (0, 0, 0))
    assert target.read_bytes() == b'previous' and leftovers(tmp_path) == []


def test_writer_round_trip_in_batches(tmp_path):
    with new_writer(tmp_path / 'data.h5', batch_frames=4, attrs={'note': 'hi'}) as writer:
        append_frames(writer, 10)
        assert len(writer) == 10
    data = read_dataset(tmp_path / 'data.h5')
    assert data['images'].shape == (10, 4, 5, 3)
    np.testing.assert_array_equal(data['images'][:, 0, 0, 0], np.arange(10))
    np.testing.assert_array_equal(data['stamps'], np.arange(10))
    assert data['attrs']['note'] == 'hi' and data['attrs']['frames'] == 10
    assert data['label_params'] == {'x': 1} and data['sensor_names'] == ['a', 'b']
    mode = (tmp_path / 'data.h5').stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_export_interrupted_leaves_no_file(tmp_path, capsys, monkeypatch):
    write_bag(tmp_path / 'bag', messages(), 'sqlite3')
    calls = []

    def interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 300:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    original = DatasetWriter.append
    monkeypatch.setattr(DatasetWriter, 'append', interrupt)
    out = tmp_path / 'out'
    out.mkdir()
    code = export_cli(str(tmp_path / 'bag'), '--out', str(out / 'data.h5'))
    assert code == 130 and 'interrupted' in capsys.readouterr().err
    assert list(out.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == 'bag-prefetch']


@pytest.mark.parametrize('prefetch', [0, 1])
def test_prefetch_does_not_change_the_dataset(tmp_path, prefetch):
    msgs = messages(camera='jpeg')
    write_bag(tmp_path / 'bag', msgs, 'sqlite3')
    export_bag(tmp_path / 'bag', tmp_path / 'out.h5', prefetch=prefetch, poll_every=7)
    assert_matches(read_dataset(tmp_path / 'out.h5'), reference(msgs)[1])
