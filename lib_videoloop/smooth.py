"""Temporal smoothing of an existing clip, without any model: the `smooth` command.

Streams the clip through a sliding window (the temporal superimpose of the engine, optionally
with the difference mask), then optionally through the FastDVDNet pass, into a video or a folder
of PNG frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from lib_videoloop.blend import difference_superimpose, temporal_superimpose, window_weights


def smooth_frames(
    frames: Iterable[np.ndarray],
    frame_count: int,
    weights: list[float],
    *,
    difference_threshold: float | None = None,
) -> Iterator[np.ndarray]:
    """Yields each frame blended with its neighbours; holds only len(weights) frames."""
    half = len(weights) // 2
    window: deque[tuple[int, np.ndarray]] = deque()
    source = enumerate(frames)
    for i in range(frame_count):
        while (not window or window[-1][0] < i + half) and (nxt := next(source, None)) is not None:
            window.append(nxt)
        while window and window[0][0] < i - half:
            window.popleft()
        available = dict(window)
        pairs = [(j, w) for j, w in window_weights(weights, i, frame_count) if j in available]
        if difference_threshold is None:
            yield temporal_superimpose(available, pairs)
        else:
            yield difference_superimpose(available, available, i, pairs, difference_threshold)
