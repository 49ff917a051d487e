"""The WebUI backend: each frame is one processing.process_images call on a fresh copy of p, so
every img2img setting and extension (sampler, model, LoRA, VAE, inpaint options, ControlNet)
applies, and nothing one call leaves on p reaches the next frame."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from lib_videoloop.backends import GenerationRequest
from lib_videoloop.errors import InterruptedRun
from lib_videoloop.media.images import from_pil, to_pil
from lib_videoloop.webui.controlnet import apply_frame

# State that p.init() leaves behind only when a mask is present (DESIGN.md), and Forge's lists
# that grow on every call: a copy of p must not inherit them.
_STALE_FIELDS = ("mask_for_overlay", "overlay_images", "paste_to", "color_corrections", "latent_mask", "nmask", "mask")
_FORGE_LISTS = ("latents_after_sampling", "pixels_after_sampling", "extra_result_images")
# Extra images that processing may put among the generated ones, switched off around each call.
_EXTRA_IMAGE_OPTIONS = ("return_grid", "return_mask", "return_mask_composite")


class WebUIBackend:
    name = "webui"
    wants_input_frames = True

    def __init__(self, p: Any) -> None:
        self.p = p
        self.model_name: str | None = None
        self.skipped = False

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        """The WebUI supports variation seeds and inpainting: nothing to refuse."""

    def _copy(self, request: GenerationRequest, iteration: int) -> Any:
        q = copy.copy(self.p)
        for name in _STALE_FIELDS:
            if hasattr(q, name):
                setattr(q, name, None)
        for name in _FORGE_LISTS:
            if hasattr(q, name):
                setattr(q, name, [])
        q.extra_generation_params = dict(getattr(self.p, "extra_generation_params", {}) or {})
        q.init_images = [to_pil(request.init_image)]
        q.image_mask = to_pil(request.mask) if request.mask is not None else None
        q.prompt, q.negative_prompt = request.prompt, request.negative_prompt
        # The seeds the WebUI itself gives batch `iteration` of an n_iter run: seed + k per image
        # only without variation strength (with it, every image keeps the seed), subseed + k always.
        offset = iteration * request.batch_size
        q.seed = request.seed + (offset if request.subseed_strength == 0 else 0)
        q.subseed, q.subseed_strength = request.subseed + offset, request.subseed_strength
        q.denoising_strength, q.steps, q.cfg_scale = request.denoising_strength, request.steps, request.cfg_scale
        q.batch_size, q.n_iter = request.batch_size, 1
        q.do_not_save_grid = True
        q.do_not_save_samples = True  # the run folder keeps every frame
        apply_frame(q, request.control_images)
        return q

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        """One process_images call per batch (n_iter calls of batch_size images), so that a Skip
        is seen between batches; a skipped frame's remaining batches are not generated."""
        from modules import shared

        images: list[np.ndarray] = []
        for iteration in range(request.n_iter):
            if self.skipped or shared.state.skipped:
                return []  # the engine learns of the Skip from take_skip()
            images += self._generate_batch(request, iteration)
        return images

    @contextlib.contextmanager
    def watching_skip(self) -> Iterator[None]:
        """Notes every Skip pressed while the run lasts.

        The WebUI clears state.skipped at the start of every batch, so a Skip pressed while
        process_images prepares a batch (prompt, init image) would vanish without a trace; and
        one pressed during sampling only cuts the sampler short. The Skip button and the API both
        call shared.state.skip(), which is wrapped for the run and restored afterwards.
        """
        from modules import shared

        state = shared.state
        had_own = "skip" in vars(state)
        original = state.skip

        def skip() -> None:
            self.skipped = True
            original()

        state.skip = skip
        try:
            yield
        finally:
            if had_own:
                state.skip = original
            else:
                del state.skip

    def take_skip(self) -> bool:
        """Whether the last frame was skipped; clears the WebUI's flag and ours."""
        from modules import shared

        skipped = self.skipped or bool(shared.state.skipped)
        self.skipped = False
        shared.state.skipped = False
        return skipped

    def _generate_batch(self, request: GenerationRequest, iteration: int) -> list[np.ndarray]:
        import torch
        from modules import processing, shared

        q = self._copy(request, iteration)
        # AUTOMATIC1111 encodes the init image with torch's global generator before it seeds the
        # frame, so without this a frame would depend on whatever the server ran before it.
        torch.manual_seed(q.seed)
        saved = {key: getattr(shared.opts, key) for key in _EXTRA_IMAGE_OPTIONS if hasattr(shared.opts, key)}
        for key in saved:
            setattr(shared.opts, key, False)
        try:
            processed = processing.process_images(q)
        finally:
            for key, value in saved.items():
                setattr(shared.opts, key, value)
            q.close()
        state = shared.state
        if state.interrupted or getattr(state, "stopping_generation", False):
            raise InterruptedRun("interrupted")
        self.model_name = getattr(q, "sd_model_name", None) or self.model_name
        first = processed.index_of_first_image
        images = [img.convert("RGB") for img in processed.images[first : first + request.batch_size]]
        if getattr(shared.opts, "img2img_color_correction", False) and request.input_image is not None:
            # Towards the frame's own input, so colours cannot drift over loops.
            correction = processing.setup_color_correction(to_pil(request.input_image))
            images = [processing.apply_color_correction(correction, img) for img in images]
        return [from_pil(img) for img in images]
