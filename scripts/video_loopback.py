"""Video Loopback in the img2img script dropdown (AUTOMATIC1111 1.6-1.10 and Forge).

No algorithm lives here: the panel, the run and the settings section are in lib_videoloop.webui,
the loop itself in lib_videoloop.engine. The extension folder is on sys.path, so lib_videoloop
imports directly.
"""

from __future__ import annotations

from modules import script_callbacks, scripts

from lib_videoloop.webui import settings_section


class Script(scripts.Script):
    def title(self) -> str:
        return "Video Loopback"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img  # an img2img technique: not offered in txt2img

    def ui(self, is_img2img: bool) -> list:  # noqa: ARG002  (the WebUI calls it so)
        from lib_videoloop.webui.panel import build_panel

        return build_panel(self.elem_id, settings_section.panel_defaults())

    def run(self, p, *values):
        from lib_videoloop.webui.runner import run_in_webui

        return run_in_webui(p, values)


script_callbacks.on_ui_settings(settings_section.register)
