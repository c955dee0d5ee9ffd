"""
The published dataset of Nava et al. 2019 (idsia-robotics/learning-long-range-perception).

Their ``code/preprocess.py`` writes one HDF5 file of plain datasets, two per recording ``i``:

* ``bag{i}_x`` float64 (N, 64, 80, 3): the camera frame as OpenCV decodes it (**BGR**),
  resized to 80×64 (uint8 at that point), then standardised per image, ``(x - mean) / std``
  over every pixel and channel;
* ``bag{i}_y`` float64 (N, 5·D), distance-major: for each distance ``t_{d}`` the five
  sensors ``lx, cl, cx, cr, rx`` (left … right), holding the *raw proximity intensity* of
  the first future reading taken ``d`` cm further on; ``-1.0`` where none matched
  (``fillna(-1.0)``). Their ``test.py`` scores ``y > 0`` as an obstacle and ``y != -1`` as
  known.

D is not stored: it is the width over five. Their ``preprocess.py`` uses 0, 1, …, 30 cm
(D = 31, the published real-world file, and what their ``test.py`` reads) and, called
without distances, 0, 3.3, 6.6 and 10 cm (D = 4); :func:`distances_for` takes 1 cm steps
from 0 for any other D, and says so.

Our files (DESIGN.md §6) hold uint8 rgb frames that the model standardises per image. An
image of theirs is the affine image ``(raw - m) / s`` of a uint8 frame ``raw``, so its
values lie on a lattice of step ``1 / s``; :func:`to_uint8` recovers ``raw - min(raw)``
exactly from it (its lattice levels: an affine map of ``raw`` with a positive factor, which
per-image standardisation undoes: our standardisation of it *is* their image, up to float
rounding).
Where an image is not on such a lattice (a file made another way), it falls back to mapping
the image's min..max onto 0..255, which standardisation also undoes up to the rounding to
integers (about ``0.5 · range / 255`` standard deviations, ~0.01). :func:`standardisation_error`
measures what was lost, per image.

Their simulation file (``code/simulation/preprocess.py``) has groups ``bag{i}`` with
``x/cam1``, ``x/cam2``, ``x/cam3`` (three cameras of a Pioneer 3AT; ``input_cam1..3`` in
their Keras model) and ``y/target1`` (the mean grey level of a downward camera at each of
289 positions of a 17 × 17 grid, 3 m behind to 5 m ahead and 4 m to either side). That does
not fit our files: one camera per frame, and labels per proximity sensor and distance ahead.
:func:`inspect_file` recognises it and says so instead of importing a misleading dataset.

Nothing here imports ROS or torch; the command is ``commands/import_idsia.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import re
from typing import Iterator

import h5py
import numpy as np

from ..core.numpy_model import image_statistics
from ..core.thymio import SENSOR_NAMES

#: Their sensor columns, in their order (left to right); they are our five, in our order.
IDSIA_SENSORS: tuple[str, ...] = ('lx', 'cl', 'cx', 'cr', 'rx')

#: Our names of their five sensors, in the same left-to-right order.
OUR_SENSORS: tuple[str, ...] = SENSOR_NAMES

#: Their value for "no future reading matched": unknown.
UNKNOWN = -1.0

#: Distances (cm) their preprocess.py uses when called without any (a 20-column y).
DEFAULT_DISTANCES_CM: tuple[float, ...] = (0.0, 3.3, 6.6, 10.0)

#: Where the layout comes from, for error messages and provenance.
LAYOUT = 'idsia-robotics/learning-long-range-perception code/preprocess.py'

#: Gaps between sorted values of one image smaller than this are float rounding, not a step
#: of the lattice (the smallest true step, 1/std of a uint8 image, is above 1/128).
_GAP_EPS = 1e-6

#: A recovered lattice level farther than this from an integer means "not a lattice".
_LEVEL_TOLERANCE = 1e-3

_X_NAME = re.compile(r'^bag(\d+)_x$')
_Y_NAME = re.compile(r'^bag(\d+)_y$')


class IdsiaLayoutError(ValueError):
    """The file is not in the layout of their preprocess.py; the message says what it has."""


@dataclass(frozen=True)
class Recording:
    """One recording ``bag{index}`` of their file: its two datasets and their shapes."""

    index: int
    frames: int
    image_shape: tuple[int, int, int]
    columns: int

    @property
    def x_name(self) -> str:
        """Name of the image dataset."""
        return f'bag{self.index}_x'

    @property
    def y_name(self) -> str:
        """Name of the label dataset."""
        return f'bag{self.index}_y'

    @property
    def num_distances(self) -> int:
        """D: the label width over the five sensors."""
        return self.columns // len(IDSIA_SENSORS)


# ---------------------------------------------------------------------- the layout
def describe_contents(file: h5py.File, limit: int = 12) -> str:
    """Return what the file holds at its top level (names, kinds, shapes), for errors."""
    items = []
    for name in sorted(file.keys())[:limit]:
        node = file.get(name)
        if isinstance(node, h5py.Dataset):
            items.append(f'{name} {node.dtype} {tuple(node.shape)}')
        elif isinstance(node, h5py.Group):
            children = ', '.join(sorted(node.keys())[:6])
            items.append(f'{name}/ (group: {children})')
        else:
            items.append(f'{name} (unreadable)')
    if len(file.keys()) > limit:
        items.append(f'… {len(file.keys()) - limit} more')
    return '; '.join(items) if items else 'nothing (an empty file)'


def _is_simulation_layout(file: h5py.File) -> bool:
    """Their simulation file: groups bag{i} holding x/cam* and y/target* datasets."""
    groups = [file[name] for name in file
              if re.fullmatch(r'bag\d+', name) and isinstance(file[name], h5py.Group)]
    return bool(groups) and all('x' in group and 'y' in group for group in groups)


def _simulation_error(path: str, file: h5py.File) -> IdsiaLayoutError:
    first = file[sorted(file.keys())[0]]
    cameras = sorted(first['x'].keys()) if isinstance(first.get('x'), h5py.Group) else []
    targets = sorted(first['y'].keys()) if isinstance(first.get('y'), h5py.Group) else []
    return IdsiaLayoutError(
        f'{path} is their simulation dataset (groups bag{{i}} with x/{{{", ".join(cameras)}}} '
        f'and y/{{{", ".join(targets)}}}), which cannot become a dataset of ours: its frames '
        'come from three cameras (our files and model take one), and its targets are the '
        'floor brightness at a 17 x 17 grid of positions from 3 m behind to 5 m ahead, not '
        'proximity readings per sensor and distance ahead. Only their real-robot file '
        f'(datasets bag{{i}}_x and bag{{i}}_y, {LAYOUT}) can be imported.')


def _layout_error(path: str, file: h5py.File, problem: str) -> IdsiaLayoutError:
    return IdsiaLayoutError(
        f'{path} is not in the layout of {LAYOUT} ({problem}); expected datasets '
        f'bag{{i}}_x float (N, 64, 80, 3) and bag{{i}}_y float (N, 5*D); found: '
        f'{describe_contents(file)}')


def _check_pair(path: str, file: h5py.File, index: int) -> Recording:
    """Return the recording ``index`` after checking its two datasets fit together."""
    x, y = file[f'bag{index}_x'], file[f'bag{index}_y']
    for dataset in (x, y):
        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != 'f':
            raise _layout_error(path, file, f'{dataset.name.lstrip("/")} is not a float dataset')
    if x.ndim != 4 or x.shape[3] != 3:
        raise _layout_error(path, file, f'bag{index}_x has shape {x.shape}, not (N, H, W, 3)')
    if y.ndim != 2 or y.shape[1] == 0 or y.shape[1] % len(IDSIA_SENSORS):
        raise _layout_error(path, file, f'bag{index}_y has shape {y.shape}, not (N, 5*D)')
    if x.shape[0] != y.shape[0]:
        raise _layout_error(path, file, f'bag{index}_x has {x.shape[0]} frames but '
                                        f'bag{index}_y {y.shape[0]} rows')
    return Recording(index, int(x.shape[0]), tuple(int(v) for v in x.shape[1:]),
                     int(y.shape[1]))


def inspect_file(path: str | os.PathLike[str]) -> list[Recording]:
    """
    Return the recordings of one of their files, in index order, after checking them all.

    Raises :class:`IdsiaLayoutError` naming what was found when the file is not HDF5, is
    their simulation file, lacks a dataset of a pair, or has shapes that do not fit: the
    whole file is checked before anything is converted, so a bad recording 10 fails
    before recording 0 is written.
    """
    path = os.fspath(path)
    try:
        file = h5py.File(path, 'r')
    except OSError as error:
        raise IdsiaLayoutError(f'{path} cannot be read as HDF5: {error}') from error
    with file:
        if _is_simulation_layout(file):
            raise _simulation_error(path, file)
        xs = {int(m.group(1)) for m in map(_X_NAME.match, file.keys()) if m}
        ys = {int(m.group(1)) for m in map(_Y_NAME.match, file.keys()) if m}
        if not xs and not ys:
            raise _layout_error(path, file, 'no bag{i}_x / bag{i}_y datasets')
        unpaired = sorted(xs ^ ys)
        if unpaired:
            raise _layout_error(path, file, 'recordings without both datasets: '
                                            + ', '.join(f'bag{i}' for i in unpaired))
        recordings = [_check_pair(path, file, index) for index in sorted(xs)]
    widths = {r.columns for r in recordings}
    if len(widths) > 1:
        raise IdsiaLayoutError(f'{path}: the recordings have different label widths '
                               f'{sorted(widths)} (5 sensors x D distances each)')
    return recordings


def distances_for(count: int, step_cm: float | None = None) -> tuple[np.ndarray, str]:
    """
    Return the D distances (metres) of a label width, and a sentence saying how they were set.

    Their file does not store them. D = 31 is their published file (0 … 30 cm, 1 cm steps);
    D = 4 their preprocess.py's default (0, 3.3, 6.6, 10 cm); anything else is taken as
    1 cm steps from 0. ``step_cm`` overrides the inference with ``step_cm`` steps from 0.
    """
    if step_cm is not None:
        centimetres = np.arange(count) * float(step_cm)
        how = f'{count} distances at the given {step_cm:g} cm steps'
    elif count == len(DEFAULT_DISTANCES_CM):
        centimetres = np.array(DEFAULT_DISTANCES_CM)
        how = (f'{count} distances: taken as their preprocess.py default '
               f'{", ".join(f"{d:g}" for d in DEFAULT_DISTANCES_CM)} cm')
    else:
        centimetres = np.arange(count, dtype=np.float64)
        how = (f'{count} distances: taken as 0 … {count - 1} cm in 1 cm steps, as their '
               'preprocess.py makes them (the file does not store them; --distance-step-cm '
               'sets another step)')
    return np.round(centimetres / 100.0, 6), how


def iter_chunks(path: str | os.PathLike[str], recording: Recording,
                chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x (B, H, W, 3), y (B, 5·D)) float64 blocks of one recording, in order."""
    with h5py.File(path, 'r') as file:
        x, y = file[recording.x_name], file[recording.y_name]
        for start in range(0, recording.frames, chunk):
            yield (np.asarray(x[start:start + chunk], dtype=np.float64),
                   np.asarray(y[start:start + chunk], dtype=np.float64))


# ---------------------------------------------------------------------- labels
def convert_labels(y: np.ndarray, num_sensors: int = len(IDSIA_SENSORS),
                   ) -> tuple[np.ndarray, np.ndarray]:
    """
    Return our (labels (N, S, D) float32, counts (N, S, D) uint8) for their rows (N, S·D).

    Columns are distance-major (``t_d`` then ``lx … rx``), so a row reshapes to (D, S) and is
    transposed to our sensor-major cells. As their test.py scores it: an intensity > 0 is an
    obstacle (1.0), anything else known is free (0.0), ``-1`` is unknown (NaN, count 0);
    NaN (not in their files: they fill with -1) is unknown too. Known cells count one
    reading, which is what their label is: the first matching one.
    """
    y = np.asarray(y, dtype=np.float64)
    cells = y.reshape(len(y), -1, num_sensors).transpose(0, 2, 1)
    unknown = (cells == UNKNOWN) | np.isnan(cells)
    labels = np.where(unknown, np.nan, (cells > 0).astype(np.float64)).astype(np.float32)
    counts = (~unknown).astype(np.uint8)
    return labels, counts


# ---------------------------------------------------------------------- images
def _lattice_levels(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Return (levels (B, P) rounded, exact (B,)): each image as integers ``k`` with x = min + k·step.

    ``step`` is the image's smallest gap between distinct values. An image that came from a
    uint8 frame has all its gaps at multiples of it; ``exact`` is False where a level is not
    (near) an integer or the levels do not fit in 0..255.
    """
    low = flat.min(axis=1, keepdims=True)
    shifted = flat - low
    gaps = np.diff(np.sort(shifted, axis=1), axis=1)
    gaps[gaps < _GAP_EPS] = np.inf
    if gaps.shape[1]:
        step = gaps.min(axis=1, keepdims=True)
    else:  # one-pixel images: no gap, no lattice
        step = np.full((len(flat), 1), np.inf)
    with np.errstate(invalid='ignore'):
        levels = shifted / step  # inf step (a flat image): all zeros
    rounded = np.rint(levels)
    exact = np.isfinite(step[:, 0]) & (np.abs(levels - rounded).max(axis=1) < _LEVEL_TOLERANCE) \
        & (rounded.max(axis=1) <= 255)
    return rounded, exact


def to_uint8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Return (rgb uint8 images (B, H, W, 3), exact (B,)) from their standardised BGR images.

    Exact images are stored as their lattice levels (see the module docstring): for a
    camera frame, whose grey levels include two 1 apart, that is ``raw - min(raw)``, the
    camera's own grey levels shifted so the darkest pixel is 0, so that augmentation in
    grey levels means what it does on our frames (a frame whose levels share a common step
    ``g`` > 1 is stored divided by ``g``: affine still). Others are min..max
    mapped onto 0..255 and rounded. A flat or non-finite image (their ``0 / 0``) becomes
    black. Channels are reversed last: BGR to RGB (standardisation pools the channels, so
    the order does not change it).
    """
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    finite = np.isfinite(flat).all(axis=1)
    flat = np.where(finite[:, None], flat, 0.0)
    levels, exact = _lattice_levels(flat)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    stretched = np.rint((flat - low) / np.where(span > 0, span, 1.0) * 255.0)
    out = np.where(exact[:, None], levels, stretched)
    out[~finite] = 0.0
    images = np.clip(out, 0, 255).astype(np.uint8).reshape(x.shape)
    return np.ascontiguousarray(images[..., ::-1]), exact & finite


def standardise(images: np.ndarray) -> np.ndarray:
    """Return images standardised per image as the model's ``preprocess`` does (float64)."""
    images = np.asarray(images, dtype=np.float64)
    mean, std = image_statistics(images)
    return (images - mean[:, None, None, None]) / std[:, None, None, None]


def standardisation_error(images: np.ndarray, x: np.ndarray) -> np.ndarray:
    """
    Return, per image, the largest |our standardisation of ``images`` - their ``x``|.

    ``images`` are our rgb uint8 frames, ``x`` their BGR standardised ones (compared in the
    same channel order). In standard deviations of the image; NaN where ``x`` is not finite.
    """
    ours = standardise(images)[..., ::-1]
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid='ignore'):
        error = np.abs(ours - x).reshape(len(x), -1).max(axis=1)
    error[~np.isfinite(x.reshape(len(x), -1)).all(axis=1)] = np.nan
    return error
