"""The panel, built by real gradio (CI runs this file under gradio 3.41.2 and 4.40.0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_webui_script, panel_values
from lib_videoloop.webui.panel import PANEL_ORDER, check_schedules

gr = pytest.importorskip("gradio")


def build():
    script = load_webui_script()
    with gr.Blocks() as demo:
        components = script.ui(True)
    return demo, components


def test_panel_builds_with_every_setting_in_order() -> None:
    demo, components = build()
    assert len(components) == len(PANEL_ORDER)
    for name, component in zip(PANEL_ORDER, components):
        assert component.elem_id == f"script_video_loopback_{name}"
        assert component.label == name
    by_name = dict(zip(PANEL_ORDER, components))
    assert by_name["loop_n"].value == 10 and by_name["superimpose_alpha"].value == 0.25
    assert by_name["temporal_superimpose_method"].value == "simple"
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
