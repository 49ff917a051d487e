"""Flows between neighbouring reference frames, kept in a folder (a run's flows/).

One file per pair of neighbours (NNNNNN.flow for frames N and N+1, counted from 1): a 20-byte
header (b"VLF2", height and width as uint32, the pair's match share as float64), the forward
and backward flows in float16, then as packed bits where a blend may follow each and where the
report counts the warp error along the forward flow. (b"VLF1" files, from runs made before the
report's pixels were kept, have no third mask: it is worked out when they are read.) They are
computed once, written whole or not at all (temporary name, then rename), and read back by later
loops, the flicker report and a resumed run, which therefore use the very same flows.

The format is raw on purpose: numpy's .npy/.npz reader parses its header with ast, and CPython
3.11 can fail with "SystemError: AST constructor recursion depth mismatch" (cpython gh-106905)
when two threads build ASTs at once: the loop's reader and the report worker, or the WebUI's
own threads. It happened in AUTOMATIC1111 on a resumed run.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lib_videoloop.media.images import write_atomic
from lib_videoloop.motion import FlowChain, FlowEstimator, PairFlow, valid_mask

log = logging.getLogger(__name__)

FLOWS = "flows"
_HEADER = struct.Struct("<4sIId")
_MAGIC = b"VLF2"
_WITHOUT_MEASURED = b"VLF1"


class FlowFolder:
    """Pairs of flows computed from `reference(i)` on first need and kept in `folder`.

    With a reader (an executor), the `ahead` pairs after the one asked for are computed or read
    ahead on it, so that a loop going through the frames in order rarely waits for a flow: with
    as many threads as pairs ahead, a GPU that makes frames faster than one core makes flows.

    One folder serves a whole run from several threads at once (the loop's blends and
    in-betweens, the denoise pass, the report worker): each thread reads ahead in its own
    direction, and a pair being computed for one is waited for by the others, not computed twice.
    """

    def __init__(
        self,
        folder: Path,
        reference: Callable[[int], np.ndarray],
        frame_count: int,
        reader: ThreadPoolExecutor | None = None,
        ahead: int = 1,
    ) -> None:
        self.folder = folder
        self.reference = reference
        self.frame_count = frame_count
        self.reader = reader
        self.ahead = ahead
        # Pairs started ahead (done or not), each with the ident of the thread that started it.
        self._futures: dict[int, tuple[Future[PairFlow], int]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # each thread's DIS estimator and its last pair

    def path(self, i: int) -> Path:
        return self.folder / f"{i + 1:06d}.flow"

    def chain(self) -> FlowChain:
        return FlowChain(self.pair)

    def pair(self, i: int) -> PairFlow:
        last = getattr(self._local, "last", -1)
        step = 1 if i >= last else -1  # the filter's backward pass goes down
        self._local.last = i
        with self._lock:
            started = self._futures.get(i)  # left there: another thread asking meanwhile waits for it
            if started is None and self.reader is not None:
                started = self._futures[i] = (self.reader.submit(self._load_or_compute, i), threading.get_ident())
        self.read_ahead(i + step, step)
        if started is None:
            return self._load_or_compute(i)
        pair = started[0].result()
        with self._lock:
            if self._futures.get(i) is started:  # the file serves whoever asks next
                del self._futures[i]
        return pair

    def read_ahead(self, first: int, step: int = 1) -> None:
        """Starts computing (or reading) the `ahead` pairs from `first` on, without waiting."""
        if self.reader is None:
            return
        me = threading.get_ident()
        with self._lock:
            # Pairs this thread made ahead and never asked for are dropped once far behind (their
            # files stay). Another thread's are left to it: the report reads behind the loop's
            # blends, and dropping each other's made a quarter of the reads twice.
            far = [
                k for k, (f, starter) in self._futures.items()
                if starter == me and f.done() and abs(k - first) > self.ahead + 1
            ]  # fmt: skip
            for k in far:
                del self._futures[k]
            for upcoming in range(first, first + step * self.ahead, step):
                if 0 <= upcoming < self.frame_count - 1 and upcoming not in self._futures:
                    self._futures[upcoming] = (self.reader.submit(self._load_or_compute, upcoming), me)

    def _load_or_compute(self, i: int) -> PairFlow:
        path = self.path(i)
        if path.is_file():
            try:
                return _decode(path.read_bytes())
            except (ValueError, struct.error):  # damaged after it was written: made again, the same
                log.warning("%s is damaged; that flow is computed again", path)
        estimator = getattr(self._local, "estimator", None) or FlowEstimator()
        self._local.estimator = estimator  # DIS keeps buffers: one per thread
        pair = PairFlow.estimate(estimator, self.reference(i), self.reference(i + 1))
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _encode(pair))
        return pair


def file_size(width: int, height: int) -> int:
    """Bytes of one pair's flow file: the header, two float16 flows, three masks of packed bits."""
    pixels = width * height
    return _HEADER.size + 2 * pixels * 2 * 2 + (3 * pixels + 7) // 8


def _encode(pair: PairFlow) -> bytes:
    h, w = pair.forward.shape[:2]
    masks = (pair.valid_forward, pair.valid_backward, pair.measured)
    valid = np.packbits(np.concatenate([m.ravel() for m in masks]))
    return b"".join(
        [
            _HEADER.pack(_MAGIC, h, w, pair.matched),
            pair.forward.astype("<f2").tobytes(),
            pair.backward.astype("<f2").tobytes(),
            valid.tobytes(),
        ]
    )


def _decode(data: bytes) -> PairFlow:
    magic, h, w, matched = _HEADER.unpack_from(data)
    if magic not in (_MAGIC, _WITHOUT_MEASURED):
        raise ValueError("not a flow file")
    flow_bytes = h * w * 2 * 2
    start = _HEADER.size
    forward = np.frombuffer(data, "<f2", h * w * 2, start).reshape(h, w, 2).astype(np.float32)
    backward = np.frombuffer(data, "<f2", h * w * 2, start + flow_bytes).reshape(h, w, 2).astype(np.float32)
    bits = np.frombuffer(data, np.uint8, offset=start + 2 * flow_bytes)
    count = 3 if magic == _MAGIC else 2
    masks = np.unpackbits(bits, count=count * h * w).astype(bool).reshape(count, h, w)
    measured = masks[2] if count == 3 else valid_mask(forward, backward)
    return PairFlow(forward, backward, masks[0], masks[1], matched, measured)
