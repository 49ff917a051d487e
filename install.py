"""Run by the WebUI on every launch: installs what requirements.txt names and is missing.

Quiet and fast when everything is present. Never upgrades or downgrades a package that is
already installed, so the WebUI's own pins (torch, gradio, pillow, numpy, ...) stay as they are.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

# pip names whose import name differs
IMPORT_NAMES = {"av": "av", "opencv-python-headless": "cv2", "opencv-python": "cv2", "pillow": "PIL"}


def requirements(path: Path) -> list[tuple[str, str]]:
    """(pip requirement line, import name) for each requirement in the file."""
    items = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
        items.append((line, IMPORT_NAMES.get(name.lower(), name.replace("-", "_"))))
    return items


def main() -> None:
    import launch  # the WebUI's own module; only present inside the WebUI

    for requirement, module in requirements(Path(__file__).with_name("requirements.txt")):
        if not launch.is_installed(module):
            # run_pip goes through a shell: unquoted, "av>=12" would redirect pip's output into a file "=12".
            launch.run_pip(f'install "{requirement}"', f"{requirement} for Video Loopback")


if __name__ in {"__main__", "install"}:
    with contextlib.suppress(ImportError):  # not inside the WebUI (e.g. imported by a test): nothing to do
        main()
