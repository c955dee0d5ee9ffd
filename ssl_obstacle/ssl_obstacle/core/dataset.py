"""
The labeled dataset file (DESIGN.md §6): HDF5 written by export, read by train and evaluate.

Layout, one row per labeled frame, in the order the labeler finalised them:

* ``images`` uint8 (N, H, W, 3) rgb, the frames at the learner's input size;
* ``labels`` float32 (N, S, D), P(obstacle) per cell, NaN where unknown;
* ``counts`` uint8 (N, S, D), readings behind each label, 0 = unknown;
* ``stamps`` int64 (N,) ns; ``poses`` float32 (N, 3) x, y, yaw in the odom frame.

File attributes: ``distances`` (float64, metres), ``sensor_names`` (strings),
``label_params`` (JSON of :meth:`LabelParams.to_dict`), ``format_version`` and whatever
provenance the writer's caller adds (JSON-encoded when not a plain scalar).

The writer appends incrementally through a fixed-size staging buffer into chunked, resizable
datasets, so its memory does not grow with the run. It writes to a temporary file next to
the target and renames it into place only after everything is on disk: a crash, an
exception or Ctrl-C never leaves a half-written dataset that ``train`` would mistake for a
complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from types import TracebackType
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from . import atomic_file

FORMAT_VERSION = 1

#: Dataset names, in the order they are documented.
ARRAYS = ('images', 'labels', 'counts', 'stamps', 'poses')

#: Rows of an HDF5 chunk are sized to about this many bytes of images: big enough for fast
#: sequential writes and reads, small enough that a random minibatch does not decompress
#: (or read) megabytes it does not use.
_CHUNK_BYTES = 1 << 20


def _attr_value(value: Any) -> Any:
    """Something h5py stores as an attribute: scalars and strings as such, the rest as JSON."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value)


class DatasetWriter:
    """
    Append labeled frames to a new dataset file, published atomically on :meth:`commit`.

    Use as a context manager: leaving the block normally commits, leaving it by any
    exception (``KeyboardInterrupt`` included) aborts and removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike[str], *, image_size: tuple[int, int],
                 sensor_names: Sequence[str], distances: Sequence[float],
                 label_params: Mapping[str, Any] | None = None,
                 attrs: Mapping[str, Any] | None = None,
                 batch_frames: int = 256, compression: str | None = None) -> None:
        """Create the temporary file; ``image_size`` is ``(height, width)``."""
        self.path = pathlib.Path(path)
        directory = self.path.parent
        if not directory.is_dir():
            raise FileNotFoundError(f'output directory {str(directory)!r} does not exist')
        if self.path.is_dir():
            raise IsADirectoryError(f'output path {str(self.path)!r} is a directory')
        height, width = (int(v) for v in image_size)
        self.frame_shape = (height, width, 3)
        self.cell_shape = (len(sensor_names), len(distances))
        self.batch_frames = max(1, int(batch_frames))
        self.count = 0
        self._closed = False
        self.temp_path = _create_temp(self.path)
        try:
            self._file = h5py.File(self.temp_path, 'w')
            self._create(compression)
            self._write_attrs(sensor_names, distances, label_params or {}, attrs or {})
        except BaseException:
            self.abort()
            raise
        self._staging = {name: np.empty((self.batch_frames, *self._datasets[name].shape[1:]),
                                        dtype=self._datasets[name].dtype) for name in ARRAYS}
        self._staged = 0

    # ------------------------------------------------------------------ setup
    def _create(self, compression: str | None) -> None:
        frame_bytes = int(np.prod(self.frame_shape))
        rows = max(1, min(4096, _CHUNK_BYTES // frame_bytes))
        specs = {
            'images': (self.frame_shape, np.uint8),
            'labels': (self.cell_shape, np.float32),
            'counts': (self.cell_shape, np.uint8),
            'stamps': ((), np.int64),
            'poses': ((3,), np.float32),
        }
        self._datasets: dict[str, h5py.Dataset] = {}
        for name, (shape, dtype) in specs.items():
            # Small per-frame arrays get longer chunks: one chunk per few KB is wasteful.
            chunk_rows = rows if name == 'images' else max(rows, 1024)
            self._datasets[name] = self._file.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=(chunk_rows, *shape), compression=compression,
                fillvalue=np.nan if name == 'labels' else None)

    def _write_attrs(self, sensor_names: Sequence[str], distances: Sequence[float],
                     label_params: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        file_attrs = self._file.attrs
        file_attrs['format_version'] = FORMAT_VERSION
        file_attrs['distances'] = np.asarray(distances, dtype=np.float64)
        file_attrs['sensor_names'] = np.array([str(s) for s in sensor_names],
                                              dtype=h5py.string_dtype())
        file_attrs['label_params'] = json.dumps(dict(label_params), sort_keys=True)
        for key, value in attrs.items():
            file_attrs[key] = _attr_value(value)

    # ------------------------------------------------------------------ writing
    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Add or replace file attributes (e.g. summary counters known only at the end)."""
        self._check_open()
        for key, value in attrs.items():
            self._file.attrs[key] = _attr_value(value)

    def append(self, image: np.ndarray, labels: np.ndarray, counts: np.ndarray, stamp: int,
               pose: Sequence[float]) -> None:
        """Stage one labeled frame; full batches go to disk in one write per dataset."""
        self._check_open()
        if image.shape != self.frame_shape:
            raise ValueError(f'image shape {image.shape} != dataset frame shape '
                             f'{self.frame_shape}')
        if labels.shape != self.cell_shape or counts.shape != self.cell_shape:
            raise ValueError(f'labels/counts shape {labels.shape}/{counts.shape} != '
                             f'{self.cell_shape}')
        row = self._staged
        staging = self._staging
        staging['images'][row] = image
        staging['labels'][row] = labels
        staging['counts'][row] = counts
        staging['stamps'][row] = stamp
        staging['poses'][row] = pose[:3]
        self._staged += 1
        if self._staged == self.batch_frames:
            self._write_staged()

    def _write_staged(self) -> None:
        staged = self._staged
        if staged == 0:
            return
        start, end = self.count, self.count + staged
        for name, dataset in self._datasets.items():
            dataset.resize(end, axis=0)
            dataset[start:end] = self._staging[name][:staged]
        self.count = end
        self._staged = 0

    def __len__(self) -> int:
        """Frames appended so far (written or staged)."""
        return self.count + self._staged

    # ------------------------------------------------------------------ ending
    def commit(self) -> pathlib.Path:
        """Write what is staged, make it durable, and move the file onto its target path."""
        self._check_open()
        try:
            self._write_staged()
            self._file.attrs['frames'] = self.count
            self._file.close()
            atomic_file.commit(self.temp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written; safe to call more than once."""
        self._closed = True
        file = getattr(self, '_file', None)
        if file is not None:
            with contextlib.suppress(Exception):  # the file is being thrown away anyway
                file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f'dataset writer for {self.path} is closed')

    def __enter__(self) -> DatasetWriter:
        """Use as a context manager that commits on success and aborts on any exception."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Commit, or abort if the block raised (``KeyboardInterrupt`` included)."""
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _create_temp(target: pathlib.Path) -> pathlib.Path:
    """
    Create an empty file beside ``target``, with the umask's permissions.

    Unlike :func:`tempfile.mkstemp` (always 0600), the published dataset then gets the
    same permissions as any file the user creates.
    """
    for _ in range(100):
        temp = atomic_file.temporary_path(target)
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        return temp
    raise FileExistsError(f'cannot create a temporary file beside {target}')  # pragma: no cover


def _decode_attr(key: str, value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode('utf-8')
    if isinstance(value, np.ndarray) and value.dtype.kind in ('O', 'S'):
        return [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in value]
    if isinstance(value, str) and value[:1] in ('{', '['):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_dataset(path: str | os.PathLike[str], *, images: bool = True) -> dict[str, Any]:
    """
    Load a dataset file into memory.

    Returns the arrays of :data:`ARRAYS` (``images`` omitted when ``images`` is False, e.g.
    for label statistics of a long run), ``distances`` (ndarray), ``sensor_names`` (list),
    ``label_params`` (dict) and ``attrs`` with every file attribute decoded.
    """
    with h5py.File(path, 'r') as file:
        missing = [name for name in ARRAYS if name not in file]
        if missing:
            raise ValueError(f'{path}: not an ssl_obstacle dataset (missing {missing})')
        result: dict[str, Any] = {
            name: file[name][()] for name in ARRAYS if images or name != 'images'}
        attrs = {key: _decode_attr(key, value) for key, value in file.attrs.items()}
    result['attrs'] = attrs
    result['distances'] = np.asarray(attrs.get('distances', ()), dtype=np.float64)
    result['sensor_names'] = list(attrs.get('sensor_names', ()))
    result['label_params'] = attrs.get('label_params', {})
    return result
