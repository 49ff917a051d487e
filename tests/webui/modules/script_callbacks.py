from __future__ import annotations

from collections.abc import Callable
from typing import Any

ui_settings_callbacks: list[Callable[[], None]] = []


def on_ui_settings(callback: Callable[[], None]) -> None:
    ui_settings_callbacks.append(callback)


def ui_settings_callback() -> None:
    for callback in ui_settings_callbacks:
        callback()


def on_before_image_saved(callback: Callable[[Any], None]) -> None:
    pass
