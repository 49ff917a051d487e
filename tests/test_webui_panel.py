"""The panel, built by real gradio (CI runs this file under gradio 3.41.2 and 4.40.0)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import API_ORDER

from conftest import load_webui_script, panel_values
from lib_videoloop.webui.panel import check_schedules

gr = pytest.importorskip("gradio")


def build():
    script = load_webui_script()
    with gr.Blocks() as demo:
        components = script.ui(True)
    return demo, components


def test_panel_builds_with_every_setting_in_order() -> None:
    """In the API's order as clients have it (test_config.API_ORDER, written out by hand)."""
    demo, components = build()
    order = [name for name, _ in API_ORDER]
    assert len(components) == len(order)
    for name, component in zip(order, components, strict=True):
        assert component.elem_id == f"script_video_loopback_{name}"
        assert component.label == name
    by_name = dict(zip(order, components, strict=True))
    assert by_name["loop_n"].value == 10 and by_name["superimpose_alpha"].value == 0.25
    assert by_name["temporal_superimpose_method"].value == "simple"
    window = by_name["patch_blend_window"]  # odd sizes only, 3 to 63
    assert isinstance(window, gr.Slider) and (window.minimum, window.maximum, window.step) == (3, 63, 2)
    alpha = by_name["superimpose_alpha"]
    assert isinstance(alpha, gr.Slider) and (alpha.minimum, alpha.maximum) == (0, 1)
    assert isinstance(by_name["output_format"], gr.Dropdown) and isinstance(by_name["max_frames"], gr.Number)
    assert demo.config["components"], "the page configuration can be generated"


def test_check_schedules_plots_or_explains(tmp_path: Path) -> None:
    text, image = check_schedules(
        panel_values(denoising_schedule="0.4 if loop_i < 3 else 0.3", step_schedule="10 + image_i", loop_n=4)
    )
    assert "valid" in text and image is not None and image.height >= 2 * 200  # one small plot per schedule
    text, image = check_schedules(panel_values(cfg_schedule="7 if image_i < 5 else 'x'"))
    assert "cfg_schedule" in text and "frame 5" in text and image is None
    text, image = check_schedules(panel_values(input_directory=str(tmp_path / "missing.mp4")))
    assert "does not exist" in text


def test_settings_section_renders_as_the_webui_renders_it() -> None:
    """Every option is built the way ui_settings.create_setting_component builds it: its own
    component, or one guessed from a str/int/bool default (the stand-in refuses anything else,
    as the real settings page does)."""
    load_webui_script()  # puts the stand-in `modules` on sys.path
    from modules import script_callbacks, shared

    shared.reset()
    script_callbacks.ui_settings_callback()
    keys = [k for k in shared.opts.data_labels if k.startswith("video_loopback_")]
    assert len(keys) == 5
    guessed = {str: gr.Textbox, int: gr.Number, bool: gr.Checkbox}
    with gr.Blocks():
        for key in keys:
            info = shared.opts.data_labels[key]
            component = info.component or guessed[type(info.default)]
            built = component(
                label=info.label, value=info.default, elem_id=f"setting_{key}", **(info.component_args or {})
            )
            assert built.value == info.default
    assert shared.opts.video_loopback_default_superimpose_alpha == 0.25
