"""Backends turn one frame's request into generated images (the WebUI, or diffusers)."""

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


class Backend(Protocol):
    """What the engine needs from an image generator."""

    name: str
    # True when the backend wants control_images and input_image filled in (costs a read per frame).
    wants_input_frames: bool

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        """Raises VideoLoopError before any work if the run asks for what it cannot do."""

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        """Exactly request.image_count float32 HxWx3 images; image k uses seed + k."""
