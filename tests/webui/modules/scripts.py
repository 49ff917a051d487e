"""modules.scripts: the Script base class (and what an always-on script looks like on p)."""

from __future__ import annotations

import re
from typing import Any


class Script:
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = True

    def title(self) -> str:
        raise NotImplementedError

    def show(self, is_img2img: bool) -> Any:
        return True

    def ui(self, is_img2img: bool) -> list[Any]:
        return []

    def run(self, p: Any, *args: Any) -> Any:
        return None

    def elem_id(self, item_id: str) -> str:
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tabname}{title}_{item_id}"


class ScriptRunner:
    def __init__(self) -> None:
        self.alwayson_scripts: list[Script] = []
        self.scripts: list[Script] = []


scripts_data: list[Any] = []
