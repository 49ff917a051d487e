"""Forge's built-in ControlNet (sd_forge_controlnet): units are read from p.script_args."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
