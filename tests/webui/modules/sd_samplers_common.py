"""modules.sd_samplers_common: latents to images and back through the model's VAE, as both
WebUIs have them (images in [-1, 1] out of decode_first_stage, [0, 1] into images_tensor_to_samples)."""

from __future__ import annotations

from typing import Any


def _vae() -> Any:
    from modules.processing import _backend

    return _backend().img2img.vae


def decode_first_stage(model: Any, x: Any) -> Any:
    vae = _vae()
    return vae.decode(x.to(vae.dtype) / vae.config.scaling_factor).sample


def images_tensor_to_samples(image: Any, approximation: Any = None, model: Any = None) -> Any:
    vae = _vae()
    return vae.encode((image * 2 - 1).to(vae.dtype)).latent_dist.mean * vae.config.scaling_factor
