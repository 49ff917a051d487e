"""Which WebUI the stand-in imitates: "a1111" or "forge"."""

from __future__ import annotations

import sys

current = "a1111"


def use(name: str) -> None:
    global current
    from modules import shared

    current = name
    shared.reset()
    sys.modules.pop("scripts.external_code", None)
    sys.modules.pop("lib_controlnet.external_code", None)
