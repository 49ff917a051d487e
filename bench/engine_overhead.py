"""The engine's own cost per frame, and its peak memory with clip length.

Overhead = wall time per frame minus the backend call minus the PNG encode, at 512x512 with a
5-frame temporal window. The backend here hands back its init image at once, so that only the
engine is timed. Memory: the same job over 200 and 2,000 frames (256x256 to keep it short).
Run: .venv/bin/python bench/engine_overhead.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import run_child, synthetic_clip

CHILD = """
import sys, time, statistics
import numpy as np
import lib_videoloop.media.store as store_module
from lib_videoloop.config import Settings
from lib_videoloop.engine import Engine

clip, out, size, loops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
timers = {"backend": 0.0, "encode": 0.0}
encode = store_module.encode_png16

def timed_encode(image):
    t = time.perf_counter()
    try:
        return encode(image)
    finally:
        timers["encode"] += time.perf_counter() - t

store_module.encode_png16 = timed_encode

class InstantBackend:
    name = "instant"
    def check(self, uses_subseed, uses_mask):
        pass
    def generate(self, request):
        t = time.perf_counter()
        images = [request.init_image] * request.image_count
        timers["backend"] += time.perf_counter() - t
        return images

marks = []
def progress(p):
    marks.append((time.perf_counter(), timers["backend"], timers["encode"]))

settings = Settings(input_directory=clip, output_directory=out, width=size, height=size, loop_n=loops,
                    temporal_superimpose_alpha_list="1,2,3,2,1", superimpose_alpha=0.3, save_every_loop=False)
engine = Engine(settings, InstantBackend(), on_progress=progress)
from lib_videoloop.loop_end import LoopEnd
LoopEnd._report = lambda self, loop, folder: None  # the flicker report is measured on its own below
t0 = time.perf_counter()
engine.run()
overheads = [(b[0] - a[0]) - (b[1] - a[1]) - (b[2] - a[2]) for a, b in zip(marks, marks[1:])]
from lib_videoloop.report import RunReport
t = time.perf_counter()
store = engine.store
RunReport(store.root).add_loop(1, store.frames("loop_001"), store.frames("input"))
report_ms = 1000 * (time.perf_counter() - t) / store.frame_count
RESULT = {"frames": len(marks), "median_overhead_ms": 1000 * statistics.median(overheads),
          "p90_overhead_ms": 1000 * sorted(overheads)[int(0.9 * len(overheads))],
          "median_encode_ms": 1000 * timers["encode"] / len(marks), "seconds": time.perf_counter() - t0,
          "report_ms_per_frame": report_ms}
"""


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    clip = synthetic_clip(tmp / "clip120.mp4", 120)
    row = run_child(CHILD, str(clip), str(tmp / "o512"), "512", "2")
    print("Per-frame engine overhead at 512x512, window 1,2,3,2,1 (excludes backend and PNG encode):")
    print(
        f"  median {row['median_overhead_ms']:.1f} ms, p90 {row['p90_overhead_ms']:.1f} ms over {row['frames']} frames "
        f"(PNG encode, excluded: {row['median_encode_ms']:.1f} ms/frame; target <= 10 ms)"
    )
    print(f"Flicker report (report.json + flicker.png) per loop: {row['report_ms_per_frame']:.0f} ms per 512x512 frame")
    print("\n| frames | peak RSS (MB) | seconds |\n|---|---|---|")
    peaks = {}
    for n in (200, 2000):
        clip = synthetic_clip(tmp / f"clip{n}_256.mp4", n, size=256)
        row = run_child(CHILD, str(clip), str(tmp / f"o{n}"), "256", "1")
        peaks[n] = row["peak_rss_mb"]
        print(f"| {n} | {row['peak_rss_mb']:.0f} | {row['seconds']:.0f} |")
    print(f"\nratio 2000/200: {peaks[2000] / peaks[200]:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
