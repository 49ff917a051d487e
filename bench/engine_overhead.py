"""The extension's own time per frame next to generation, and its peak memory with clip length.

Own time = wall time minus the backend's time, for everything the engine does: the input copy,
the temporal window, the blend and the mask (the next call's, while a call generates), writing
the 16-bit PNG frames (on workers, with back-pressure), the flicker report (on a worker, frame
by frame as they are written) and the videos (loop 1's while loop 2 runs, loop 2's as it is
made). Two backends: one that hands back its init image at once (the engine alone), and one
that sleeps 0.5 s per frame (a GPU generation), where the workers can overlap with it. Window
1,2,3,2,1; mask off and on; 512x512 and 1024x576.

    .venv/bin/python bench/engine_overhead.py
    .venv/bin/python bench/engine_overhead.py --only-sleeping --frames 120   # a longer clip
    .venv/bin/python bench/engine_overhead.py --only-sleeping --reference    # with reference frames

Reported per configuration, from the times each generation starts and ends:
- per frame: the gap between two generations of one loop (what a frame waits for), median
  and mean;
- loop change: the gap from a loop's last generation to the next loop's first;
- setup: from the start of the run to the first generation (checks, input copy, first flows);
- end: from the last generation to the run's return (the last frame, report and video);
- whole run / frame: (wall - backend) / frames, all of the above together. With a 0.5 s backend
  it is given for 12 and 48 frames, to show what is per frame and what is per run.
Target (issue: extension overhead): at most 10 ms (2% of 0.5 s) at 512x512, 5% at 1024x576.
Memory: the same job over 200 and 2,000 frames (256x256), target ratio <= 1.2.
"""

from __future__ import annotations

import argparse
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

clip, out, width, height, loops, frames, sleep, mask, reference = sys.argv[1:10]
width, height, loops, frames, sleep, mask = int(width), int(height), int(loops), int(frames), float(sleep), mask == "1"
calls = []  # (start, end, loop) of each generation

class Backend:
    name = "bench"
    def check(self, uses_subseed, uses_mask):
        pass
    def generate(self, request):
        t = time.perf_counter()
        if sleep:
            time.sleep(sleep)
        calls.append((t, time.perf_counter()))
        return [request.init_image] * request.image_count

extra = {"reference_frames_directory": clip} if reference == "1" else {}  # the clip is its own reference
if mask:
    path = out + "-mask.png"
    m = np.zeros((height, width), np.uint8)
    m[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    Image.fromarray(m).save(path)
    extra.update(use_mask=True, mask_directory=path)
settings = Settings(input_directory=clip, output_directory=out, width=width, height=height, loop_n=loops,
                    max_frames=frames, temporal_superimpose_alpha_list="1,2,3,2,1", superimpose_alpha=0.3,
                    save_every_loop=True, **extra)
engine = Engine(settings, Backend())
t0 = time.perf_counter()
engine.run()
wall = time.perf_counter() - t0
backend = sum(b - a for a, b in calls)
gaps = [b[0] - a[1] for a, b in zip(calls, calls[1:])]
inside = [g for k, g in enumerate(gaps) if (k + 1) % frames]  # between two frames of one loop
between = [g for k, g in enumerate(gaps) if not (k + 1) % frames]  # from a loop's last frame to the next's first
RESULT = {"frames": len(calls), "median_ms": 1000 * statistics.median(inside), "mean_ms": 1000 * statistics.mean(inside),
          "setup_ms": 1000 * (calls[0][0] - t0), "loop_change_ms": 1000 * statistics.mean(between) if between else 0.0,
          "end_ms": 1000 * (t0 + wall - calls[-1][1]), "run_ms_per_frame": 1000 * (wall - backend) / len(calls),
          "seconds": wall}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[12, 48], help="clip lengths with the 0.5 s backend")
    parser.add_argument("--only-sleeping", action="store_true", help="leave out the instant backend and the memory")
    parser.add_argument("--reference", action="store_true", help="with reference_frames_directory (the clip itself)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    ref = "1" if args.reference else "0"
    clip = synthetic_clip(tmp / "clip120.mp4", 120)
    print(
        "| size | backend | mask | frames x loops | per frame: median / mean (ms) | loop change (ms) | setup (ms) "
        "| end (ms) | whole run / frame (ms) | % of 0.5 s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for width, height in ((512, 512), (1024, 576)):
        configs = (
            [(0.5, n) for n in args.frames] if args.only_sleeping else [(0.0, 30)] + [(0.5, n) for n in args.frames]
        )
        for sleep, frames in configs:
            for mask in ("0", "1"):
                out = tmp / f"o{width}-{sleep}-{frames}-{mask}"
                row = run_child(
                    CHILD, str(clip), str(out), str(width), str(height), "2", str(frames), str(sleep), mask, ref
                )
                share = 100 * row["run_ms_per_frame"] / 500
                print(
                    f"| {width}x{height} | {'sleeps 0.5 s' if sleep else 'instant'} | {'on' if mask == '1' else 'off'} "
                    f"| {frames} x 2 | {row['median_ms']:.1f} / {row['mean_ms']:.1f} | {row['loop_change_ms']:.0f} "
                    f"| {row['setup_ms']:.0f} | {row['end_ms']:.0f} | {row['run_ms_per_frame']:.1f} | {share:.1f}% |"
                )
    if args.only_sleeping:
        return
    print("\n| frames | peak RSS (MB) | seconds |\n|---|---|---|")
    peaks = {}
    for n in (200, 2000):
        clip = synthetic_clip(tmp / f"clip{n}_256.mp4", n, size=256)
        row = run_child(CHILD, str(clip), str(tmp / f"o{n}"), "256", "256", "1", str(n), "0", "0", "0")
        peaks[n] = row["peak_rss_mb"]
        print(f"| {n} | {row['peak_rss_mb']:.0f} | {row['seconds']:.0f} |")
    print(f"\nratio 2000/200: {peaks[2000] / peaks[200]:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
