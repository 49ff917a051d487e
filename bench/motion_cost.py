"""What the motion-aware methods cost per frame, on one core, first loop and later loops.

A run folder is made once per size (the input frames of a panning synthetic clip, 30 frames);
then each method builds every frame's init image the way a loop does (engine's LoopBlend and
the run's flows/ folder), timed in a child process pinned to one core with OpenCV on one
thread. First loop: flows computed and written (flows/ emptied first). Later loop: flows read
back. The cost of a method is its time minus that of 'simple' with a window of 1 (reading the
frames, which every loop does anyway).

    .venv/bin/python bench/motion_cost.py

Targets (issue: motion-aware blending): at most 70 ms a frame at 320 px wide and 350 ms at
512x512 for the first loop, flows included; at most 10% of that for each later loop. Then the
peak memory of whole runs with each motion-aware method, 200 against 2,000 frames (flat: the
flows and the filter's backward pass live in the run folder, not in memory).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import run_child, synthetic_clip

CHILD = """
import os, shutil, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import cv2
cv2.setNumThreads(1)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from lib_videoloop.config import Settings
from lib_videoloop.media.flows import FLOWS, FlowFolder
from lib_videoloop.media.store import INPUT, FrameStore
from lib_videoloop.planning import Planner
from lib_videoloop.temporal import FrameWindow, LoopBlend

root, method, weights, strength = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
store = FrameStore.open(root)
settings = Settings(input_directory="-", temporal_superimpose_method=method, temporal_superimpose_alpha_list=weights,
                    temporal_filter_strength=strength, loop_n=2)
planner = Planner(settings, store.frame_count)
plans = [p for p in planner.plans(1, 1) if p.loop == 1]
shutil.rmtree(store.root / FLOWS, ignore_errors=True)
times = []
with ThreadPoolExecutor(max_workers=1) as reader:
    for loop in (1, 2):
        flows = FlowFolder(store.root / FLOWS, lambda i: store.read_frame(INPUT, i), store.frame_count, reader)
        t0 = time.perf_counter()
        blend = LoopBlend(settings, store, FrameWindow(store, INPUT, reader), FrameWindow(store, INPUT, reader), flows,
                          lambda i: strength)
        for plan in plans:
            blend.frame(plan, store.frame_count)
        times.append(1000 * (time.perf_counter() - t0) / store.frame_count)
RESULT = {"first_ms": times[0], "later_ms": times[1]}
"""

MAKE_RUN = """
import sys
from lib_videoloop.config import Settings
from lib_videoloop.engine import Engine

class Instant:
    name = "instant"
    def check(self, uses_subseed, uses_mask):
        pass
    def generate(self, request):
        return [request.init_image] * request.image_count

clip, out, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
frames, loops, method = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
result = Engine(Settings(input_directory=clip, output_directory=out, width=width, height=height, loop_n=loops,
                         max_frames=frames, save_every_loop=False, temporal_superimpose_method=method,
                         temporal_superimpose_alpha_list="1,2,3,2,1"), Instant()).run()
RESULT = {"root": str(result.run_dir)}
"""

METHODS = [
    ("simple", "1", 0.0, "simple, window 1 (frames read only)"),
    ("simple", "1,2,3,2,1", 0.0, "simple 1,2,3,2,1 (flows for cuts)"),
    ("with difference mask from reference", "1,2,3,2,1", 0.0, "difference 1,2,3,2,1"),
    ("along optical flow of reference", "1,2,3,2,1", 0.0, "flow 1,2,3,2,1"),
    ("along optical flow of reference", "1,2,3,4,3,2,1", 0.0, "flow 1,2,3,4,3,2,1"),
    ("temporal filter along optical flow", "1", 0.7, "filter a=0.7"),
]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-motion-"))
    clip = synthetic_clip(tmp / "clip.mp4", 40)
    print("| size | method | first loop (ms/frame) | over window 1 | later loop (ms/frame) | over window 1 "
          "| later / first |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for width, height in ((320, 180), (512, 512)):
        root = run_child(MAKE_RUN, str(clip), str(tmp / f"run{width}"), str(width), str(height), "30", "1", "simple")[
            "root"
        ]
        base = None
        for method, weights, strength, label in METHODS:
            row = run_child(CHILD, root, method, weights, str(strength))
            if base is None:
                base = row
            first = row["first_ms"] - base["first_ms"]
            later = row["later_ms"] - base["later_ms"]
            ratio = f"{100 * later / first:.0f}%" if first > 0.5 else "-"
            print(f"| {width}x{height} | {label} | {row['first_ms']:.1f} | {first:.1f} | {row['later_ms']:.1f} "
                  f"| {later:.1f} | {ratio} |")  # fmt: skip
    print("\nPeak memory of whole runs (instant backend, 256x256, 2 loops), 200 and 2,000 frames:\n")
    print("| method | 200 frames (MB) | 2,000 frames (MB) | ratio |\n|---|---|---|---|")
    for method in ("along optical flow of reference", "temporal filter along optical flow"):
        peaks = []
        for n in (200, 2000):
            clip_n = synthetic_clip(tmp / f"clip{n}_256.mp4", n, size=256)
            peaks.append(
                run_child(MAKE_RUN, str(clip_n), str(tmp / f"m{n}"), "256", "256", str(n), "2", method)["peak_rss_mb"]
            )
        print(f"| {method} | {peaks[0]:.0f} | {peaks[1]:.0f} | {peaks[1] / peaks[0]:.2f} |")


if __name__ == "__main__":
    main()
