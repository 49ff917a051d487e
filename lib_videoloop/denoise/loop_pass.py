"""The temporal pass after a loop: FastDVDNet, or patch blending (patch_blend.py), blended back.

FastDVDNet, as in the original script: each frame gets Gaussian noise of fastdvdnet_noise_sigma (of 255),
FastDVDNet denoises the clip, and video_post_process_alpha of the result is blended into the
frame. The noise is seeded per frame, so a resumed or repeated run gets the same frames.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from lib_videoloop.blend import superimpose
from lib_videoloop.config import PATCH_BLEND, Settings
from lib_videoloop.denoise.weights import WeightPlaces, find_weights
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.store import FrameStore
from lib_videoloop.run_state import RunFolder

PATCH_BLEND_SCRATCH = "patch_blend_pass"  # the run's patch blend pass, while it runs

log = logging.getLogger(__name__)


def add_noise(frame: np.ndarray, sigma: float, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    return frame + rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(sigma)


def denoise_pass_stream(
    frames: Iterable[np.ndarray],
    count: int,
    weights: str | Path,
    settings: Settings,
    *,
    seed: int = 0,
    mask_of: Callable[[int], np.ndarray | None] | None = None,
) -> Iterator[np.ndarray]:
    """Yields frame + alpha * (FastDVDNet(frame + noise) - frame) for each frame of the stream,
    with settings' fastdvdnet_noise_sigma and video_post_process_alpha, only inside
    mask_of(index) when that gives a mask."""
    sigma, alpha = settings.fastdvdnet_noise_sigma / 255.0, settings.video_post_process_alpha
    from lib_videoloop.denoise.fastdvdnet import SequenceDenoiser, default_device, load_model

    device = default_device()
    model = load_model(weights, device)
    denoiser = SequenceDenoiser(model, device=device)
    originals: list[np.ndarray] = []

    def noisy() -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames):
            originals.append(frame)  # consumed below within a few frames: bounded
            yield add_noise(frame, sigma, seed, i)

    try:
        for i, denoised in enumerate(denoiser.stream(noisy(), count, sigma)):
            yield superimpose(originals.pop(0), denoised, alpha, mask_of(i) if mask_of else None)
    finally:
        # In the WebUI the model must leave the GPU so generation keeps its memory.
        model.to("cpu")
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def patch_blend_stream(store: FrameStore, folder: str, settings: Settings, flows: FlowFolder) -> Iterator[np.ndarray]:
    """Yields frame + alpha * (patch blend(frame) - frame) for each frame of `folder`, guided by
    the frames the run's flows are of, along those flows, only inside the masks when the run
    uses them."""
    from lib_videoloop.patch_blend import patch_blend

    style = functools.partial(store.read_frame, folder)
    # Its scratch in the run folder, which was chosen for room, not in the system's temporary
    # folder (often memory): FAST_SCRATCH_BYTES a pixel and frame.
    blended = patch_blend(
        style, flows.reference, store.frame_count, flows.chain(), window=settings.patch_blend_window,
        mode=settings.patch_blend_mode, scratch=store.root / PATCH_BLEND_SCRATCH,
    )  # fmt: skip
    for i, frame in enumerate(blended):
        mask = store.read_mask(i) if settings.use_mask else None
        yield superimpose(style(i), frame, settings.video_post_process_alpha, mask)


def denoised_folder(folder: str) -> str:
    """Where the temporal pass over `folder` (a loop's frames) writes its frames."""
    return f"{folder}_denoised"


def run_denoise_pass(run: RunFolder, folder: str, *, seed: int, places: WeightPlaces, flows: FlowFolder) -> str:
    """Runs the loop's temporal pass (FastDVDNet or patch blend) over the frames of `folder` into
    `<folder>_denoised` (inside the masks only). flows: the run's, which patch blend follows."""
    store, settings = run.store, run.settings

    target = denoised_folder(folder)
    if store.folder_complete(target):
        return target
    if settings.video_post_process_method == PATCH_BLEND:
        log.info("patch blend over %s (window %d, %s)", folder, settings.patch_blend_window, settings.patch_blend_mode)
        for i, frame in enumerate(patch_blend_stream(store, folder, settings, flows)):
            if not store.is_complete(target, i):
                store.write_frame(target, i, frame)
        return target
    weights = find_weights(settings.fastdvdnet_weights, places)
    log.info(
        "FastDVDNet pass over %s (sigma %s, alpha %s)",
        folder,
        settings.fastdvdnet_noise_sigma,
        settings.video_post_process_alpha,
    )
    stream = denoise_pass_stream(
        store.frames(folder),
        store.frame_count,
        weights,
        settings,
        seed=seed,
        mask_of=store.read_mask if settings.use_mask else None,
    )
    for i, frame in enumerate(stream):
        if not store.is_complete(target, i):
            store.write_frame(target, i, frame)
    return target
