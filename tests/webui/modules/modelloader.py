"""Stand-in for modules.modelloader: the real signature (A1111 1.10 and Forge, where it is
re-exported from modules.util). There is no network in tests, so it fails as an offline WebUI
would; a test that needs a download replaces it."""

from __future__ import annotations


def load_file_from_url(
    url: str, *, model_dir: str, progress: bool = True, file_name: str | None = None, hash_prefix: str | None = None
) -> str:
    raise ConnectionError(f"no network: {url}")
