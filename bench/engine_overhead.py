"""The extension's own time per frame next to generation, and its peak memory with clip length.

Own time = wall time minus the backend's time, for everything the engine does: the input copy,
the temporal window, the blend, the mask, writing the 16-bit PNG frames (on workers, with
back-pressure), the flicker report (on a worker, frame by frame as they are written) and the
videos (loop 1's while loop 2 runs, loop 2's as it is made). Two backends: one that hands back
its init image at once (the engine alone), and one that sleeps 0.5 s per frame (a GPU
generation), where the workers can overlap with it. Window 1,2,3,2,1; mask off and on; 512x512
and 1024x576.

    .venv/bin/python bench/engine_overhead.py

Reported per configuration: the median gap between two frames minus the backend (what a
frame waits for), and the whole run's (wall - backend) / frames, loop ends included.
Target (issue: extension overhead): at most 10 ms (2% of 0.5 s) at 512x512, 5% at 1024x576.
Memory: the same job over 200 and 2,000 frames (256x256), target ratio <= 1.2.
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
from PIL import Image
from lib_videoloop.config import Settings
from lib_videoloop.engine import Engine

clip, out, width, height, loops, frames, sleep, mask = sys.argv[1:9]
width, height, loops, frames, sleep, mask = int(width), int(height), int(loops), int(frames), float(sleep), mask == "1"
backend_time = [0.0]

class Backend:
    name = "bench"
    def check(self, uses_subseed, uses_mask):
        pass
    def generate(self, request):
        t = time.perf_counter()
        if sleep:
            time.sleep(sleep)
        images = [request.init_image] * request.image_count
        backend_time[0] += time.perf_counter() - t
        return images

marks = []
def progress(p):
    if p.done:
        marks.append((time.perf_counter(), backend_time[0]))

extra = {}
if mask:
    path = out + "-mask.png"
    m = np.zeros((height, width), np.uint8)
    m[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    Image.fromarray(m).save(path)
    extra = dict(use_mask=True, mask_directory=path)
settings = Settings(input_directory=clip, output_directory=out, width=width, height=height, loop_n=loops,
                    max_frames=frames, temporal_superimpose_alpha_list="1,2,3,2,1", superimpose_alpha=0.3,
                    save_every_loop=True, **extra)
engine = Engine(settings, Backend(), on_progress=progress)
t0 = time.perf_counter()
engine.run()
wall = time.perf_counter() - t0
gaps = [(b[0] - a[0]) - (b[1] - a[1]) for a, b in zip(marks, marks[1:])]
RESULT = {"frames": len(marks), "median_gap_ms": 1000 * statistics.median(gaps),
          "run_ms_per_frame": 1000 * (wall - backend_time[0]) / len(marks), "seconds": wall}
"""


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    clip = synthetic_clip(tmp / "clip120.mp4", 120)
    print("| size | backend | mask | frames | own time, median per frame (ms) | own time, whole run / frame (ms) | % of 0.5 s |")
    print("|---|---|---|---|---|---|---|")
    for width, height in ((512, 512), (1024, 576)):
        for sleep, frames in ((0.0, 30), (0.5, 12)):
            for mask in ("0", "1"):
                out = tmp / f"o{width}-{sleep}-{mask}"
                row = run_child(CHILD, str(clip), str(out), str(width), str(height), "2", str(frames), str(sleep), mask)
                share = 100 * row["run_ms_per_frame"] / 500
                print(
                    f"| {width}x{height} | {'sleeps 0.5 s' if sleep else 'instant'} | {'on' if mask == '1' else 'off'} "
                    f"| {row['frames']} | {row['median_gap_ms']:.1f} | {row['run_ms_per_frame']:.1f} | {share:.1f}% |"
                )
    print("\n| frames | peak RSS (MB) | seconds |\n|---|---|---|")
    peaks = {}
    for n in (200, 2000):
        clip = synthetic_clip(tmp / f"clip{n}_256.mp4", n, size=256)
        row = run_child(CHILD, str(clip), str(tmp / f"o{n}"), "256", "256", "1", str(n), "0", "0")
        peaks[n] = row["peak_rss_mb"]
        print(f"| {n} | {row['peak_rss_mb']:.0f} | {row['seconds']:.0f} |")
    print(f"\nratio 2000/200: {peaks[2000] / peaks[200]:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
