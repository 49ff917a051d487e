"""sd-webui-controlnet's unit (A1111), as it sits in p.script_args; the extension's process()
reads units from p.script_args[args_from:args_to], which is where Video Loopback puts the frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
