"""
What the learner accepts in a LabeledFrame (io/labeled_frames.py), field by field.

Each bad field is refused with its own kind, so the node can count it and say what to
fix; a grid in another sensor order is mapped by name; nothing is resized or guessed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from ssl_obstacle.core.labeler import LabeledResult
from ssl_obstacle.core.params import LabelParams
from ssl_obstacle.io.conversions import BadInput
from ssl_obstacle.io.labeled_frames import check_labeled_frame, FIXES, FrameSpec, KINDS
from ssl_obstacle.io.messages import labeled_frame_arrays, labeled_frame_msg

PARAMS = LabelParams()
NAMES = tuple(PARAMS.sensor_names)
DISTANCES = tuple(float(d) for d in PARAMS.distances)
SPEC = FrameSpec(sensor_names=NAMES, distances=DISTANCES, image_width=80, image_height=64)


def result(seed: int = 0) -> LabeledResult:
    """Return a frame whose every sensor row differs: row s holds s / 10 where known."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    labels = np.full((len(NAMES), len(DISTANCES)), np.nan, dtype=np.float32)
    for row in range(len(NAMES)):
        labels[row, : 5 + row] = row / 10
    counts = np.where(np.isnan(labels), 0, 2).astype(np.uint8)
    return LabeledResult(stamp=3_000_000_007, pose=np.zeros(3), payload=image, labels=labels,
                         counts=counts, reason='complete')


def message(seed: int = 0):
    """Return the LabeledFrame the labeler would publish for :func:`result`."""
    return labeled_frame_msg(result(seed), NAMES, DISTANCES, 'camera_link')


def set_labels(msg, values: np.ndarray) -> None:
    msg.labels = np.asarray(values, dtype=np.float32).reshape(-1)


def labels_of(msg) -> np.ndarray:
    return np.array(msg.labels, dtype=np.float32)


def counts_of(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.counts), dtype=np.uint8)


def seen_cells(msg) -> np.ndarray:
    return counts_of(msg) > 0


def with_label(value: float) -> Callable:
    """Set one cell that has readings to ``value``."""
    def change(msg) -> None:
        labels = labels_of(msg)
        labels[np.flatnonzero(seen_cells(msg))[3]] = value
        set_labels(msg, labels)
    return change


def every_seen_label(value: float) -> Callable:
    def change(msg) -> None:
        labels = labels_of(msg)
        labels[seen_cells(msg)] = value
        set_labels(msg, labels)
    return change


def label_without_readings(msg) -> None:
    labels = labels_of(msg)
    labels[np.flatnonzero(~seen_cells(msg))[0]] = 0.0
    set_labels(msg, labels)


def image_of_size(width: int, height: int) -> Callable:
    def change(msg) -> None:
        msg.image.width, msg.image.height, msg.image.step = width, height, width * 3
        msg.image.data = bytes(width * height * 3)
    return change


def encoding(name: str) -> Callable:
    def change(msg) -> None:
        msg.image.encoding = name
    return change


def short_data(msg) -> None:
    msg.image.data = bytes(msg.image.data)[:-3]


def short_step(msg) -> None:
    msg.image.step = 80 * 3 - 1


def declared_huge(msg) -> None:
    msg.image.width, msg.image.height, msg.image.step = 100_000, 100_000, 300_000


def names(values: list[str]) -> Callable:
    def change(msg) -> None:
        msg.sensor_names = values
    return change


def distances(values: list[float]) -> Callable:
    def change(msg) -> None:
        msg.distances = np.asarray(values, dtype=np.float32)
    return change


def short_labels(msg) -> None:
    set_labels(msg, labels_of(msg)[:-1])


def long_counts(msg) -> None:
    msg.counts = bytes(counts_of(msg)) + b'\x00'


BAD = {
    'labels 7.0': (every_seen_label(7.0), 'labels_range'),
    'labels -3.0': (every_seen_label(-3.0), 'labels_range'),
    'one label 1.0001': (with_label(1.0001), 'labels_range'),
    'one label +inf': (with_label(np.inf), 'labels_range'),
    'NaN where counts > 0': (with_label(np.nan), 'labels_nan'),
    'a label where counts == 0': (label_without_readings, 'labels_unknown'),
    '13x7 image': (image_of_size(13, 7), 'image_size'),
    '160x128 image': (image_of_size(160, 128), 'image_size'),
    'encoding bayer_zz': (encoding('bayer_zz'), 'image_encoding'),
    'encoding mono8': (encoding('mono8'), 'image_encoding'),
    'data one pixel short': (short_data, 'image_data'),
    'step under a row': (short_step, 'image_data'),
    '10 gigapixels declared': (declared_huge, 'image_too_large'),
    'unknown sensor names': (names(['a', 'b', 'c', 'd', 'e']), 'sensor_names'),
    'no sensor names': (names([]), 'sensor_names'),
    'a repeated name': (names(['left', 'left', 'center', 'center_right', 'right']),
                        'sensor_names'),
    'a missing sensor': (names(list(NAMES[:4])), 'sensor_names'),
    'distances 5 mm further': (distances([d + 0.005 for d in DISTANCES]), 'distances'),
    'one distance fewer': (distances(list(DISTANCES[:-1])), 'distances'),
    'a NaN distance': (distances([np.nan, *DISTANCES[1:]]), 'distances'),
    'a label short': (short_labels, 'grid_shape'),
    'a count too many': (long_counts, 'grid_shape'),
}


def test_the_labelers_own_frame_passes_unchanged():
    frame = check_labeled_frame(message(), SPEC)
    expected = result()
    assert frame.stamp == 3_000_000_007 and frame.row_order is None
    np.testing.assert_array_equal(frame.image, expected.payload)
    np.testing.assert_array_equal(frame.labels, expected.labels)
    np.testing.assert_array_equal(frame.counts, expected.counts)
    assert frame.image.flags.writeable and frame.image.flags.c_contiguous


@pytest.mark.parametrize('case', list(BAD))
def test_each_bad_field_is_refused_with_its_kind(case):
    change, kind = BAD[case]
    msg = message()
    change(msg)
    with pytest.raises(BadInput) as raised:
        check_labeled_frame(msg, SPEC)
    assert raised.value.kind == kind, raised.value


def test_refusals_say_where_and_every_kind_has_a_fix():
    msg = message()
    every_seen_label(7.0)(msg)
    with pytest.raises(BadInput) as raised:
        check_labeled_frame(msg, SPEC)
    assert 'outside [0, 1]' in raised.value.detail and '7' in raised.value.detail
    assert 'sensor left at 0.000 m' in raised.value.detail
    assert set(KINDS) == {kind for _, kind in BAD.values()}
    assert all(len(FIXES[kind]) > 20 for kind in KINDS)


def test_reversed_sensor_names_are_mapped_into_the_learners_order():
    """The names say which row is which sensor: reversed rows end up where they belong."""
    msg = message()
    labels = result().labels
    counts = result().counts
    msg.sensor_names = list(reversed(NAMES))
    set_labels(msg, labels[::-1])
    msg.counts = counts[::-1].tobytes()
    frame = check_labeled_frame(msg, SPEC)
    assert frame.row_order == (4, 3, 2, 1, 0)
    np.testing.assert_array_equal(frame.labels, labels)
    np.testing.assert_array_equal(frame.counts, counts)


def test_a_permutation_is_mapped_row_by_row():
    order = [2, 0, 4, 1, 3]
    msg = message()
    labels, counts = result().labels, result().counts
    msg.sensor_names = [NAMES[i] for i in order]
    set_labels(msg, labels[order])
    msg.counts = counts[order].tobytes()
    frame = check_labeled_frame(msg, SPEC)
    np.testing.assert_array_equal(frame.labels, labels)
    np.testing.assert_array_equal(frame.counts, counts)


def test_a_bgr8_frame_is_converted_not_refused():
    msg = message()
    rgb = result().payload
    msg.image.encoding = 'bgr8'
    msg.image.data = np.ascontiguousarray(rgb[:, :, ::-1]).tobytes()
    np.testing.assert_array_equal(check_labeled_frame(msg, SPEC).image, rgb)


def test_padded_rows_are_read_through_step():
    msg = message()
    rgb = result().payload
    padded = np.zeros((64, 80 * 3 + 16), dtype=np.uint8)
    padded[:, :240] = rgb.reshape(64, 240)
    msg.image.step, msg.image.data = 80 * 3 + 16, padded.tobytes()
    np.testing.assert_array_equal(check_labeled_frame(msg, SPEC).image, rgb)
    np.testing.assert_array_equal(labeled_frame_arrays(msg)['image'], rgb)


def test_labeled_frame_arrays_reads_the_encoding():
    msg = message()
    rgb = result().payload
    msg.image.encoding = 'bgr8'
    msg.image.data = np.ascontiguousarray(rgb[:, :, ::-1]).tobytes()
    np.testing.assert_array_equal(labeled_frame_arrays(msg)['image'], rgb)
    msg.image.encoding = 'bayer_zz'
    with pytest.raises(BadInput):
        labeled_frame_arrays(msg)


def test_a_smaller_pixel_limit_refuses_the_models_own_size():
    spec = FrameSpec(NAMES, DISTANCES, 80, 64, max_pixels=80 * 64 - 1)
    with pytest.raises(BadInput) as raised:
        check_labeled_frame(message(), spec)
    assert raised.value.kind == 'image_too_large'


def test_fields_are_read_from_any_message_like_object():
    """Bag readers (rosbags) give numpy arrays where rclpy gives array.array and bytes."""
    msg = message()
    rgb, expected = result().payload, result()
    plain = SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7)),
        image=SimpleNamespace(height=64, width=80, step=240, encoding='rgb8', is_bigendian=0,
                              data=rgb.reshape(-1).copy()),
        sensor_names=list(NAMES), distances=np.asarray(DISTANCES, dtype=np.float32),
        labels=expected.labels.reshape(-1).copy(), counts=expected.counts.reshape(-1).copy(),
        pose=msg.pose)
    frame = check_labeled_frame(plain, SPEC)
    assert frame.stamp == 3_000_000_007
    np.testing.assert_array_equal(frame.image, rgb)
    np.testing.assert_array_equal(frame.labels, expected.labels)
