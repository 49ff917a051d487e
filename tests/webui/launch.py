"""launch: what install.py uses of the WebUI's launcher (records instead of installing)."""

from __future__ import annotations

import importlib.util

pip_calls: list[str] = []


def is_installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def run_pip(command: str, desc: str | None = None, live: bool = False) -> None:
    pip_calls.append(command)
