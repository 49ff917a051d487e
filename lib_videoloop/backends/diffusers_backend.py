"""A backend on a local diffusers Stable Diffusion model (img2img, and inpainting with masks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.backends import GenerationRequest
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
        import torch

        self.name = f"diffusers:{model}"
        self.model = model
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
        pipe = self._load(model)
        if sampler_name:
            if sampler_name not in SAMPLERS:
                raise VideoLoopError(
                    "sampler_name",
                    sampler_name,
                    "is not known to the diffusers backend",
                    f"Use one of: {', '.join(SAMPLERS)}",
                )
            import diffusers

            cls_name, extra = SAMPLERS[sampler_name]
            pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
        # Casting a float32 model to float32 only makes diffusers warn; move it, cast only for half.
        pipe = pipe.to(device, self.dtype) if self.dtype != torch.float32 else pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.img2img = pipe
        self._inpaint = None

    @staticmethod
    def _load(model: str):  # noqa: ANN205
        from diffusers import StableDiffusionImg2ImgPipeline

        if model == TINY_MODEL_NAME:
            return build_tiny_pipeline()
        path = Path(model).expanduser()
        if not path.exists():
            raise VideoLoopError(
                "--model",
                model,
                "does not exist",
                f"Give a diffusers model folder, a .safetensors/.ckpt file, or '{TINY_MODEL_NAME}' for a smoke test",
            )
        try:
            if path.is_dir():
                return StableDiffusionImg2ImgPipeline.from_pretrained(
                    str(path), local_files_only=True, safety_checker=None, requires_safety_checker=False
                )
            if path.suffix.lower() in (".safetensors", ".ckpt"):
                return StableDiffusionImg2ImgPipeline.from_single_file(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise VideoLoopError(
                "--model",
                model,
                f"could not be loaded ({exc})",
                "A single-file checkpoint needs its diffusers config in the local cache; or give a diffusers model folder",
            ) from None
        raise VideoLoopError(
            "--model",
            model,
            "is neither a folder nor a .safetensors/.ckpt file",
            "Give a diffusers model folder or a checkpoint file",
        )

    @property
    def inpaint(self):  # noqa: ANN201
        if self._inpaint is None:
            from diffusers import StableDiffusionInpaintPipeline

            # Same weights, no copy: the inpaint pipeline shares the img2img components.
            components = dict(self.img2img.components, requires_safety_checker=False)
            self._inpaint = StableDiffusionInpaintPipeline(**components)
            self._inpaint.set_progress_bar_config(disable=True)
        return self._inpaint

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        if uses_subseed:
            raise VideoLoopError(
                "subseed_strength",
                "> 0",
                "the diffusers backend has no variation seeds",
                "Set subseed_strength (and its schedule) to 0, or run in the WebUI",
            )

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        import torch

        h, w = request.init_image.shape[:2]
        # The model works on sizes divisible by its latent scale; the engine's frame size rules.
        scale = getattr(self.img2img, "vae_scale_factor", 8)
        if int(request.steps * request.denoising_strength) < 1:
            # Nothing would be sampled (diffusers refuses zero steps): the init image is the result.
            return [request.init_image] * request.image_count
        gen_w, gen_h = max(scale, request.width // scale * scale), max(scale, request.height // scale * scale)
        init = to_pil(resize_frame(request.init_image, gen_w, gen_h))
        images: list[np.ndarray] = []
        for batch in range(request.n_iter):
            first = request.seed + batch * request.batch_size
            generators = [torch.Generator("cpu").manual_seed(first + k) for k in range(request.batch_size)]
            common = dict(
                prompt=[request.prompt] * request.batch_size,
                negative_prompt=[request.negative_prompt] * request.batch_size,
                strength=request.denoising_strength,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                generator=generators,
                output_type="np",
            )
            if request.mask is not None:
                mask = to_pil(resize_frame(request.mask, gen_w, gen_h))
                out = self.inpaint(image=init, mask_image=mask, width=gen_w, height=gen_h, **common)
            else:
                out = self.img2img(image=init, **common)
            for arr in out.images:
                arr = np.asarray(arr, dtype=np.float32)
                if arr.shape[:2] != (h, w):
                    arr = resize_frame(arr, w, h)
                images.append(np.clip(arr, 0.0, 1.0))
        return images
