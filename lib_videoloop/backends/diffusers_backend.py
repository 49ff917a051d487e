"""A backend on a local diffusers Stable Diffusion model (img2img, and inpainting with masks)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.backends import GenerationRequest, auto_frames_per_call
from lib_videoloop.backends.tiny import TINY_MODEL_NAME, build_tiny_pipeline
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.images import to_pil
from lib_videoloop.media.resize import resize_frame

log = logging.getLogger(__name__)

# WebUI sampler names to diffusers schedulers (and the options that make them match).
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}


class DiffusersBackend:
    """Loads a local model once and generates every frame's batch with per-image seeds."""

    wants_input_frames = False

    def __init__(self, model: str, sampler_name: str = "", device: str | None = None) -> None:
        # Only what is cheap to check happens here; the model is loaded by the first generation,
        # so a run's settings and input are all checked before seconds (or minutes) of loading.
        self.name = self.model_name = f"diffusers:{model}"
        self.model = model
        self.sampler_name = sampler_name
        self.requested_device = device
        if sampler_name and sampler_name not in SAMPLERS:
            raise VideoLoopError(
                "sampler_name",
                sampler_name,
                "is not known to the diffusers backend",
                f"Use one of: {', '.join(SAMPLERS)}",
            )
        _check_model_path(model)
        self._img2img = None
        self._inpaint = None
        self.last_deflicker = None  # the last call's latent deflicker (its steps applied), if any

    @property
    def img2img(self):
        if self._img2img is None:
            import torch

            device = self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.device = device
            self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
            pipe = self._load(self.model, self.dtype)
            if self.sampler_name:
                import diffusers

                cls_name, extra = SAMPLERS[self.sampler_name]
                pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
            # Casting a float32 model to float32 only makes diffusers warn; move it, cast only for half.
            pipe = pipe.to(device, self.dtype) if self.dtype != torch.float32 else pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            self._img2img = pipe
        return self._img2img

    @staticmethod
    def _load(model: str, dtype: Any):
        from diffusers import StableDiffusionImg2ImgPipeline

        if model == TINY_MODEL_NAME:
            return build_tiny_pipeline()
        path = Path(model).expanduser()
        try:
            if path.is_dir():
                # In the device's precision whatever the files hold (a half-precision folder on a CPU too).
                return StableDiffusionImg2ImgPipeline.from_pretrained(
                    str(path),
                    local_files_only=True,
                    safety_checker=None,
                    requires_safety_checker=False,
                    torch_dtype=dtype,
                )
            if path.suffix.lower() in (".safetensors", ".ckpt"):
                return StableDiffusionImg2ImgPipeline.from_single_file(
                    str(path), local_files_only=True, torch_dtype=dtype
                )
        except (OSError, ValueError) as exc:
            raise VideoLoopError(
                "--model",
                model,
                f"could not be loaded ({exc})",
                "A single-file checkpoint needs its diffusers config in the local cache; or give a diffusers model folder",
            ) from None
        raise AssertionError("checked by _check_model_path")

    @property
    def inpaint(self):
        if self._inpaint is None:
            from diffusers import StableDiffusionInpaintPipeline

            # Same weights, no copy: the inpaint pipeline shares the img2img components.
            components = dict(self.img2img.components, requires_safety_checker=False)
            self._inpaint = StableDiffusionInpaintPipeline(**components)
            self._inpaint.set_progress_bar_config(disable=True)
        return self._inpaint

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:  # noqa: ARG002  (masks are supported)
        if uses_subseed:
            raise VideoLoopError(
                "subseed_strength",
                "> 0",
                "the diffusers backend has no variation seeds",
                "Set subseed_strength (and its schedule) to 0, or run in the WebUI",
            )

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        return self.generate_frames([request])[0]

    def frames_per_call(self, request: GenerationRequest, setting: int) -> int:
        if setting:
            return setting
        self.img2img  # noqa: B018  (loads the model, which settles the device)
        return auto_frames_per_call(request.width, request.height, request.image_count, self.device)

    def generate_frames(self, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
        """The frames' images from n_iter pipeline calls of batch_size images per frame: each
        image keeps its own generator, seeded as frame by frame, so the batch changes only the
        order of floating-point sums."""
        import torch

        first = requests[0]
        h, w = first.init_image.shape[:2]
        if int(first.steps * first.denoising_strength) < 1:
            # Nothing would be sampled (diffusers refuses zero steps): the init image is the result.
            return [[r.init_image] * r.image_count for r in requests]
        # The model works on sizes divisible by its latent scale; the engine's frame size rules.
        scale = getattr(self.img2img, "vae_scale_factor", 8)
        gen_w, gen_h = max(scale, first.width // scale * scale), max(scale, first.height // scale * scale)
        size = first.batch_size

        def each(make):  # one entry per image of the call: frame by frame, batch_size each
            return [item for r in requests for item in [make(r)] * size]

        inits = each(lambda r: to_pil(resize_frame(r.init_image, gen_w, gen_h)))
        masks = each(lambda r: to_pil(resize_frame(r.mask, gen_w, gen_h))) if first.mask is not None else None
        images: list[list[np.ndarray]] = [[] for _ in requests]
        pipe = self.inpaint if masks is not None else self.img2img
        for batch in range(first.n_iter):
            generators = [
                torch.Generator("cpu").manual_seed(r.seed + batch * size + k) for r in requests for k in range(size)
            ]
            common = dict(
                prompt=each(lambda r: r.prompt),
                negative_prompt=each(lambda r: r.negative_prompt),
                strength=first.denoising_strength,
                num_inference_steps=first.steps,
                guidance_scale=first.cfg_scale,
                generator=generators,
                output_type="np",
            )
            if masks is not None:
                common.update(mask_image=masks, width=gen_w, height=gen_h)
            with self._deflicker(pipe, requests):
                out = pipe(image=inits, **common)
            for n, made in enumerate(out.images):
                arr = np.asarray(made, dtype=np.float32)
                if arr.shape[:2] != (h, w):
                    arr = resize_frame(arr, w, h)
                images[n // size].append(np.clip(arr, 0.0, 1.0))
        return images

    def _deflicker(self, pipe: Any, requests: list[GenerationRequest]) -> contextlib.AbstractContextManager:
        """The call's x0 estimates blended across its frames at the chosen steps (latent_deflicker.py)."""
        from lib_videoloop.backends.x0_hook import x0_transform
        from lib_videoloop.latent_deflicker import CallDeflicker

        vae = pipe.vae
        scale = vae.config.scaling_factor

        def decode(latents: Any) -> Any:
            return (vae.decode(latents.to(vae.dtype) / scale).sample.float() / 2 + 0.5).clamp(0, 1)

        def encode(images: Any) -> Any:
            return vae.encode((images * 2 - 1).to(vae.dtype)).latent_dist.mean * scale

        deflicker = CallDeflicker.for_call(requests, decode, encode)
        if deflicker is None:
            return contextlib.nullcontext()
        self.last_deflicker = deflicker
        return x0_transform(pipe, deflicker, len(requests) * requests[0].batch_size, requests[0].cfg_scale)


def _check_model_path(model: str) -> None:
    if model == TINY_MODEL_NAME:
        return
    path = Path(model).expanduser()
    if not path.exists():
        raise VideoLoopError(
            "--model",
            model,
            "does not exist",
            f"Give a diffusers model folder, a .safetensors/.ckpt file, or '{TINY_MODEL_NAME}' for a smoke test",
        )
    if not (path.is_dir() or path.suffix.lower() in (".safetensors", ".ckpt")):
        raise VideoLoopError(
            "--model",
            model,
            "is neither a folder nor a .safetensors/.ckpt file",
            "Give a diffusers model folder or a checkpoint file",
        )
