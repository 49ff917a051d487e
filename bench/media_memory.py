"""Peak memory of source -> frame store -> writer for 200 and 2,000 frames at 512x512.

Run: .venv/bin/python bench/media_memory.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import run_child, synthetic_clip

CHILD = """
import sys, time
from fractions import Fraction
from lib_videoloop.media.sources import open_source
from lib_videoloop.media.store import FrameStore
from lib_videoloop.media.writer import write_video
clip, out = sys.argv[1], sys.argv[2]
t = time.monotonic()
src = open_source(clip)
store = FrameStore.create(out, "bench", src.info.frame_count)
for f in src:
    store.write_frame("input", f.index, f.image)
write_video(store.frames("input"), store.video_path("final", "mp4"), Fraction(25))
RESULT = {"frames": src.info.frame_count, "seconds": time.monotonic() - t}
"""


def main(repeats: int = 3) -> None:
    # Peak RSS of the same job varies by about 20% from run to run (when the encoder's threads
    # allocate), so each size runs several times and the peaks are compared like with like.
    tmp = Path(tempfile.mkdtemp(prefix="bench-media-"))
    peaks: dict[int, list[float]] = {}
    print("| frames | run | seconds | peak RSS (MB) |\n|---|---|---|---|")
    for n in (200, 2000):
        clip = synthetic_clip(tmp / f"clip{n}.mp4", n)
        for r in range(repeats):
            row = run_child(CHILD, str(clip), str(tmp / f"out{n}"))
            peaks.setdefault(n, []).append(row["peak_rss_mb"])
            print(f"| {n} | {r + 1} | {row['seconds']:.1f} | {row['peak_rss_mb']:.0f} |")
    print(f"\nhighest peak, 2000 / 200 frames: {max(peaks[2000]) / max(peaks[200]):.3f} (target <= 1.2)")
    print(f"median peak, 2000 / 200 frames: {sorted(peaks[2000])[repeats // 2] / sorted(peaks[200])[repeats // 2]:.3f}")


if __name__ == "__main__":
    main()
