"""
Write files so that a crash never leaves a torn one under the real name.

Every file the project writes (checkpoints, datasets, reports, figures) goes through here:
write a hidden temporary file beside the target, fsync it, rename it onto the target, fsync
the directory. Any exception (Ctrl-C included) removes the temporary file and leaves an
existing target untouched.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
from typing import Iterator


def temporary_path(target: str | os.PathLike[str]) -> pathlib.Path:
    """Return an unused hidden path beside ``target`` (same directory, so rename is atomic)."""
    target = pathlib.Path(target)
    return target.with_name(f'.{target.name}.{secrets.token_hex(4)}.partial')


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Persist a rename itself; without it a power cut can lose the new directory entry."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def commit(temp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Fsync ``temp``, rename it onto ``target`` and fsync the directory."""
    with open(temp, 'rb+') as stream:
        os.fsync(stream.fileno())
    os.replace(temp, target)
    fsync_directory(pathlib.Path(target).parent)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
    """
    Yield a temporary path beside ``path``; when the block succeeds, move it onto ``path``.

    If the block raises, the temporary file is removed and ``path`` keeps its old content.
    """
    temp = temporary_path(path)
    try:
        yield temp
        commit(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
