"""Helpers shared by the benchmarks: synthetic clips and child-process peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic_clip(path: Path, frames: int, size: int = 512, fps: int = 25) -> Path:
    """A panning texture: real motion, cheap to make, compresses like footage."""
    import av
    import cv2

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.random((size * 2, size * 3, 3)).astype(np.float32), (0, 0), 3) * 3 - 1
    big = (np.clip(big, 0, 1) * 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for i in range(frames):
            x = (i * 3) % (size * 2)
            frame = big[(i // 7) % size : (i // 7) % size + size, x : x + size]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def run_child(code: str, *args: str) -> dict:
    """Runs `code` in a fresh interpreter; it prints one JSON line, to which peak RSS is added."""
    wrapper = (
        code
        + "\nimport resource, json as _j\nprint(_j.dumps({**RESULT, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
