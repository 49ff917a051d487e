"""Per-frame ControlNet input.

Every enabled unit without an image of its own gets the frame (the k-th such unit the k-th
reference folder's frame). Both AUTOMATIC1111's sd-webui-controlnet and Forge's built-in
ControlNet read their units from p.script_args[args_from:args_to] on every process(), so the
frame's p gets a new script_args tuple holding copies of the units: the user's p and units are
left as they were. (sd-webui-controlnet's update_cn_script_in_processing would also pad the
units and move every always-on script's args_from/args_to on the ScriptRunner, which a copy of
p shares with the user's p.) Without ControlNet nothing happens.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from lib_videoloop.media.images import to_uint8


def _with_image(unit: Any, image: np.ndarray) -> Any:
    # Forge's unit also has image_fg (what was drawn over the image). For an all-dark image Forge
    # reads image_fg's alpha, and fails when there is none: a transparent one keeps the frame.
    no_drawing = np.zeros((*image.shape[:2], 4), np.uint8)
    if isinstance(unit, dict):  # units sent through the HTTP API
        extra = {"image_fg": no_drawing} if "image_fg" in unit and unit["image_fg"] is None else {}
        return {**unit, "image": image, **extra}
    unit = copy.copy(unit)
    unit.image = image
    if hasattr(unit, "image_fg") and unit.image_fg is None:
        unit.image_fg = no_drawing
    return unit


def _needs_image(unit: Any) -> bool:
    get = unit.get if isinstance(unit, dict) else lambda key, default=None: getattr(unit, key, default)
    return bool(get("enabled", False)) and get("image", None) is None


def controlnet_script(p: Any) -> Any:
    """The ControlNet extension's always-on script (sd-webui-controlnet or Forge's own), if any."""
    runner = getattr(p, "scripts", None)
    for script in getattr(runner, "alwayson_scripts", []) or []:
        if "controlnet" in script.title().lower():
            return script
    return None


def frame_units(p: Any) -> int:
    """How many of p's ControlNet units take each frame (enabled, without an image of their own)."""
    script = controlnet_script(p)
    if script is None:
        return 0
    return sum(_needs_image(unit) for unit in p.script_args[script.args_from : script.args_to])


def apply_frame(p: Any, control_images: list[np.ndarray]) -> int:
    """Gives p's ControlNet units this frame's images; returns how many units got one."""
    script = controlnet_script(p) if control_images else None
    if script is None:
        return 0
    frames = [to_uint8(img) for img in control_images]
    args = list(p.script_args)
    given = 0
    for index in range(script.args_from, script.args_to):
        if _needs_image(args[index]):
            args[index] = _with_image(args[index], frames[min(given, len(frames) - 1)])
            given += 1
    p.script_args = tuple(args)
    return given
