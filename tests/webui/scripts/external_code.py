"""sd-webui-controlnet's external_code (A1111), the functions Video Loopback calls."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None


def _cn_script(p: Any) -> Any:
    for script in p.scripts.alwayson_scripts:
        if script.title().lower() == "controlnet":
            return script
    return None


def get_all_units_in_processing(p: Any) -> list[ControlNetUnit]:
    script = _cn_script(p)
    if script is None:
        return []
    return [copy.copy(u) for u in p.script_args[script.args_from : script.args_to]]


def update_cn_script_in_processing(p: Any, cn_units: list[ControlNetUnit], **kwargs: Any) -> None:
    script = _cn_script(p)
    args = list(p.script_args)
    units = list(cn_units) + [ControlNetUnit(enabled=False)] * (script.args_to - script.args_from - len(cn_units))
    args[script.args_from : script.args_to] = units
    p.script_args = tuple(args)
