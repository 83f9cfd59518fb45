"""The lock of a run folder: one training process at a time writes it.

``fastvae train`` holds an exclusive lock on ``run.lock`` in its folder from
before it writes anything until it has written the last file. The lock is
the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows),
so it is released when the process ends in any way, even ``kill -9``; a
stale lock file is harmless. The file also says who holds it (process id,
host, start time, command line), for the error a second run gets.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from fastvae.cli.common import UserError

__all__ = ["LOCK_FILE", "RunFolderBusy", "RunLock", "holder"]

LOCK_FILE = "run.lock"


class RunFolderBusy(UserError):
    """Another process is training into the run folder."""


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on fd without waiting; False if it is held."""
    if os.name == "nt":  # pragma: no cover - the CI runs on Linux
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _describe(record: dict | None) -> str:
    if not record:
        return "another process"
    command = record.get("command")
    return (
        f"process {record.get('pid')} on {record.get('host')}, started "
        f"{record.get('started')}" + (f" ({command})" if command else "")
    )


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class RunLock:
    """The exclusive lock of one run folder, as a context manager.

    Parameters
    ----------
    folder : str or os.PathLike
        An existing run folder.

    Raises
    ------
    RunFolderBusy
        On entry, if another process holds the lock; the message names it.

    Examples
    --------
    >>> with RunLock(out):   # doctest: +SKIP
    ...     train_into(out)
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise RunFolderBusy(
                f"{self.path.parent} is in use by another training run "
                f"({_describe(_read(self.path))}); wait for it to end, or train "
                "into another --out folder"
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["fastvae", *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)


def holder(folder: str | os.PathLike[str]) -> dict | None:
    """Who trains into `folder` now: the lock file's record (possibly empty)
    while a process holds the lock, None when none does."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _read(path) or {}
    finally:
        os.close(fd)
