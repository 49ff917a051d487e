"""Settings > Video Loopback: defaults worth keeping between uses, and the shared-UI allow list.

Every option names its component. The WebUI builds one from the default's type only for str, int
and bool, and raises "bad options item type" for anything else, which stops the whole UI (and, in
API-only mode, the API) from starting: so nothing here relies on that guess.
"""

from __future__ import annotations

from typing import Any

SECTION = ("video_loopback", "Video Loopback")


def _options(gr: Any) -> dict[str, tuple[Any, str, Any, dict[str, Any]]]:
    """key: (default, label, component, component_args)."""
    return {
        "video_loopback_output_directory": (
            "", "Output folder for runs (empty: the img2img output folder / video-loopback)", gr.Textbox, {},
        ),
        "video_loopback_allowed_directories": (
            "", "Extra folders a shared WebUI (--listen/--share) may read and write, one per line",
            gr.Textbox, {"lines": 3},
        ),
        "video_loopback_default_loop_n": (
            10, "Default number of loops in the panel", gr.Slider, {"minimum": 1, "maximum": 100, "step": 1},
        ),
        "video_loopback_default_superimpose_alpha": (
            0.25, "Default superimpose_alpha in the panel", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01},
        ),
        "video_loopback_default_temporal_list": (
            "1", "Default temporal_superimpose_alpha_list in the panel", gr.Textbox, {},
        ),
    }  # fmt: skip


def register() -> None:
    import gradio as gr
    from modules import shared

    for key, (default, label, component, args) in _options(gr).items():
        info = shared.OptionInfo(default, label, component, args, section=SECTION)
        shared.opts.add_option(key, info)


def panel_defaults() -> dict[str, Any]:
    """The panel's initial values from the saved settings (when the WebUI has them)."""
    try:
        from modules import shared
    except ImportError:
        return {}
    opts = shared.opts
    pick = lambda key, fallback: getattr(opts, key) if hasattr(opts, key) else fallback  # noqa: E731
    return {
        "loop_n": int(pick("video_loopback_default_loop_n", 10)),
        "superimpose_alpha": float(pick("video_loopback_default_superimpose_alpha", 0.25)),
        "temporal_superimpose_alpha_list": str(pick("video_loopback_default_temporal_list", "1")),
    }
