"""What a frame's request to a worker carries from the img2img tab (p), so that a worker makes
what this WebUI would: the sampler, scheduler, styles, the mask's settings, the checkpoint, VAE
and CLIP skip, the tab's override settings (colour correction off: it is done here), and the
ControlNet units (each frame's image is added per request, backends/workers.py). Field names
are those of the img2img API request (modules/api/models.py builds them from
StableDiffusionProcessingImg2Img's own)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np

from lib_videoloop.webui.controlnet import controlnet_script

# p's attributes sent as they are, where p has them (Forge and AUTOMATIC1111 share these names).
_FROM_P = (
    "sampler_name", "scheduler", "resize_mode", "mask_blur", "inpainting_fill", "inpaint_full_res",
    "inpaint_full_res_padding", "inpainting_mask_invert", "restore_faces", "tiling", "initial_noise_multiplier",
)  # fmt: skip


def template_from_p(p: Any) -> dict[str, Any]:
    from modules import shared

    template = {name: getattr(p, name) for name in _FROM_P if getattr(p, name, None) is not None}
    template["styles"] = list(getattr(p, "styles", None) or [])
    overrides = dict(getattr(p, "override_settings", None) or {})
    overrides["sd_model_checkpoint"] = shared.opts.sd_model_checkpoint
    for option in ("sd_vae", "CLIP_stop_at_last_layers"):
        if hasattr(shared.opts, option) and getattr(shared.opts, option) not in (None, "Automatic"):
            overrides.setdefault(option, getattr(shared.opts, option))
    # The frames are colour-corrected here, towards their own input (runner.py), never by a
    # worker's own option, which would correct towards the blended init image.
    overrides["img2img_color_correction"] = False
    template["override_settings"] = overrides
    units = _controlnet_units(p)
    if units:
        template["alwayson_scripts"] = {"controlnet": {"args": units}}
    return template


def _controlnet_units(p: Any) -> list[dict[str, Any]]:
    """p's enabled ControlNet units as the API takes them (their own images as base64 PNG)."""
    script = controlnet_script(p)
    if script is None:
        return []
    units = [_as_dict(unit) for unit in p.script_args[script.args_from : script.args_to]]
    return [unit for unit in units if unit.get("enabled")]


def _as_dict(unit: Any) -> dict[str, Any]:
    if isinstance(unit, dict):
        raw = dict(unit)
    elif hasattr(unit, "model_dump"):  # sd-webui-controlnet's pydantic unit
        raw = unit.model_dump()
    elif hasattr(unit, "dict"):
        raw = unit.dict()
    elif dataclasses.is_dataclass(unit):  # Forge's built-in ControlNet
        raw = {f.name: getattr(unit, f.name) for f in dataclasses.fields(unit)}
    else:
        raw = dict(vars(unit))
    return {key: _json_value(value) for key, value in raw.items() if not key.startswith("_")}


def _json_value(value: Any) -> Any:
    from lib_videoloop.backends.workers import encode_png

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        image = value.astype(np.float32) / 255.0 if value.dtype == np.uint8 else value
        return encode_png(image if image.ndim == 2 or image.shape[2] == 3 else image[..., :3])
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value
