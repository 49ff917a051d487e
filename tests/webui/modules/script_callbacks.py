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


# The sampler's per-step callbacks, as the real module keeps them (by category, with the same
# registration and removal functions; ordering by name is not needed here).
class CFGDenoiserParams:
    def __init__(self, x: Any, image_cond: Any, sigma: Any, sampling_step: int, total_sampling_steps: int,
                 text_cond: Any, text_uncond: Any, denoiser: Any = None) -> None:  # fmt: skip
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


class AfterCFGCallbackParams:
    def __init__(self, x: Any, sampling_step: int, total_sampling_steps: int) -> None:
        self.x, self.sampling_step, self.total_sampling_steps = x, sampling_step, total_sampling_steps


callback_map: dict[str, list[Callable[[Any], None]]] = {"callbacks_cfg_denoiser": [], "callbacks_cfg_after_cfg": []}


def on_cfg_denoiser(callback: Callable[[Any], None], *, name: str | None = None) -> None:
    callback_map["callbacks_cfg_denoiser"].append(callback)


def on_cfg_after_cfg(callback: Callable[[Any], None], *, name: str | None = None) -> None:
    callback_map["callbacks_cfg_after_cfg"].append(callback)


def remove_callbacks_for_function(callback_func: Callable[[Any], None]) -> None:
    for callbacks in callback_map.values():
        while callback_func in callbacks:
            callbacks.remove(callback_func)


def _report(callback: Callable[[Any], None], params: Any) -> None:
    try:
        callback(params)
    except Exception as exc:  # the real report_exception prints the error and goes on
        print(f"Error executing callback {callback}: {exc!r}")


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    for callback in list(callback_map["callbacks_cfg_denoiser"]):
        _report(callback, params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    for callback in list(callback_map["callbacks_cfg_after_cfg"]):
        _report(callback, params)
