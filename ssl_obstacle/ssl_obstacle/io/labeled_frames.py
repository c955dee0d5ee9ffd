"""
What the learner checks in a ``LabeledFrame`` before it scores and trains on it.

A labeled frame crosses DDS from a labeler the learner does not control: another machine,
another configuration, another program. Trained on blindly, a label of 7.0 drives the
binary cross-entropy negative (the model learns to push it further), a grid in another
sensor order teaches the left sensor what the right one saw, and an image of another size
or colour order is quietly resized or misread. :func:`check_labeled_frame` compares every
field with the learner's own configuration (:class:`FrameSpec`) and raises
:class:`~.conversions.BadInput` with a ``kind`` for the first problem found, so the node
can count each kind and say in words what to fix (:data:`FIXES`).

It reads message fields only (no rclpy import), so rclpy messages and those ``rosbags``
deserialises alike can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .conversions import BadInput, DEFAULT_MAX_IMAGE_PIXELS, ENCODINGS, image_to_rgb, stamp_to_ns

#: Metres two distances may differ by and still name the same grid column. The message
#: carries float32: 0.29 arrives as 0.28999999165534973, 8e-9 away.
DISTANCE_TOLERANCE = 1e-6

#: Encodings converted to rgb: the same three colours in another byte order (an alpha
#: channel is dropped), so nothing is lost or guessed. ``mono8`` is refused: a model
#: trained on colour frames would learn from grey ones something it never sees again.
COLOUR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8')

#: What to fix, by kind, for the log line that reports a refused frame.
FIXES: dict[str, str] = {
    'sensor_names': 'The labeler and the learner must name the same sensors, each once '
                    '(parameter sensor_names of both nodes; config/labeler.yaml sets it '
                    'for both).',
    'distances': 'The labeler and the learner must use the same distances (parameter '
                 'distances of both nodes; config/labeler.yaml sets it for both).',
    'grid_shape': 'labels and counts must hold one entry per sensor and distance '
                  '(len(sensor_names) x len(distances)), row-major [sensor][distance].',
    'labels_range': 'A label is the share of readings that saw an obstacle, in [0, 1]: '
                    'check the program that publishes ssl/labeled_frames.',
    'labels_nan': 'A cell with readings (counts > 0) needs a label in [0, 1]; NaN means '
                  'unknown and goes with counts = 0.',
    'labels_unknown': 'A cell without readings (counts = 0) is unknown: its label must be '
                      'NaN.',
    'image_encoding': f'The frame must be in colour ({", ".join(COLOUR_ENCODINGS)}); the '
                      'labeler publishes rgb8.',
    'image_too_large': 'Raise max_image_pixels only if the model input is really this '
                       'large.',
    'image_size': "The labeler must publish frames at the learner's input size (parameters "
                  'image_width and image_height of both nodes, in config/labeler.yaml).',
    'image_data': "The image's data must hold height x step bytes, with step at least "
                  'width x bytes per pixel.',
}

#: Every kind :func:`check_labeled_frame` may raise, in the order it checks them.
KINDS: tuple[str, ...] = tuple(FIXES)


@dataclass(frozen=True)
class FrameSpec:
    """The learner's side of the contract: its grid and its model's input size."""

    sensor_names: tuple[str, ...]
    distances: tuple[float, ...]
    image_width: int
    image_height: int
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class CheckedFrame:
    """A labeled frame that passed every check, in the learner's sensor order."""

    stamp: int
    image: np.ndarray  # (image_height, image_width, 3) uint8 rgb, a copy
    labels: np.ndarray  # (S, D) float32, NaN exactly where counts == 0
    counts: np.ndarray  # (S, D) uint8
    #: For each of the learner's sensors, the message's row it was taken from; ``None``
    #: when the message lists them in the learner's order already.
    row_order: tuple[int, ...] | None


def check_labeled_frame(msg: Any, spec: FrameSpec) -> CheckedFrame:
    """
    Return ``msg``'s arrays if every field agrees with ``spec``; raise ``BadInput`` if not.

    Sensor names may come in another order: the names say which row is which sensor, so
    the rows are mapped into the learner's order (``row_order``) rather than refused. A
    labeler configured with another order still labels the same sensors correctly; the
    mapping is exact (names equal as sets, each once) and the caller logs it. What cannot
    be mapped without guessing is refused: unknown, missing or repeated names, other
    distances (a label at 0.105 m is no label at 0.10 m), labels outside [0, 1] or NaN
    where readings exist, an image that is not the model's input size (resizing it would
    hide a labeler that crops or distorts differently from what is predicted later).
    """
    order = sensor_row_order(msg.sensor_names, spec.sensor_names)
    check_distances(msg.distances, spec.distances)
    labels, counts = grids(msg, len(spec.sensor_names), len(spec.distances))
    if order is not None:
        labels, counts = labels[list(order)], counts[list(order)]
    check_labels(labels, counts, spec)
    image = checked_image(msg.image, spec)
    return CheckedFrame(stamp=stamp_to_ns(msg.header.stamp), image=image, labels=labels,
                        counts=counts, row_order=order)


def sensor_row_order(names: Sequence[str], expected: Sequence[str]) -> tuple[int, ...] | None:
    """Return the message row of each expected sensor, or None when already in order."""
    names, expected = [str(n) for n in names], [str(n) for n in expected]
    if names == expected:
        return None
    if not names:
        raise BadInput('sensor_names', f'no sensor names; the learner expects {expected}')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInput('sensor_names', f'sensor names {names} repeat {repeated}')
    unknown = [n for n in names if n not in expected]
    missing = [n for n in expected if n not in names]
    if unknown or missing:
        raise BadInput('sensor_names', f"sensor names {names} differ from the learner's "
                                       f'{expected}: unknown {unknown}, missing {missing}')
    return tuple(names.index(n) for n in expected)


def check_distances(distances: Sequence[float], expected: Sequence[float]) -> None:
    """Refuse distances that are not the learner's, in its order (within 1e-6 m)."""
    got = np.asarray(distances, dtype=np.float64).reshape(-1)
    want = np.asarray(expected, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        raise BadInput('distances', f'{got.size} distances, the learner has {want.size} '
                                    f'({_metres(want)})')
    off = ~(np.abs(got - want) <= DISTANCE_TOLERANCE)  # NaN is off too
    if off.any():
        index = int(np.flatnonzero(off)[0])
        raise BadInput('distances', f"distance {index} is {got[index]:.6g} m, the learner's "
                                    f'is {want[index]:.6g} m ({int(off.sum())} of {want.size} '
                                    'differ)')


def grids(msg: Any, sensors: int, distances: int) -> tuple[np.ndarray, np.ndarray]:
    """Return labels (float32) and counts (uint8) as (S, D) arrays; refuse other lengths."""
    labels = np.array(msg.labels, dtype=np.float32).reshape(-1)
    counts = np.frombuffer(bytes(msg.counts), dtype=np.uint8).copy()
    cells = sensors * distances
    if labels.size != cells or counts.size != cells:
        raise BadInput('grid_shape', f'{labels.size} labels and {counts.size} counts, '
                                     f'expected {sensors} x {distances} = {cells} of each')
    return labels.reshape(sensors, distances), counts.reshape(sensors, distances)


def check_labels(labels: np.ndarray, counts: np.ndarray, spec: FrameSpec) -> None:
    """Refuse NaN or out-of-range labels where readings exist, and values where none do."""
    seen = counts > 0
    nan = seen & np.isnan(labels)
    if nan.any():
        raise BadInput('labels_nan', f'{int(nan.sum())} cells with readings have a NaN label, '
                                     f'first {_cell(nan, spec)}')
    outside = seen & ~((labels >= 0.0) & (labels <= 1.0))
    if outside.any():
        index = np.argwhere(outside)[0]
        raise BadInput('labels_range', f'{int(outside.sum())} labels lie outside [0, 1], '
                                       f'first {float(labels[tuple(index)]):g} at '
                                       f'{_cell(outside, spec)}')
    stray = ~seen & ~np.isnan(labels)
    if stray.any():
        raise BadInput('labels_unknown', f'{int(stray.sum())} cells without readings have a '
                                         f'label instead of NaN, first {_cell(stray, spec)}')


def checked_image(image: Any, spec: FrameSpec) -> np.ndarray:
    """Return the frame as (H, W, 3) rgb if it is a colour image of the model's input size."""
    encoding = str(image.encoding).lower()
    if encoding not in COLOUR_ENCODINGS:
        raise BadInput('image_encoding', f'image encoding {image.encoding!r}')
    width, height, step = int(image.width), int(image.height), int(image.step)
    if width * height > spec.max_pixels:
        raise BadInput('image_too_large', f'{width}x{height} = {width * height} pixels, more '
                                          f'than max_image_pixels ({spec.max_pixels})')
    if (width, height) != (spec.image_width, spec.image_height):
        raise BadInput('image_size', f'image {width}x{height}, the model takes '
                                     f'{spec.image_width}x{spec.image_height} (not resized)')
    channels = ENCODINGS[encoding][0]
    size = len(image.data)
    if step < width * channels or size != height * step:
        raise BadInput('image_data', f'{size} bytes of data for height {height} x step {step} '
                                     f'(width {width} x {channels} bytes per pixel)')
    return image_to_rgb(image, copy=True, max_pixels=spec.max_pixels)


def _cell(mask: np.ndarray, spec: FrameSpec) -> str:
    """Name the first cell of ``mask`` as a newcomer reads it: sensor and distance."""
    row, column = (int(i) for i in np.argwhere(mask)[0])
    return f'sensor {spec.sensor_names[row]} at {spec.distances[column]:.3f} m'


def _metres(values: np.ndarray) -> str:
    """Return a short list of distances for a message: first, last and count."""
    if values.size == 0:
        return 'none'
    if values.size <= 3:
        return ', '.join(f'{v:g} m' for v in values)
    return f'{values[0]:g} m to {values[-1]:g} m'
