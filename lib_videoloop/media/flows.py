"""Flows between neighbouring reference frames, kept in a folder (a run's flows/).

One file per pair of neighbours (NNNNNN.npz for frames N and N+1, counted from 1): the forward
and backward flows in float16 and where a blend may follow them, as packed bits. They are
computed once, written whole or not at all (temporary name, then rename), and read back by later
loops and by a resumed run, which therefore blend along the very same flows.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lib_videoloop.media.images import write_atomic
from lib_videoloop.motion import FlowChain, FlowEstimator, PairFlow

FLOWS = "flows"


class FlowFolder:
    """Pairs of flows computed from `reference(i)` on first need and kept in `folder`.

    With a reader (a one-thread executor), the pair after the one asked for is computed or read
    ahead on it, so that a loop going through the frames in order rarely waits for a flow.
    """

    def __init__(
        self,
        folder: Path,
        reference: Callable[[int], np.ndarray],
        frame_count: int,
        reader: ThreadPoolExecutor | None = None,
    ) -> None:
        self.folder = folder
        self.reference = reference
        self.frame_count = frame_count
        self.reader = reader
        self._ahead: dict[int, Future[PairFlow]] = {}
        self._last = -1
        self._local = threading.local()

    def path(self, i: int) -> Path:
        return self.folder / f"{i + 1:06d}.npz"

    def chain(self) -> FlowChain:
        return FlowChain(self.pair, self.frame_count)

    def pair(self, i: int) -> PairFlow:
        future = self._ahead.pop(i, None)
        pair = future.result() if future is not None else self._load_or_compute(i)
        upcoming = i + 1 if i >= self._last else i - 1  # the filter's backward pass goes down
        self._last = i
        self._ahead = {k: f for k, f in self._ahead.items() if abs(k - i) <= 2}
        if self.reader is not None and 0 <= upcoming < self.frame_count - 1 and upcoming not in self._ahead:
            self._ahead[upcoming] = self.reader.submit(self._load_or_compute, upcoming)
        return pair

    def forward_backward(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The two flows of pair i alone, as the flicker metric takes them."""
        pair = self.pair(i)
        return pair.forward, pair.backward

    def _load_or_compute(self, i: int) -> PairFlow:
        path = self.path(i)
        if path.is_file():
            with np.load(path) as data:
                shape = data["forward"].shape[:2]
                valid = np.unpackbits(data["valid"], count=2 * shape[0] * shape[1]).astype(bool)
                return PairFlow(
                    data["forward"].astype(np.float32),
                    data["backward"].astype(np.float32),
                    valid[: shape[0] * shape[1]].reshape(shape),
                    valid[shape[0] * shape[1] :].reshape(shape),
                    float(data["matched"]),
                )
        estimator = getattr(self._local, "estimator", None) or FlowEstimator()
        self._local.estimator = estimator  # DIS keeps buffers: one per thread
        pair = PairFlow.estimate(estimator, self.reference(i), self.reference(i + 1))
        buffer = io.BytesIO()
        np.savez(
            buffer,
            forward=pair.forward.astype(np.float16),
            backward=pair.backward.astype(np.float16),
            valid=np.packbits(np.concatenate([pair.valid_forward.ravel(), pair.valid_backward.ravel()])),
            matched=np.float64(pair.matched),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
        return pair
