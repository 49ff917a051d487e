"""Temporal smoothing of an existing clip, without any model: the `smooth` command.

Streams the clip through a sliding window with any temporal_superimpose_method of the engine,
optionally along the motion of another clip (its clean source, --reference_frames_directory),
then optionally through the FastDVDNet pass, into a video or a folder of PNG frames. The
temporal filter runs backwards first, so its frames and backward pass go through a temporary
folder (float files, removed at the end) rather than memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lib_videoloop.blend import difference_superimpose, temporal_superimpose, window_weights
from lib_videoloop.config import DIFFERENCE_METHOD, FILTER_METHOD, FLOW_METHOD
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.motion import FlowChain, FlowEstimator, PairFlow, flow_superimpose
from lib_videoloop.temporal import filter_in_order


class _Lookahead:
    """Frames of a stream by index, read as far ahead as asked, forgotten once behind."""

    def __init__(self, frames: Iterable[np.ndarray], setting: str, shape: tuple[int, ...] | None = None) -> None:
        self.source = enumerate(frames)
        self.setting = setting
        self.shape = shape
        self.cache: dict[int, np.ndarray] = {}

    def get(self, j: int) -> np.ndarray:
        while j not in self.cache:
            item = next(self.source, None)
            if item is None:
                raise VideoLoopError(
                    self.setting, "", f"has only {j} frames, fewer than the clip", "Give a clip as long as the input"
                )
            k, frame = item
            if self.shape is not None and frame.shape != self.shape:
                frame = resize_frame(frame, self.shape[1], self.shape[0])  # flows need the clip's geometry only
            self.cache[k] = frame
        return self.cache[j]

    def forget_below(self, j: int) -> None:
        for k in [k for k in self.cache if k < j]:
            del self.cache[k]


def smooth_frames(
    frames: Iterable[np.ndarray],
    frame_count: int,
    weights: list[float],
    *,
    method: str = "simple",
    references: Iterable[np.ndarray] | None = None,
    difference_threshold: float = 24,
    filter_strength: float = 0.7,
) -> Iterator[np.ndarray]:
    """Yields each frame mixed with its neighbours by `method`; the motion (and the difference
    mask) come from `references`, or from the clip itself. Holds only a window of frames."""
    clip = _Lookahead(frames, "input")
    refs = clip if references is None else _Lookahead(references, "--reference_frames_directory", clip.get(0).shape)
    if method == FILTER_METHOD:
        yield from _filtered(clip, refs, frame_count, filter_strength)
        return
    estimator = FlowEstimator()
    chain = FlowChain(lambda k: PairFlow.estimate(estimator, refs.get(k), refs.get(k + 1)))
    half = len(weights) // 2
    for i in range(frame_count):
        pairs = window_weights(weights, i, frame_count)
        if len(pairs) > 1:
            pairs = chain.reachable(pairs, i)
            chain.keep_only(i - half, i + half)
        needed = sorted({j for j, _ in pairs} | {i})
        window = {j: clip.get(j) for j in needed}
        if method == DIFFERENCE_METHOD:
            yield difference_superimpose(window, {j: refs.get(j) for j in needed}, i, pairs, difference_threshold)
        elif method == FLOW_METHOD:
            yield flow_superimpose(window, i, pairs, chain)
        else:
            yield temporal_superimpose(window, pairs)
        clip.forget_below(i + 1 - half)
        refs.forget_below(i + 1 - half)


def _filtered(clip: _Lookahead, refs: _Lookahead, frame_count: int, strength: float) -> Iterator[np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="videoloop-smooth-") as tmp:
        folder = Path(tmp)
        flows = FlowFolder(folder / "flows", refs.get, frame_count)
        shape = clip.get(0).shape
        for i in range(frame_count):  # the clip to float files, the flows computed on the way
            clip.get(i).astype(np.float32).tofile(folder / f"{i:06d}.raw")
            if i > 0:
                flows.pair(i - 1)
            clip.forget_below(i)  # frame i is the next pair's first
            refs.forget_below(i)

        def read(i: int) -> np.ndarray:
            return np.fromfile(folder / f"{i:06d}.raw", np.float32).reshape(shape)

        for _, _x, out in filter_in_order(frame_count, read, flows.chain(), lambda _i: strength, folder / "filter"):
            yield out
