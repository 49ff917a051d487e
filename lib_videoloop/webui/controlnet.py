"""Per-frame ControlNet input, through the current API of each WebUI.

Every enabled unit without an image of its own gets the frame (the k-th such unit the k-th
reference folder's frame). AUTOMATIC1111's sd-webui-controlnet reads units through its
external_code; Forge's built-in ControlNet reads them from p.script_args on every process().
Without ControlNet nothing happens.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from lib_videoloop.media.images import to_uint8


def _a1111_api() -> Any:
    try:
        from scripts import external_code  # sd-webui-controlnet (A1111)
    except ImportError:
        return None
    return external_code


def _with_image(unit: Any, image: np.ndarray) -> Any:
    # Forge's unit also has image_fg (what was drawn over the image). For an all-dark image Forge
    # reads image_fg's alpha, and fails when there is none: a transparent one keeps the frame.
    no_drawing = np.zeros((*image.shape[:2], 4), np.uint8)
    if isinstance(unit, dict):
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


def apply_frame(p: Any, control_images: list[np.ndarray]) -> int:
    """Gives p's ControlNet units this frame's images; returns how many units got one."""
    if not control_images:
        return 0
    frames = [to_uint8(img) for img in control_images]
    api = _a1111_api()
    if api is not None:
        units = api.get_all_units_in_processing(p)
        given = 0
        new_units = []
        for unit in units:
            if _needs_image(unit):
                unit = _with_image(unit, frames[min(given, len(frames) - 1)])
                given += 1
            new_units.append(unit)
        if given:
            api.update_cn_script_in_processing(p, new_units)
        return given
    runner = getattr(p, "scripts", None)
    for script in getattr(runner, "alwayson_scripts", []) or []:
        if "controlnet" not in script.title().lower():
            continue
        args = list(p.script_args)
        given = 0
        for index in range(script.args_from, script.args_to):
            if _needs_image(args[index]):
                args[index] = _with_image(args[index], frames[min(given, len(frames) - 1)])
                given += 1
        p.script_args = tuple(args)  # a new tuple: the user's p keeps its own units
        return given
    return 0
