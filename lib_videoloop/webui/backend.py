"""The WebUI backend: each call is one processing.process_images on a fresh copy of p, so every
img2img setting and extension (sampler, model, LoRA, VAE, inpaint options, ControlNet) applies,
and nothing one call leaves on p reaches the next. A call makes one frame, or several frames as
one img2img batch with an init image, prompt and seed per item."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.backends import GenerationRequest, auto_frames_per_call
from lib_videoloop.denoise.weights import WeightPlaces
from lib_videoloop.errors import InterruptedRun
from lib_videoloop.media.images import from_pil, to_pil
from lib_videoloop.webui.controlnet import apply_frame, frame_units
from lib_videoloop.webui.latent_hook import deflicker_hook

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

    @property
    def weight_places(self) -> WeightPlaces:
        """The WebUI's models folder (it honours --models-dir) and its sha256-checked downloader."""
        from modules import paths

        def download(url: str, folder: Path, file_name: str, sha256: str) -> Path:
            from modules.modelloader import load_file_from_url

            return Path(load_file_from_url(url, model_dir=str(folder), file_name=file_name, hash_prefix=sha256))

        return WeightPlaces(Path(paths.models_path) / "FastDVDNet", download)

    def frames_per_call(self, request: GenerationRequest, setting: int) -> int:
        """Frames share a call as one img2img batch with an init image per item. p takes one mask
        and each ControlNet unit one image, so a frame with its own mask or ControlNet input
        goes alone."""
        if request.mask is not None or (request.control_images and frame_units(self.p)):
            return 1
        if setting:
            return setting
        from modules import devices

        return auto_frames_per_call(request.width, request.height, request.image_count, str(devices.device))

    def _copy(self, requests: list[GenerationRequest], iteration: int) -> Any:
        q = copy.copy(self.p)
        for name in _STALE_FIELDS:
            if hasattr(q, name):
                setattr(q, name, None)
        for name in _FORGE_LISTS:
            if hasattr(q, name):
                setattr(q, name, [])
        first = requests[0]
        size = first.batch_size
        q.extra_generation_params = dict(getattr(self.p, "extra_generation_params", {}) or {})
        q.image_mask = to_pil(first.mask) if first.mask is not None else None
        q.denoising_strength, q.steps, q.cfg_scale = first.denoising_strength, first.steps, first.cfg_scale
        q.subseed_strength = first.subseed_strength
        q.do_not_save_grid = True
        q.do_not_save_samples = True  # the run folder keeps every frame
        apply_frame(q, first.control_images)
        q.color_corrections = _color_corrections(requests, q)
        seeds, subseeds = _seeds(requests, iteration)
        if len(requests) == 1:  # one frame: the call as the img2img tab makes it
            q.init_images = [to_pil(first.init_image)]
            q.prompt, q.negative_prompt = first.prompt, first.negative_prompt
            q.seed, q.subseed = seeds[0], subseeds[0]
        else:  # an init image, prompt and seed per batch item: img2img takes lists of each
            q.init_images = [to_pil(r.init_image) for r in requests for _ in range(size)]
            q.prompt = [r.prompt for r in requests for _ in range(size)]
            q.negative_prompt = [r.negative_prompt for r in requests for _ in range(size)]
            q.seed, q.subseed = seeds, subseeds
        q.batch_size, q.n_iter = size * len(requests), 1
        return q

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        return self.generate_frames([request])[0]

    def generate_frames(self, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
        """One process_images call per batch (n_iter calls of batch_size images per frame), so
        that a Skip is seen between batches; a skipped call's remaining batches are not generated."""
        from modules import shared

        images: list[list[np.ndarray]] = [[] for _ in requests]
        for iteration in range(requests[0].n_iter):
            if self.skipped or shared.state.skipped:
                return [[] for _ in requests]  # the engine learns of the Skip from take_skip()
            for frame, batch in zip(images, self._generate_batch(requests, iteration), strict=True):
                frame.extend(batch)
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

    def _generate_batch(self, requests: list[GenerationRequest], iteration: int) -> list[list[np.ndarray]]:
        import torch
        from modules import processing, shared

        q = self._copy(requests, iteration)
        # AUTOMATIC1111 encodes the init images with torch's global generator before it seeds the
        # frame, so without this a frame would depend on whatever the server ran before it. (In a
        # batch of frames the second and later frames' encodings continue from the first one's
        # seed: their latents differ from a frame-by-frame run by that sampling noise alone.)
        torch.manual_seed(_seeds(requests, iteration)[0][0])
        saved = {key: getattr(shared.opts, key) for key in _EXTRA_IMAGE_OPTIONS if hasattr(shared.opts, key)}
        for key in saved:
            setattr(shared.opts, key, False)
        try:
            with deflicker_hook(q, requests):
                processed = processing.process_images(q)
        finally:
            for key, value in saved.items():
                setattr(shared.opts, key, value)
            q.close()
        state = shared.state
        if state.interrupted or getattr(state, "stopping_generation", False):
            raise InterruptedRun("interrupted")
        self.model_name = getattr(q, "sd_model_name", None) or self.model_name
        size = requests[0].batch_size
        first = processed.index_of_first_image
        generated = [img.convert("RGB") for img in processed.images[first : first + size * len(requests)]]
        return [[from_pil(img) for img in generated[n * size : (n + 1) * size]] for n in range(len(requests))]


def _color_corrections(requests: list[GenerationRequest], q: Any) -> list[Any] | None:
    """With the WebUI's img2img colour correction on, each image is corrected towards its frame's
    own input, so colours cannot drift over loops. Set on p before the call, as the WebUI's own
    loopback script does: init() builds corrections (from the blended init image) only while
    p.color_corrections is None, and process_images applies them once, before the inpaint overlay."""
    from modules import processing

    if not color_correction_on(q) or requests[0].input_image is None:
        return None
    size = requests[0].batch_size
    targets = [processing.setup_color_correction(to_pil(r.input_image)) for r in requests]
    return [target for target in targets for _ in range(size)]


def color_correction_on(p: Any) -> bool:
    """The WebUI's img2img colour correction option as process_images will see it: an API
    request's override_settings are applied inside process_images, after a script's run() has
    begun."""
    from modules import shared

    overrides = getattr(p, "override_settings", None) or {}
    return bool(overrides.get("img2img_color_correction", getattr(shared.opts, "img2img_color_correction", False)))


def color_corrector() -> Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]:
    """The WebUI's colour correction of images made elsewhere (workers), towards the frame's
    input: what process_images does here with p.color_corrections set. The worker's image is
    already composited over its init image outside a mask, where the WebUI corrects before that
    overlay; the run keeps only the inside of the mask, but the histograms matched include the
    outside, so with a mask the colours can differ slightly from a run made here."""
    from modules import processing

    def correct(input_image: np.ndarray, images: list[np.ndarray]) -> list[np.ndarray]:
        target = processing.setup_color_correction(to_pil(input_image))
        return [from_pil(processing.apply_color_correction(target, to_pil(image))) for image in images]

    return correct


def _seeds(requests: list[GenerationRequest], iteration: int) -> tuple[list[int], list[int]]:
    """The seeds and subseeds of every image of batch `iteration`, frame after frame, as the WebUI
    gives them in an n_iter run of each frame: seed + k per image only without variation strength
    (with it, every image keeps the seed), subseed + k always."""
    size = requests[0].batch_size
    offset = iteration * size
    seeds = [r.seed + (offset + k if r.subseed_strength == 0 else 0) for r in requests for k in range(size)]
    subseeds = [r.subseed + offset + k for r in requests for k in range(size)]
    return seeds, subseeds
