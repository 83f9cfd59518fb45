"""Atomic file writes: a reader, or a crash, sees the old file or the
complete new one, never a partial one. Every file fastvae writes (models,
checkpoints, run folders, pictures, downloads) goes through here."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

import numpy as np


def write_atomic(path, write) -> None:
    """Create or replace the file `path` with what `write(f)` writes, atomically.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and is renamed over `path`, so readers (and a crash) see either the old
    file or the complete new one, never a partial one.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Called with the temporary file opened for binary writing.

    Raises
    ------
    FileNotFoundError
        If the folder of `path` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name in it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist (for {path})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); give it the permissions a
        # plain open() would, or those of the file it replaces.
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set
    it, and setting it races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def temporary_files(path) -> list[Path]:
    """Temporary files `write_atomic(path, ...)` leaves if its process is
    killed mid-write (a normal exit or an exception removes them)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    return sorted(folder.glob(f".{glob.escape(path.name)}.*.tmp"))


def write_npz_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed .npz to exactly `path`, atomically."""
    write_atomic(path, lambda f: np.savez(f, **arrays))
