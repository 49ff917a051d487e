"""The run report's flicker measurement: computing the input's flows per loop, or reading the
run's stored ones (flows/), and how well the two agree.

The report measures every loop's E_warp along the input's DIS flow. A run keeps that flow in
flows/ (float16) for its blends, so each loop's report can read it instead of computing it
again. For each clip (60 frames of the bench clips, at 320 px and at their own size) a
flickering copy plays the loop: E_warp and PSNR both ways, their relative difference, and
the time per frame on one thread: the report as it was (flows computed), the first loop with
stored flows (the flows computed and written once, as the run's blends or first report do),
and every later loop (flows read back).

    .venv/bin/python bench/report_cost.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
from flicker import add_flicker, clip_path

from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import open_source
from lib_videoloop.metrics import measure


def load(name: str, width: int | None) -> list:
    frames = [f.image for f in open_source(clip_path(name), max_frames=60)]
    if width is None:
        return frames
    h, w = frames[0].shape[:2]
    return [resize_frame(f, width, round(h * width / w / 2) * 2) for f in frames]


def main() -> None:
    cv2.setNumThreads(1)
    print("| clip | E_warp, flows computed | E_warp, stored flows | difference | PSNR difference (dB) "
          "| ms/frame: computed | stored, first loop | stored, later loops |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in ("bigbuckbunny.mp4", "bikes.mp4"):
        for width in (320, None):
            clean = load(name, width)
            loop = add_flicker("texture", clean)
            n = len(clean)
            t0 = time.perf_counter()
            computed = measure(iter(loop), iter(clean), fidelity_to_source=True, with_tof=False)
            t1 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                folder = FlowFolder(Path(tmp), clean.__getitem__, n)
                for k in range(n - 1):
                    folder.pair(k)
                t2 = time.perf_counter()
                reader = FlowFolder(Path(tmp), clean.__getitem__, n)
                stored = measure(iter(loop), iter(clean), fidelity_to_source=True, with_tof=False, flows=reader.pair)
                t3 = time.perf_counter()
            size = f"{clean[0].shape[1]}x{clean[0].shape[0]}"
            print(
                f"| {name} {size} | {computed.e_warp:.4e} | {stored.e_warp:.4e} "
                f"| {100 * (stored.e_warp / computed.e_warp - 1):+.2f}% | {stored.psnr - computed.psnr:+.3f} "
                f"| {1000 * (t1 - t0) / n:.0f} | {1000 * ((t2 - t1) + (t3 - t2)) / n:.0f} | {1000 * (t3 - t2) / n:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
