"""Every worker thread of a run, started together and stopped in one order.

A run works beside its generations: the next call's init images are prepared, the previous
loop's frames read ahead, flows computed, the input copied, each loop measured and encoded.
Each of those has its own pool here (one thread where order matters, several for flows), and
leaving the block stops them in the order that lets each finish what the next one still needs.
The run folder's own file writes are the store's (FrameStore.background_writes): they outlive
this block, so a stop still keeps every frame that was queued.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

# Flows are computed this many pairs ahead, on as many threads (OpenCV's DIS uses one core each).
FLOW_THREADS = min(4, os.cpu_count() or 1)


class RunThreads:
    """Use as a context manager around a run's loops.

    prepare: the next call's init images, made while this call generates; resize: the input
    copy's frames, resized a few ahead of the one written (copying() holds the copy);
    read: frames of the previous loop and the references, read ahead;
    flow: the reference's flows, FLOW_THREADS pairs ahead;
    report: each loop's flicker measurement; fidelity: each frame's PSNR and SSIM, for the
    report; video: each loop's video; final: the last loop's video, encoded as its frames are
    made.
    """

    def __init__(self) -> None:
        # An executor starts its threads on its first job: the pools of a run that needs none cost nothing.
        self.prepare = _pool("prepare")
        self.resize = _pool("resize", 2)
        self.read = _pool("read")
        self.flow = _pool("flow", FLOW_THREADS)
        self.report = _pool("report")
        self.fidelity = _pool("fidelity")
        self.video = _pool("video")
        self.final = _pool("final-video")
        self._copy = contextlib.ExitStack()

    def __enter__(self) -> RunThreads:
        return self

    def copying(self, fill: contextlib.AbstractContextManager[None]) -> None:
        """Holds the input copy (FrameStore.filled_by) until the block ends, after `prepare`."""
        self._copy.enter_context(fill)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # The call being prepared may wait for an input frame: it finishes while the copy still
        # runs. The copy then ends before the pools that read what it writes.
        try:
            self.prepare.shutdown(wait=True)
        finally:
            try:
                self._copy.__exit__(kind, error, trace)  # raises the copy's error, if it failed
            finally:
                # The report reads flows (and may start reading the next ones) and waits for the
                # fidelity it hands on: it ends before them.
                for pool in (self.resize, self.read, self.report, self.fidelity, self.flow, self.video, self.final):
                    pool.shutdown(wait=True)


def _pool(name: str, workers: int = 1) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"videoloop-{name}")
