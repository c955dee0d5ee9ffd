"""
``ssl-obstacle import-idsia FILE.h5 --out DIR``: the dataset of Nava et al. 2019 as our files.

Their HDF5 file (one, from idsia-robotics/learning-long-range-perception's
``code/preprocess.py``) becomes one dataset file of ours per recording, ``DIR/bag{i}.h5``
(DESIGN.md §6, written by :class:`~ssl_obstacle.core.dataset.DatasetWriter`), which
``train`` and ``evaluate`` read like any other, and with ``--protocol nava2019`` split and
score as the paper does. The conversion itself (layout check, labels, images, distances) is
:mod:`ssl_obstacle.io.idsia_dataset`'s.

All or nothing: the whole source is checked before anything is written, the files are
written into a hidden directory beside ``DIR`` and that directory is renamed to ``DIR`` only
when every recording is complete; on any failure (Ctrl-C included) it is removed, so no
output is left behind and an unfinished import is never mistaken for a finished one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import datetime
import os
import pathlib
import secrets
import shutil
import sys
from typing import Callable

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..core.atomic_file import fsync_directory
from ..core.dataset import DatasetWriter
from ..io.idsia_dataset import (convert_labels, distances_for, IdsiaLayoutError, inspect_file,
                                iter_chunks, LAYOUT, OUR_SENSORS, Recording,
                                standardisation_error, to_uint8)

#: What the labels of an imported file mean, stored as its ``label_params``.
LABEL_RULE = {
    'rule': 'nava2019',
    'obstacle': 'raw proximity intensity > 0 of the first future reading taken d further on '
                '(their next.py: within 1 cm along, 1 cm across, 0.05 rad, at 5-20 cm/s)',
    'unknown': 'their -1.0: no future reading matched',
}


class ImportIdsiaError(RuntimeError):
    """The import cannot proceed; the message says why, in terms a user can act on."""


@dataclass
class RecordingSummary:
    """What one recording became: for the printed summary and the tests."""

    index: int
    path: pathlib.Path
    frames: int
    known_cells: int
    positive_cells: int
    exact_images: int
    max_error: float


def _check_output(out: pathlib.Path) -> None:
    """Refuse an output that cannot be created or would mix with files already there."""
    if not out.parent.is_dir():
        raise ImportIdsiaError(f'output directory {str(out.parent)!r} does not exist')
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImportIdsiaError(f'{str(out)!r} already exists and is not an empty directory; '
                               'choose a new --out')


def _staging_directory(out: pathlib.Path) -> pathlib.Path:
    """Create the hidden directory beside ``out`` that becomes it (umask permissions)."""
    staging = out.with_name(f'.{out.name}.{secrets.token_hex(4)}.partial')
    staging.mkdir(mode=0o777)
    return staging


def _publish(staging: pathlib.Path, out: pathlib.Path) -> None:
    """Rename the complete staging directory onto ``out`` (absent or empty) and persist it."""
    fsync_directory(staging)
    os.replace(staging, out)
    fsync_directory(out.parent)


def _attrs(source: pathlib.Path, recording: Recording, how: str) -> dict[str, object]:
    return {
        'source': f'{source}:{recording.x_name},{recording.y_name}',
        'source_file': str(source),
        'source_layout': LAYOUT,
        'recording': recording.index,
        'distances_inferred': how,
        'stamps_meaning': 'frame index (their file stores no times)',
        'poses_meaning': 'NaN (their file stores no poses)',
        'images_meaning': 'their standardised BGR frames as rgb uint8 that our per-image '
                          'standardisation maps back onto them (docs/paper_dataset.md)',
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'created_by': f'ssl-obstacle import-idsia {__version__}',
    }


def _convert(source: pathlib.Path, recording: Recording, path: pathlib.Path,
             distances: np.ndarray, how: str, bar: tqdm) -> RecordingSummary:
    """Write one recording as one dataset file; return what it holds."""
    summary = RecordingSummary(recording.index, path, 0, 0, 0, 0, 0.0)
    pose = (np.nan, np.nan, np.nan)
    with DatasetWriter(path, image_size=recording.image_shape[:2], sensor_names=OUR_SENSORS,
                       distances=distances, label_params=LABEL_RULE,
                       attrs=_attrs(source, recording, how)) as writer:
        for x, y in iter_chunks(source, recording):
            images, exact = to_uint8(x)
            labels, counts = convert_labels(y)
            errors = standardisation_error(images, x)
            for row in range(len(images)):
                writer.append(images[row], labels[row], counts[row], summary.frames + row, pose)
            summary.frames += len(images)
            summary.known_cells += int(counts.sum())
            summary.positive_cells += int(np.nansum(labels))
            summary.exact_images += int(exact.sum())
            if np.isfinite(errors).any():
                summary.max_error = max(summary.max_error, float(np.nanmax(errors)))
            bar.update(len(images))
        writer.set_attrs({'images_exact': summary.exact_images,
                          'standardisation_max_error': summary.max_error})
    return summary


def import_idsia(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 step_cm: float | None = None, progress: bool = False,
                 log: Callable[[str], None] = print) -> list[RecordingSummary]:
    """
    Convert their file into ``out``/bag{i}.h5, all or nothing; return one summary per file.

    Raises :class:`~ssl_obstacle.io.idsia_dataset.IdsiaLayoutError` for a file not in their
    layout and :class:`ImportIdsiaError` for an unusable ``out``, both before anything is
    written.
    """
    source, out = pathlib.Path(source).resolve(), pathlib.Path(out)
    recordings = inspect_file(source)
    _check_output(out)
    distances, how = distances_for(recordings[0].num_distances, step_cm)
    log(f'{source}: {len(recordings)} recordings, {sum(r.frames for r in recordings)} frames; '
        f'labels {recordings[0].columns} columns = 5 sensors x {how}')
    staging = _staging_directory(out)
    try:
        with tqdm(total=sum(r.frames for r in recordings), unit='frame', disable=not progress,
                  file=sys.stderr, mininterval=0.5, dynamic_ncols=True, desc='import') as bar:
            summaries = [_convert(source, recording, staging / f'bag{recording.index}.h5',
                                  distances, how, bar) for recording in recordings]
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [RecordingSummary(s.index, out / s.path.name, s.frames, s.known_cells,
                             s.positive_cells, s.exact_images, s.max_error) for s in summaries]


def format_summary(summaries: list[RecordingSummary]) -> str:
    """Return one line per recording: frames, known and positive cells, image fidelity."""
    lines = []
    for s in summaries:
        cells = s.frames * len(OUR_SENSORS)
        known = s.known_cells / cells if cells else 0.0
        positive = s.positive_cells / s.known_cells if s.known_cells else 0.0
        lines.append(f'  {s.path.name}: {s.frames} frames, {100 * known:.1f} % of cells known '
                     f'(per distance and sensor), {100 * positive:.1f} % of them obstacles; '
                     f'{s.exact_images}/{s.frames} images exact, max standardisation error '
                     f'{s.max_error:.2g}')
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``import-idsia`` subcommand."""
    parser.add_argument('file', help='their HDF5 file (bag{i}_x / bag{i}_y datasets)')
    parser.add_argument('--out', required=True,
                        help='directory to create (absent or empty): one bag{i}.h5 per recording')
    parser.add_argument('--distance-step-cm', type=float, default=None,
                        help='distances are 0, step, 2*step, ... cm (default: inferred from the '
                             'label width, 1 cm steps for the published file)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args: argparse.Namespace) -> int:
    """Import and print a summary; 0 on success, 2 with ``error: ...`` when it cannot."""
    if args.distance_step_cm is not None and not args.distance_step_cm > 0:
        print('error: --distance-step-cm must be positive', file=sys.stderr)
        return 2
    try:
        summaries = import_idsia(args.file, args.out, step_cm=args.distance_step_cm,
                                 progress=not args.no_progress and sys.stderr.isatty())
    except (IdsiaLayoutError, ImportIdsiaError) as error:
        print(f'error: {" ".join(str(error).split())}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: cannot import {args.file!r} into {args.out!r}: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted; nothing written', file=sys.stderr)
        return 130
    print(format_summary(summaries))
    print(f'wrote {len(summaries)} files into {args.out}')
    return 0
