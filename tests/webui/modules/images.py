from __future__ import annotations

import os
from typing import Any

saved: list[str] = []


def save_image(
    image: Any,
    path: str,
    basename: str,
    seed: Any = None,
    prompt: Any = None,
    extension: str = "png",
    info: Any = None,
    short_filename: bool = False,
    no_prompt: bool = False,
    grid: bool = False,
    pnginfo_section_name: str = "parameters",
    p: Any = None,
    existing_info: Any = None,
    forced_filename: str | None = None,
    suffix: str = "",
    save_to_dirs: Any = None,
) -> tuple[str, str | None]:
    os.makedirs(path, exist_ok=True)
    name = forced_filename or f"{basename}-{len(saved):05d}"
    full = os.path.join(path, f"{name}.{extension}")
    image.save(full)
    saved.append(full)
    return full, None
