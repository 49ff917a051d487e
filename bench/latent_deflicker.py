"""The latent deflicker's blend (latent_deflicker.py) on held-out clips, and its cost.

At the last sampled step the sampler's x0 estimate is what the call ends on, so with a VAE that
reconstructs well the deflicker at step -1 is this: each call's frames (frames_per_call
neighbours) patch-blended into each other, guided by their init images. That is measured here
in pixel space, on the patch blend bench's held-out clips with its img2img-like flicker
(bench/patch_blend.py: bigbuckbunny.mp4 72-111, bikes.mp4 150-189, carphone_pristine.mp4 0-39,
320 px), against no pass and the patch blend pass after a loop (fast, window 15): E_warp along
Farneback flow of the clean clip (and DIS), PSNR against it, time per frame (patch_blend's
table). Calls of 2, 4 and 8 frames. Earlier steps cannot be measured without a real model: the
tiny random model's VAE carries almost nothing of a blend back (tests/test_latent_deflicker.py).

Then the cost of one chosen step on the CPU (2 threads), for a call of 4 frames at 512x512:
the patch matching and blending alone (the VAE's decode and two encodes come on top).

    .venv/bin/python bench/latent_deflicker.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import cv2
import numpy as np
import patch_blend
import torch
from flicker import load
from patch_blend import img2img_flicker

from lib_videoloop.latent_deflicker import blend_call


def _tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def per_call(size: int):
    def run(frames: list[np.ndarray], clean: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(frames), size):
            part = slice(start, start + size)
            if len(frames[part]) == 1:
                out += frames[part]
                continue
            blended = blend_call(_tensor(frames[part]), _tensor(clean[part]))
            out += list(blended.permute(0, 2, 3, 1).numpy())
        return out

    return run


def quality_table(frames: int = 40) -> None:
    patch_blend.quality_table(
        frames,
        {
            "none": lambda f, _c: f,
            "latent deflicker at the last step, 2 frames a call": per_call(2),
            "latent deflicker at the last step, 4 frames a call": per_call(4),
            "latent deflicker at the last step, 8 frames a call": per_call(8),
            "patch blend pass, fast, window 15": patch_blend.patch_method("fast"),
        },
    )


def cost(size: int = 512, count: int = 4, repeat: int = 3) -> None:
    clean = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in load("bigbuckbunny.mp4", count, 0)]
    noisy, guides = _tensor(img2img_flicker(clean)), _tensor(clean)
    blend_call(noisy, guides)  # warm-up
    started = time.perf_counter()
    for _ in range(repeat):
        blend_call(noisy, guides)
    seconds = (time.perf_counter() - started) / repeat
    print(f"one chosen step, {count} frames at {size}x{size}: {seconds:.2f} s ({seconds / count:.2f} s per frame)")


def main() -> None:
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    quality_table()
    print()
    cost()


if __name__ == "__main__":
    main()
