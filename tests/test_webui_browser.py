"""The panel in a real browser: served by gradio on 127.0.0.1, opened in Debian's chromium.

Skipped where Playwright or /usr/bin/chromium is missing, except under CI, which sets
VIDEO_LOOPBACK_REQUIRE_BROWSER and so fails without them.
The screenshot is kept in tests/artifacts/panel.png.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")
from conftest import CHROMIUM, launch_chromium, load_webui_script  # noqa: E402

if not os.path.exists(CHROMIUM):
    if os.environ.get("VIDEO_LOOPBACK_REQUIRE_BROWSER"):  # set by CI: a missing browser is a failure there
        pytest.fail(f"{CHROMIUM} is missing", pytrace=False)
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_settings_appear_and_schedule_check_plots() -> None:
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
            page = browser.new_page(viewport={"width": 1000, "height": 2200})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
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
            browser.close()
    finally:
        demo.close()
    assert (ARTIFACTS / "panel.png").stat().st_size > 10_000
