"""How fast the run folder's 16-bit PNG frames are written and read, and how large they are.

Every frame of every loop is one 16-bit PNG, encoded on the writer workers and decoded by the
next loop and the report: at 512x512 this was the largest cost per frame after generation.
Two kinds of frame from bikes.mp4 (640x272): an input frame from the 8-bit video (each 16-bit
value is v * 257) and a blended frame (two frames mixed, with a little noise, as a loop makes).
The settings the store uses (zlib level 1, run-length strategy, "up" filter) against zlib
level 1 with its default strategy and adaptive filters, and against no compression.

    .venv/bin/python bench/png_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib_videoloop.media.store import PNG_PARAMS, decode_png, quantize16  # noqa: E402


def bikes_frames() -> tuple[np.ndarray, np.ndarray]:
    path = next((ROOT / ".venv").rglob("bikes.mp4"))
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(13), container.decode(video=0), strict=False)]
    a, b = (frames[i].astype(np.float32) / 255 for i in (10, 12))
    noise = np.random.default_rng(0).normal(0, 0.01, a.shape).astype(np.float32)
    return a, np.clip(0.7 * a + 0.3 * cv2.GaussianBlur(b, (0, 0), 1.5) + noise, 0, 1)


def timed(fn, *args, repeat: int = 5) -> float:
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return 1000 * (time.perf_counter() - start) / repeat


def main() -> None:
    cv2.setNumThreads(1)
    choices = {
        "the store's (level 1, RLE, up)": PNG_PARAMS,
        "level 1, default strategy, adaptive filters": [cv2.IMWRITE_PNG_COMPRESSION, 1],
        "no compression": [cv2.IMWRITE_PNG_COMPRESSION, 0],
    }
    print(f"OpenCV {cv2.__version__}, one thread\n")
    print("| frame | settings | encode (ms) | decode (ms) | size (KB) |\n|---|---|---|---|---|")
    for label, image in zip(("8-bit input", "blended"), bikes_frames(), strict=True):
        q = quantize16(image)[:, :, ::-1]
        for name, params in choices.items():
            buf = cv2.imencode(".png", q, params)[1]
            assert np.array_equal(decode_png(buf), q[:, :, ::-1] / np.float32(65535)), "lossless"
            enc = timed(cv2.imencode, ".png", q, params)
            dec = timed(decode_png, buf)
            print(f"| {label} | {name} | {enc:.1f} | {dec:.1f} | {len(buf) // 1024} |")


if __name__ == "__main__":
    main()
