"""How fast the run folder's 16-bit PNG frames are written and read, and how large they are.

Every frame of every loop is one 16-bit PNG, encoded on the writer workers and decoded by the
next loop and the report: at 512x512 this was the largest cost per frame after generation.
Two kinds of frame from bikes.mp4 (640x272): an input frame from the 8-bit video (each 16-bit
value is v * 257) and a blended frame (two frames mixed, with a little noise, as a loop makes).
The store's encoder (png_codec.py: zlib-ng level 1, run-length strategy, "up" filter) against
OpenCV with the same settings (its zlib), with zlib level 1's default strategy and adaptive
filters, and with no compression.

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

from lib_videoloop.media.store import decode_any_png, decode_png, encode_png16, quantize16  # noqa: E402


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
    up_rle = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.12+; before, it keeps its adaptive filters
        up_rle += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    choices = {
        "OpenCV, level 1, RLE, up": up_rle,
        "OpenCV, level 1, default strategy, adaptive filters": [cv2.IMWRITE_PNG_COMPRESSION, 1],
        "OpenCV, no compression": [cv2.IMWRITE_PNG_COMPRESSION, 0],
    }
    print(f"OpenCV {cv2.__version__}, one thread\n")
    print("| frame | encoder | encode (ms) | read by the store (ms) | read by OpenCV (ms) | size (KB) |")
    print("|---|---|---|---|---|---|")
    for label, image in zip(("8-bit input", "blended"), bikes_frames(), strict=True):
        q = quantize16(image)
        encoders = {"the store's: zlib-ng, level 1, RLE, up": encode_png16}
        for name, params in choices.items():
            encoders[name] = lambda q, params=params: cv2.imencode(".png", q[:, :, ::-1], params)[1].tobytes()
        for name, encode in encoders.items():
            buf = encode(q)
            assert np.array_equal(decode_png(buf), q / np.float32(65535)), "lossless"
            times = [timed(encode, q), timed(decode_png, buf), timed(decode_any_png, buf)]
            print(f"| {label} | {name} | {' | '.join(f'{t:.1f}' for t in times)} | {len(buf) // 1024} |")


def peak_memory_4k() -> None:
    """What encoding a 3840x2160 16-bit frame allocates beyond the frame (Python and numpy)."""
    import tracemalloc

    frame = quantize16(cv2.resize(bikes_frames()[1], (3840, 2160)))
    tracemalloc.start()
    encode_png16(frame)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"\nA 3840x2160 16-bit frame ({frame.nbytes >> 20} MB): the store's encoder allocates {peak >> 20} MB at most"
    )


if __name__ == "__main__":
    main()
    peak_memory_4k()
