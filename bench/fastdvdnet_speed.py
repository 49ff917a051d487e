"""FastDVDNet frames per second: our streaming pass against the reference schedule.

The reference schedule runs the network on every 5-frame window (4 block passes per frame);
ours computes each first-stage result once (about 2 per frame). Same weights, same frames, same
run. Weights: the published model.pth when found (models/FastDVDNet/), else random weights of
the same shape (speed does not depend on the values).
Run: .venv/bin/python bench/fastdvdnet_speed.py [--frames 20] [--size 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from lib_videoloop.denoise.fastdvdnet import SequenceDenoiser, load_model, window_indices
from lib_videoloop.denoise.model import FastDVDnet


def model_for(device: str) -> FastDVDnet:
    from lib_videoloop.denoise.weights import candidate_paths

    for path in candidate_paths():
        if path.is_file():
            return load_model(path, device)
    torch.manual_seed(0)
    return FastDVDnet().eval().to(device)


@torch.inference_mode()
def reference_schedule(model: FastDVDnet, frames: np.ndarray, sigma: float, device: str, dtype: torch.dtype) -> None:
    n = len(frames)
    tensors = [torch.from_numpy(f.transpose(2, 0, 1)).to(device, dtype) for f in frames]
    noise = torch.full((1, 1, *frames.shape[1:3]), sigma, device=device, dtype=dtype)
    for t in range(n):
        window = torch.cat([tensors[j] for j in window_indices(t, n)])[None]
        model(window.reshape(1, 15, *frames.shape[1:3]), noise).clamp(0, 1).float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    frames = rng.random((args.frames, args.size, args.size, 3), dtype=np.float32)
    print(
        f"{args.frames} frames of {args.size}x{args.size}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print("| device | schedule | frames/s |\n|---|---|---|")
    for device in devices:
        half = device == "cuda"
        dtype = torch.float16 if half else torch.float32
        model = model_for(device).to(dtype)
        timings = {}
        for name in ("reference (4 passes/frame)", "ours (streaming, reuse)"):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            if name.startswith("reference"):
                reference_schedule(model, frames, 0.1, device, dtype)
            else:
                for _ in SequenceDenoiser(model, device=device, half=half).stream(iter(frames), len(frames), 0.1):
                    pass
            if device == "cuda":
                torch.cuda.synchronize()
            timings[name] = args.frames / (time.perf_counter() - t)
            print(f"| {device} | {name} | {timings[name]:.2f} |")
        values = list(timings.values())
        print(f"| {device} | speed-up | {values[1] / values[0]:.2f}x |")
    if "cuda" in devices:
        for n in (100, 1000):
            torch.cuda.reset_peak_memory_stats()
            model = model_for("cuda").half()
            clip = (frames[i % len(frames)] for i in range(n))
            for _ in SequenceDenoiser(model, device="cuda", half=True).stream(clip, n, 0.1):
                pass
            print(f"peak GPU memory, {n} frames: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
