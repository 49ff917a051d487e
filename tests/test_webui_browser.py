"""The panel in a real browser: served by gradio on 127.0.0.1, opened in Debian's chromium.

Skipped where Playwright or /usr/bin/chromium is missing, except under CI, which sets
VIDEO_LOOPBACK_REQUIRE_BROWSER and so fails without them.
The screenshot is kept in tests/artifacts/panel.png.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

gr = pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")
from conftest import CHROMIUM, launch_chromium, load_webui_script, make_clip, numbered_frames  # noqa: E402

if not os.path.exists(CHROMIUM):
    if os.environ.get("VIDEO_LOOPBACK_REQUIRE_BROWSER"):  # set by CI: a missing browser is a failure there
        pytest.fail(f"{CHROMIUM} is missing", pytrace=False)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def panel_page(height: int) -> Iterator[Any]:
    """The script's panel served by gradio on a free local port, opened in chromium."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    script = load_webui_script()
    with gr.Blocks(analytics_enabled=False) as demo:
        script.ui(True)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with playwright.sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport={"width": 1000, "height": height})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            yield page
            browser.close()
    finally:
        demo.close()


def test_mask_settings_appear_and_schedule_check_plots() -> None:
    with panel_page(2200) as page:
        mask_dir = page.locator("#script_video_loopback_mask_directory")
        assert not mask_dir.is_visible()
        page.locator("#script_video_loopback_use_mask input[type=checkbox]").check()
        mask_dir.wait_for(state="visible", timeout=10_000)

        page.locator("#script_video_loopback_schedules").get_by_text("Schedules").first.click()
        page.locator(
            "#script_video_loopback_denoising_schedule textarea, #script_video_loopback_denoising_schedule input"
        ).first.fill("0.4 if loop_i < 3 else 0.3")
        page.locator("#script_video_loopback_check_schedules").click()
        page.locator("#script_video_loopback_schedule_plot img").wait_for(state="visible", timeout=20_000)
        assert "valid" in page.locator("#script_video_loopback_schedule_message").inner_text()
        page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)
    assert (ARTIFACTS / "panel.png").stat().st_size > 10_000


def test_keyframe_settings_appear_and_the_preview_shows_the_strip(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", numbered_frames(30, 96, 64))
    with panel_page(2600) as page:
        page.locator(
            "#script_video_loopback_input_directory textarea, #script_video_loopback_input_directory input"
        ).first.fill(str(clip))
        page.locator("#script_video_loopback_max_frames input").first.fill("30")
        page.locator("#script_video_loopback_keyframes").get_by_text("Keyframes").first.click()
        preview = page.locator("#script_video_loopback_preview_keyframes")
        assert not preview.is_visible(), "the mode's settings stay hidden while it is off"
        page.locator("#script_video_loopback_keyframe_mode input").first.click()
        page.get_by_role("option", name="every n frames").click()
        preview.wait_for(state="visible", timeout=10_000)
        preview.click()
        page.locator("#script_video_loopback_keyframe_strip img").wait_for(state="visible", timeout=60_000)
        assert "keyframes of 30 frames" in page.locator("#script_video_loopback_keyframe_message").inner_text()
        page.screenshot(path=str(ARTIFACTS / "keyframes.png"), full_page=True)
