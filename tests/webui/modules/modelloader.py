from __future__ import annotations


def load_file_from_url(
    url: str, *, model_dir: str, progress: bool = True, file_name: str | None = None, hash_prefix: str | None = None
) -> str:
    raise ConnectionError("no network in the test WebUI")
