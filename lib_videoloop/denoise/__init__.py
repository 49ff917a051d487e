"""Temporal denoise passes over whole clips (FastDVDNet).

torch is imported only when a pass runs, so the engine stays light without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib_videoloop.denoise.loop_pass import denoise_pass_stream

__all__ = ["denoise_fastdvdnet", "denoise_pass_stream"]


def denoise_fastdvdnet(frames: np.ndarray, sigma: float, weights: str | Path, device: str | None = None) -> np.ndarray:
    """Denoises a clip with FastDVDNet; adds no noise itself.

    frames: float32 (T, H, W, 3), T >= 3; values may lie outside [0, 1], as noisy frames do.
    sigma: the noise level of the frames, in [0, 1] (e.g. 40/255).
    weights: the published model.pth (or a prefix-less .pth, or .safetensors).
    device: "cuda" (half precision), "cpu" (float32), or None for CUDA when available.
    Returns float32 (T, H, W, 3) in [0, 1]. Streams internally: memory follows the frame size,
    not the clip length (the input and output arrays aside).
    """
    from lib_videoloop.denoise.fastdvdnet import SequenceDenoiser, default_device, load_model

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    device = device or default_device()
    denoiser = SequenceDenoiser(load_model(weights, device), device=device)
    out = np.empty_like(frames)
    for i, frame in enumerate(denoiser.stream(iter(frames), len(frames), float(sigma))):
        out[i] = frame
    return out
