"""The lock that lets one process at a time make a run folder's frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from lib_videoloop.errors import VideoLoopError

LOCK = ".lock"


class RunLock:
    """Holds a run folder for this process, so that two cannot write the same frames.

    The .lock file exists only while a process holds the folder: release() removes it. A
    process that locked the file just as the holder removed it holds a file no one else can
    see, so it checks that its file is still the one at the path and else tries again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        path = self.root / LOCK
        for _ in range(10):
            handle = open(path, "a+")  # noqa: SIM115 -- held open past this call: the open file is the lock
            try:
                _lock_file(handle)
            except OSError:
                handle.close()
                raise VideoLoopError(
                    "resume",
                    str(self.root),
                    "is in use by another run right now",
                    "Wait for that run to finish or stop it; one run folder is made by one process at a time",
                ) from None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if os.name == "nt" or current == os.fstat(handle.fileno()).st_ino:
                self._handle = handle
                return
            handle.close()
        raise VideoLoopError("resume", str(self.root), "its lock file keeps changing", "Try again")

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            if os.name != "nt":  # removed while still held (see above); Windows keeps an open file
                (self.root / LOCK).unlink(missing_ok=True)
            handle.close()  # closing releases the lock; an exit or a kill does too


def _lock_file(handle: IO[str]) -> None:
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
