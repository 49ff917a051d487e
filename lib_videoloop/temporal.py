"""The init image of every frame of a loop: the previous loop's frames mixed over time.

The four temporal_superimpose_method values (config.METHOD_HELP) are served here, with the
frames read through windows that keep only what the next frames still need, and the flows of
the reference frames read from the run's flows/ folder (computed there on first need). Every
method stops at a scene cut: a neighbour on the far side of one is left out of the mix.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lib_videoloop.blend import difference_superimpose, temporal_superimpose, window_weights
from lib_videoloop.config import DIFFERENCE_METHOD, FILTER_METHOD, FLOW_METHOD, Settings
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.store import FrameStore, quantize16
from lib_videoloop.motion import FlowChain, filter_backward, filter_forward_and_combine, flow_superimpose
from lib_videoloop.planning import FramePlan

FILTER_SCRATCH = "filter_pass"  # the filter's backward pass of the current loop (raw files)
FILTER_SCRATCH_BYTES = 12  # a pixel of filter_in_order's scratch: 16-bit value, float16 backward value


class FrameWindow:
    """Frames of one folder around the current index, read once each, kept only while needed.

    The frame the next index will add is decoded on a worker thread while the current frame is
    generated (PNG decoding releases the GIL), so reading the window costs the loop nothing.
    """

    def __init__(self, store: FrameStore, folder: str, reader: ThreadPoolExecutor) -> None:
        self.store = store
        self.folder = folder
        self.reader = reader
        self.cache: dict[int, np.ndarray | Future[np.ndarray]] = {}

    def _load(self, j: int) -> np.ndarray:
        value = self.cache.get(j)
        if value is None:
            value = self.cache[j] = self.store.read_frame(self.folder, j)
        elif isinstance(value, Future):
            value = self.cache[j] = value.result()
        return value

    def get(self, indices: list[int], keep_from: int | None = None) -> dict[int, np.ndarray]:
        """The frames asked for; those before keep_from (default: the lowest asked) are dropped."""
        frames = {j: self._load(j) for j in indices}
        lowest = min(indices) if keep_from is None else keep_from
        for j in [j for j in self.cache if j < lowest]:
            del self.cache[j]
        self.read_ahead([max(indices) + 1])
        return frames

    def read_ahead(self, indices: Iterable[int]) -> None:
        """Starts reading these frames on the worker, without waiting."""
        for j in indices:
            if j < self.store.frame_count and j not in self.cache:
                self.cache[j] = self.reader.submit(self.store.read_frame, self.folder, j)


class NeighbourMix:
    """A frame mixed with its neighbours by one of the window methods (all but the filter):
    plainly, under the reference frames' difference mask, or warped along the flows. The
    window's weights leave out neighbours across a scene cut and past the clip's ends."""

    def __init__(self, settings: Settings, chain: FlowChain) -> None:
        self.method = settings.temporal_superimpose_method
        self.threshold = settings.difference_threshold
        self.chain = chain

    def window(self, weights: list[float], i: int, frame_count: int) -> tuple[list[tuple[int, float]], list[int]]:
        """Frame i's (neighbour, weight) pairs, and the frames the mix reads; the flows of the
        frames behind the window are dropped."""
        pairs = window_weights(weights, i, frame_count)
        if len(pairs) > 1:
            pairs = self.chain.reachable(pairs, i)
            half = len(weights) // 2
            self.chain.keep_only(i - half, i + half)
        return pairs, sorted({j for j, _ in pairs} | {i})

    def mix(
        self,
        frames: dict[int, np.ndarray],
        references: Callable[[list[int]], dict[int, np.ndarray]],
        i: int,
        pairs: list[tuple[int, float]],
    ) -> np.ndarray:
        """Frame i of `frames` (the window's) mixed by `pairs`; references(indices): the
        reference frames, read only by the difference mask."""
        if self.method == DIFFERENCE_METHOD:
            return difference_superimpose(frames, references(sorted(frames)), i, pairs, self.threshold)
        if self.method == FLOW_METHOD:
            return flow_superimpose(frames, i, pairs, self.chain)
        return temporal_superimpose(frames, pairs)


class LoopBlend:
    """(base, init) of each frame of one loop, asked for in frame order."""

    def __init__(
        self, settings: Settings, store: FrameStore, windows: tuple[FrameWindow, FrameWindow], flows: FlowFolder,
        filter_strength: Callable[[int], float],
    ) -> None:  # fmt: skip
        """windows: the previous loop's frames and the (first) reference frames."""
        self.previous, self.reference = windows
        self.chain = flows.chain()
        self.mixer = NeighbourMix(settings, self.chain)
        self.filtered: Iterator[tuple[int, np.ndarray, np.ndarray]] | None = None
        self.scratch = store.root / FILTER_SCRATCH
        if settings.temporal_superimpose_method == FILTER_METHOD:
            self.filtered = filter_in_order(
                store.frame_count,
                functools.partial(store.read_frame, self.previous.folder),
                self.chain,
                filter_strength,
                self.scratch,
            )

    def close(self) -> None:
        """The loop asks for no more frames: the filter's scratch goes even when the loop's last
        frame was not asked for (keyframe mode). Removed here, not in a `finally` of the
        generator: a stopped run's generator may be collected late, after a resume in the same
        WebUI process has made a new scratch at the same place."""
        if self.filtered is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def last_read(self, plans: list[FramePlan]) -> int:
        """The last frame of the previous loop that making these frames' init images reads: the
        window's last, and the next one, which the window reads ahead."""
        frame_count = self.previous.store.frame_count
        if self.filtered is not None:  # its backward pass reads the whole loop first
            return frame_count - 1
        return min(frame_count - 1, max(p.frame + len(p.temporal_weights) // 2 for p in plans) + 1)

    def frame(self, plan: FramePlan, frame_count: int) -> tuple[np.ndarray, np.ndarray]:
        i = plan.frame
        if self.filtered is not None:
            return next((x, out) for j, x, out in self.filtered if j == i)
        pairs, needed = self.mixer.window(plan.temporal_weights, i, frame_count)
        frames = self.previous.get(needed)
        return frames[i], self.mixer.mix(frames, self.reference.get, i, pairs)


def filter_in_order(
    frame_count: int,
    read: Callable[[int], np.ndarray],
    chain: FlowChain,
    strength: Callable[[int], float],
    scratch: Path,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The temporal filter over a clip's frames (`read(i)`): (i, frame, filtered frame), from the
    first frame to the last.

    The backward pass runs first, from the last frame down, and leaves in `scratch` each frame
    (16-bit, exact for a run's frames) and its backward value (float16): memory stays flat with
    the clip's length, and the forward pass, which runs with the loop, reads both from there
    instead of decoding the frame's PNG a second time. The scratch is made anew by every loop
    and every resumed run, so nothing half-written in it is ever read; it is removed with the
    last frame.
    """
    n = frame_count
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shape: tuple[int, ...] = ()

    # Raw files of a known shape: numpy's .npy reader parses its header with ast, which is not
    # safe in two threads at once on CPython 3.11 (see media/flows.py).
    def frame_read(i: int) -> np.ndarray:
        nonlocal shape
        x = read(i)
        shape = x.shape
        quantize16(x).tofile(scratch / f"x{i + 1:06d}.raw")
        return x

    backward = filter_backward(((i, frame_read(i)) for i in reversed(range(n))), strength, chain)
    for i, value in backward:
        value.astype(np.float16).tofile(scratch / f"b{i + 1:06d}.raw")
        chain.keep_only(i - 1, i + 1)

    def backward_value(i: int) -> np.ndarray:
        return np.fromfile(scratch / f"b{i + 1:06d}.raw", np.float16).reshape(shape).astype(np.float32)

    def frame(i: int) -> np.ndarray:  # as decode_png makes it from the same 16 bits
        x = np.fromfile(scratch / f"x{i + 1:06d}.raw", np.uint16).reshape(shape)
        return x.astype(np.float32) / np.float32(65535.0)

    forward = ((i, frame(i)) for i in range(n))
    for i, x, out in filter_forward_and_combine(forward, backward_value, strength, chain):
        chain.keep_only(i - 1, i + 1)
        if i == n - 1:  # everything is read: the loop may end without asking further
            shutil.rmtree(scratch, ignore_errors=True)
        yield i, x, out
