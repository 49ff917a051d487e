"""Settings > Video Loopback: defaults worth keeping between uses, and the shared-UI allow list."""

from __future__ import annotations

from typing import Any

SECTION = ("video_loopback", "Video Loopback")
OPTIONS: dict[str, tuple[Any, str]] = {
    "video_loopback_output_directory": (
        "",
        "Output folder for runs (empty: the img2img output folder / video-loopback)",
    ),
    "video_loopback_allowed_directories": (
        "",
        "Extra folders a shared WebUI (--listen/--share) may read and write, one per line",
    ),
    "video_loopback_default_loop_n": (10, "Default number of loops in the panel"),
    "video_loopback_default_superimpose_alpha": (0.25, "Default superimpose_alpha in the panel"),
    "video_loopback_default_temporal_list": ("1", "Default temporal_superimpose_alpha_list in the panel"),
}


def register() -> None:
    from modules import shared

    for key, (default, label) in OPTIONS.items():
        shared.opts.add_option(key, shared.OptionInfo(default, label, section=SECTION))


def panel_defaults() -> dict[str, Any]:
    """The panel's initial values from the saved settings (when the WebUI has them)."""
    try:
        from modules import shared
    except ImportError:
        return {}
    opts = shared.opts
    pick = lambda key, fallback: getattr(opts, key) if hasattr(opts, key) else fallback  # noqa: E731
    return {
        "loop_n": pick("video_loopback_default_loop_n", 10),
        "superimpose_alpha": pick("video_loopback_default_superimpose_alpha", 0.25),
        "temporal_superimpose_alpha_list": pick("video_loopback_default_temporal_list", "1"),
    }
