"""A run folder's folders being filled by a thread while other threads read them.

The input copy of a new run fills input/ (and masks/, the references) while loop 1 already
reads its first frames: a reader of a frame not made yet waits for it, and the fill goes no
further ahead of its readers than it must.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

FILL_AHEAD = 4  # frames a folder's fill makes beyond the highest one asked for


class Fills:
    """has(folder, index): whether the frame is queued or written (the store knows)."""

    def __init__(self, has: Callable[[str, int], bool]) -> None:
        self._has = has
        self._filling: set[str] = set()  # folders a thread is still writing
        self._asked: dict[str, int] = {}  # the highest frame of each such folder a reader asked for
        self._along: dict[str, str] = {}  # a folder written with a filling one: its frame i comes first
        self._errors: dict[str, BaseException] = {}
        self._arrived = threading.Condition()  # a frame of a filling folder was queued

    @contextlib.contextmanager
    def filled_by(
        self, folder: str, fill: Callable[[Callable[[int], bool]], None], along: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """See FrameStore.filled_by."""
        done = threading.Event()
        self._asked[folder] = -1
        self._along.update(dict.fromkeys(along, folder))

        def may_make(index: int) -> bool:
            with self._arrived:
                while not done.is_set() and index > self._asked[folder] + FILL_AHEAD:
                    self._arrived.wait()
            return not done.is_set()

        def run() -> None:
            try:
                fill(may_make)
            except BaseException as exc:  # handed to the readers and to the block's end
                self._errors[folder] = exc
            finally:
                with self._arrived:
                    self._filling.discard(folder)
                    self._arrived.notify_all()

        self._filling.add(folder)
        self._errors.pop(folder, None)
        thread = threading.Thread(target=run, name=f"videoloop-fill-{folder}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            with self._arrived:
                done.set()
                self._arrived.notify_all()
            thread.join()
            for name in along:
                self._along.pop(name, None)
        error = self._errors.pop(folder, None)
        if error is not None:
            raise error

    def wait_if_filling(self, folder: str, index: int) -> None:
        """Waits until frame `index` of `folder` is there, when a fill is making it; raises the
        fill's error when the fill ended without it."""
        leader = self._along.get(folder, folder)
        if leader in self._filling or leader in self._errors:
            self._wait_for(leader, index)

    def _wait_for(self, folder: str, index: int) -> None:
        with self._arrived:
            if index > self._asked.get(folder, index):
                self._asked[folder] = index
                self._arrived.notify_all()  # the fill may go on
            while folder in self._filling and not self._has(folder, index):
                self._arrived.wait()
        error = self._errors.get(folder)
        if error is not None and not self._has(folder, index):
            raise error

    def announce(self) -> None:
        """A frame was queued or finished: a reader of a folder being filled may be waiting for it."""
        if self._filling:
            with self._arrived:
                self._arrived.notify_all()
