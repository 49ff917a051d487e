"""Frame files encoded and written on worker threads while the next frames generate.

The 16-bit PNG encode (~20 ms at 512x512 on one core) thus leaves the generation's path;
several workers keep up with a GPU that makes a frame in less (the encoder releases the GIL).
The crash rules stay: a manifest line is written only after its file is whole, so after a
kill -9 the queued frames are simply made again. Until then a queued frame is served from
memory, so readers never miss it. At most `depth` frames wait in memory.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

Key = tuple[str, int]  # (folder, frame index)


class WriteBehind:
    """write(folder, index, image) run on workers while running() is on; queued() is told of
    each frame put in the queue."""

    def __init__(self, write: Callable[[str, int, np.ndarray], None], queued: Callable[[], None]) -> None:
        self._write = write
        self._queued = queued
        self._pool: ThreadPoolExecutor | None = None
        self.pending: dict[Key, np.ndarray] = {}  # queued frames, served to readers
        self._failure: BaseException | None = None
        self._depth = 0
        self._slots = threading.BoundedSemaphore(1)

    @property
    def active(self) -> bool:
        return self._pool is not None

    @contextlib.contextmanager
    def running(self, depth: int = 8, workers: int | None = None) -> Iterator[None]:
        workers = workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=min(workers, depth), thread_name_prefix="videoloop-write")
        self._depth = depth
        self._slots = threading.BoundedSemaphore(depth)
        try:
            yield
            self.flush()
        finally:
            self._pool.shutdown(wait=True)  # a stop (Ctrl-C, Interrupt) still keeps what was queued
            self._pool = None

    def put(self, folder: str, index: int, image: np.ndarray) -> None:
        """Queues the frame; waits while `depth` frames wait already (back-pressure)."""
        assert self._pool is not None
        self.raise_failure()
        self._slots.acquire()
        key = (folder, index)
        self.pending[key] = image
        self._queued()
        self._pool.submit(self._write, folder, index, image).add_done_callback(lambda future: self._done(key, future))

    def _done(self, key: Key, future: Future[None]) -> None:
        if future.exception() is not None and self._failure is None:
            self._failure = future.exception()
        self.pending.pop(key, None)
        self._slots.release()

    def flush(self) -> None:
        """Waits until every queued frame is on disk; raises the first write that failed."""
        if self._pool is not None:
            # Each queued frame holds a slot until it is written: holding them all means none is left.
            for _ in range(self._depth):
                self._slots.acquire()
            for _ in range(self._depth):
                self._slots.release()
        self.raise_failure()

    def raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


class RecentFrames:
    """The frames last written, 16-bit as in their files, up to `limit` bytes: read back without
    a decode (in loop 1 each input frame is read by the flows, the window and the report just
    after it is written, and a 16-bit PNG decode costs 8 ms at 512x512, 29 ms at 1024x576)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: OrderedDict[Key, np.ndarray] = OrderedDict()  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, key: Key, q: np.ndarray) -> None:
        with self._lock:
            old = self._frames.pop(key, None)
            self._bytes += q.nbytes - (old.nbytes if old is not None else 0)
            self._frames[key] = q
            while self._bytes > self.limit:
                _, dropped = self._frames.popitem(last=False)
                self._bytes -= dropped.nbytes

    def get(self, key: Key) -> np.ndarray | None:
        with self._lock:
            return self._frames.get(key)
