"""Backends turn frames' requests into generated images (the WebUI, or diffusers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lib_videoloop.sampling import Sampling


@dataclass
class GenerationRequest(Sampling):
    init_image: np.ndarray  # HxWx3 float32 in [0, 1]: the temporally superimposed frame
    mask: np.ndarray | None  # HxW float32, 1 = repaint
    width: int
    height: int
    control_images: list[np.ndarray] = field(default_factory=list)  # per reference folder (or the input)
    input_image: np.ndarray | None = None  # the frame as it came in (loop 0), for colour correction
    # latent_deflicker_steps: the sampling steps at which a call's frames are blended (latent_deflicker.py)
    deflicker_steps: tuple[int, ...] = ()


class Backend(Protocol):
    """What the engine needs from an image generator. A backend that can take several frames
    in one call also has frames_per_call() and generate_frames() (see BatchingBackend). A host's
    backend may also have take_skip() (True once after the user skipped the frame being made)
    and weight_places (where the host keeps model weights, denoise.weights.WeightPlaces). A
    backend that can make several calls at once, each on its own thread, says how many in
    calls_at_once(frames_per_call); take_skip() then answers for the calling thread's call, and
    abandon_calls(True) stops the calls running (abandon_calls(False) lets calls run again)."""

    name: str
    # True when the backend wants control_images and input_image filled in (costs a read per frame).
    wants_input_frames: bool

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        """Raises VideoLoopError before any work if the run asks for what it cannot do."""

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        """Exactly request.image_count float32 HxWx3 images; image k uses seed + k."""


class BatchingBackend(Backend, Protocol):
    def frames_per_call(self, request: GenerationRequest, setting: int) -> int:
        """How many frames like this one may go through one call (1: frame by frame).
        setting: the run's frames_per_call, 0 for the backend's own choice."""

    def generate_frames(self, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
        """generate() of each request in one call; the requests have the same call_key(), size
        and (no) mask."""


def frames_per_call(backend: Backend, request: GenerationRequest, setting: int) -> int:
    choose = getattr(backend, "frames_per_call", None)
    return max(1, choose(request, setting)) if choose is not None else 1


def generate_frames(backend: Backend, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
    if len(requests) > 1:
        return backend.generate_frames(requests)  # type: ignore[attr-defined]
    return [backend.generate(requests[0])]


def auto_frames_per_call(width: int, height: int, image_count: int, device: str) -> int:
    """Frames per call by free GPU memory, at most 8. An SD1.5-shaped model in half precision
    took 0.5 GiB more per 512x512 frame of a call (bench/frames_per_call.py on an H200: peak 2.6,
    4.0 and 6.0 GiB at 1, 4 and 8 frames); 1 GiB is counted for larger UNets and other attention
    kernels, and only half the free memory is used. A CPU stays at one frame per call: there a
    call of several frames is not reliably faster."""
    if not device.startswith("cuda"):
        return 1
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    per_frame = (1 << 30) * image_count * width * height / (512 * 512)
    return max(1, min(8, int(free * 0.5 // per_frame)))
