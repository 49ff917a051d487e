"""Path limits on a shared WebUI.

When the WebUI is reachable by others (--listen, --share or --server-name) and the owner has not
passed --enable-insecure-extension-access, every path a user types (input, masks, references,
output, resume, weights) must lie inside the WebUI's own folders or a folder the owner listed in
Settings > Video Loopback. Symbolic links are resolved first, so they cannot lead outside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lib_videoloop.config import reference_folders
from lib_videoloop.errors import VideoLoopError

ALLOWED_OPTION = "video_loopback_allowed_directories"


def is_exposed(cmd_opts: Any) -> bool:
    shared_ui = bool(
        getattr(cmd_opts, "listen", False)
        or getattr(cmd_opts, "share", False)
        or getattr(cmd_opts, "server_name", None)
    )
    return shared_ui and not getattr(cmd_opts, "enable_insecure_extension_access", False)


def allowed_roots(opts: Any, data_path: str) -> list[Path]:
    base = Path(data_path)
    roots = [base]
    for key in ("outdir_samples", "outdir_img2img_samples", "video_loopback_output_directory"):
        value = getattr(opts, key, "") if hasattr(opts, key) else ""
        if value:
            roots.append(base / value)
    extra = getattr(opts, ALLOWED_OPTION, "") if hasattr(opts, ALLOWED_OPTION) else ""
    for part in str(extra or "").replace(";", "\n").replace(",", "\n").splitlines():
        if part.strip():
            roots.append(base / Path(part.strip()).expanduser())
    return [Path(os.path.realpath(r)) for r in roots]


def check_paths(values: dict[str, str], roots: list[Path]) -> None:
    """Raises VideoLoopError for the first path outside every allowed root."""
    for setting, text in values.items():
        for part in reference_folders(text):  # any path setting may hold several, like the references
            resolved = Path(os.path.realpath(Path(part).expanduser()))
            if not any(resolved == root or root in resolved.parents for root in roots):
                raise VideoLoopError(
                    setting, part, "is outside the folders this shared WebUI allows",
                    "The WebUI's owner can add the folder under Settings > Video Loopback > allowed folders, "
                    "or start the WebUI with --enable-insecure-extension-access",
                )  # fmt: skip
