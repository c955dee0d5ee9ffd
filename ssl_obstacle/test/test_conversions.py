"""Message converters: every accepted encoding, and every kind of bad input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from ssl_obstacle.io.conversions import (BadInput, compressed_to_rgb, image_to_rgb,
                                         laser_saw_obstacle, odometry_pose,
                                         range_saw_obstacle, resize_rgb)
from ssl_obstacle.io.messages import laser_msg, odometry_msg, range_msg
from ssl_obstacle.io.pipeline import InputSettings, LabelingPipeline
from std_msgs.msg import Header

RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def image(encoding: str, pixels: np.ndarray, padding: int = 0) -> Image:
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(height, width * channels)
    padded = np.concatenate([rows, np.full((height, padding), 7, np.uint8)], axis=1)
    return Image(header=Header(), height=height, width=width, encoding=encoding,
                 step=width * channels + padding, data=padded.tobytes())


@pytest.mark.parametrize('encoding,pixels', [
    ('rgb8', RGB),
    ('bgr8', RGB[:, :, ::-1]),
    ('rgba8', np.concatenate([RGB, np.full((4, 5, 1), 255, np.uint8)], axis=2)),
    ('bgra8', np.concatenate([RGB[:, :, ::-1], np.zeros((4, 5, 1), np.uint8)], axis=2)),
])
@pytest.mark.parametrize('padding', [0, 3])
def test_color_encodings_become_rgb(encoding, pixels, padding):
    np.testing.assert_array_equal(image_to_rgb(image(encoding, pixels, padding)), RGB)


def test_mono8_is_replicated_to_three_channels():
    gray = RGB[:, :, 0]
    np.testing.assert_array_equal(image_to_rgb(image('mono8', gray)), np.stack([gray] * 3, -1))


def test_image_data_length_disagreeing_with_height_times_step_is_bad():
    msg = image('rgb8', RGB)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(BadInput) as error:
        image_to_rgb(msg)
    assert error.value.kind == 'image_size'


def test_unknown_encoding_is_bad():
    msg = image('rgb8', RGB)
    msg.encoding = '16UC1'
    with pytest.raises(BadInput) as error:
        image_to_rgb(msg)
    assert error.value.kind == 'image_encoding'


def test_step_shorter_than_a_row_is_bad():
    msg = image('rgb8', RGB)
    msg.step = 10
    with pytest.raises(BadInput) as error:
        image_to_rgb(msg)
    assert error.value.kind == 'image_size'


def jpeg(pixels: np.ndarray, extension: str = '.jpg') -> CompressedImage:
    ok, data = cv2.imencode(extension, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(header=Header(), format=extension[1:], data=data.tobytes())


def test_png_round_trips_exactly_and_jpeg_closely():
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (64, 48))
    np.testing.assert_array_equal(compressed_to_rgb(jpeg(smooth, '.png')), smooth)
    decoded = compressed_to_rgb(jpeg(smooth))
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth).mean() < 6


def test_undecodable_jpeg_is_bad():
    msg = CompressedImage(header=Header(), format='jpeg', data=b'\xff\xd8 not a jpeg')
    with pytest.raises(BadInput) as error:
        compressed_to_rgb(msg)
    assert error.value.kind == 'image_decode'


def test_pipeline_decodes_large_jpegs_at_reduced_scale_but_never_below_output_size():
    pipeline = LabelingPipeline(settings=InputSettings(image_width=80, image_height=64))
    big = np.zeros((480, 640, 3), np.uint8)
    pipeline.on_compressed_image(jpeg(big))
    assert pipeline._jpeg_reduction == 4  # 160x120 still covers 80x64; 80x60 would not
    small = np.zeros((100, 120, 3), np.uint8)
    pipeline.on_compressed_image(jpeg(small))  # the camera changed resolution
    assert pipeline._jpeg_reduction == 1


def test_resize_keeps_uniform_colour_and_output_size():
    frame = np.empty((480, 640, 3), np.uint8)
    frame[:] = (10, 200, 30)
    small = resize_rgb(frame, 80, 64)
    assert small.shape == (64, 80, 3)
    assert (small == (10, 200, 30)).all()


@pytest.mark.parametrize('value,seen', [
    (0.05, True), (0.0215, True), (0.14, True), (-1.0, False), (0.2, False), (0.01, False),
    (math.inf, False), (-math.inf, False)])
def test_range_semantics_follow_the_thymio_driver(value, seen):
    assert range_saw_obstacle(range_msg('center', 0, value)) is seen


def test_too_close_can_count_as_an_obstacle():
    assert range_saw_obstacle(range_msg('center', 0, -math.inf), too_close_is_obstacle=True)


def test_nan_range_is_bad():
    with pytest.raises(BadInput) as error:
        range_saw_obstacle(range_msg('center', 0, math.nan))
    assert error.value.kind == 'range_nan'


def test_laser_uses_intensities_because_the_driver_clamps_nothing_to_range_min():
    values = [-1.0, 0.05, -1.0, 0.0215, 0.14]  # right to left
    msg = laser_msg(0, values)
    # Nothing seen and very close are both published as range_min + shift:
    assert msg.ranges[0] == pytest.approx(msg.ranges[3])
    np.testing.assert_array_equal(laser_saw_obstacle(msg, 5), [False, True, False, True, True])
    msg.intensities = []
    np.testing.assert_array_equal(laser_saw_obstacle(msg, 5), [False, True, False, False, False])


def test_laser_with_wrong_beam_count_is_bad():
    with pytest.raises(BadInput) as error:
        laser_saw_obstacle(laser_msg(0, [0.05] * 3), 5)
    assert error.value.kind == 'laser_beams'


def test_odometry_pose_and_yaw():
    stamp, x, y, yaw = odometry_pose(odometry_msg(1_500_000_000, 1.0, -2.0, 3.0))
    assert (stamp, x, y) == (1_500_000_000, 1.0, -2.0)
    assert yaw == pytest.approx(3.0)


@pytest.mark.parametrize('x,yaw', [(math.nan, 0.0), (math.inf, 0.0), (0.0, math.nan)])
def test_non_finite_odometry_is_bad(x, yaw):
    with pytest.raises(BadInput) as error:
        odometry_pose(odometry_msg(0, x, 0.0, yaw))
    assert error.value.kind == 'pose_nan'


def test_zero_quaternion_is_bad():
    msg = odometry_msg(0, 0.0, 0.0, 0.0)
    msg.pose.pose.orientation.w = 0.0
    with pytest.raises(BadInput):
        odometry_pose(msg)
