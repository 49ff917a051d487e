"""Where FastDVDNet's published weights are found (and, in the WebUI, downloaded once)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from lib_videoloop.errors import VideoLoopError

log = logging.getLogger(__name__)

WEIGHTS_URL = "https://github.com/m-tassano/fastdvdnet/raw/master/model.pth"
WEIGHTS_SHA256 = "9d9d8413c33e3d9d961d07c530237befa1197610b9d60602ff42fd77975d2a17"
WEIGHTS_SIZE = 9_971_551
FILE_NAME = "model.pth"
EXTENSION_MODELS = Path(__file__).resolve().parents[2] / "models" / "FastDVDNet"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _webui_models_dir() -> Path | None:
    try:
        from modules import paths  # the WebUI's own module; honours --models-dir
    except ImportError:
        return None
    return Path(paths.models_path) / "FastDVDNet"


def candidate_paths() -> list[Path]:
    folders = [EXTENSION_MODELS]
    webui = _webui_models_dir()
    if webui is not None:
        folders.append(webui)
    return [folder / name for folder in folders for name in (FILE_NAME, "model.safetensors")]


def find_weights(explicit: str | Path | None = "", *, download: bool | None = None) -> Path:
    """The weights file to use; raises before any work with what to download and where to put it.

    download: try the official URL (sha256-checked) when nothing is found. By default only inside
    the WebUI, which has a downloader and network; the command line and tests never download.
    """
    if explicit and str(explicit).strip():
        path = Path(str(explicit)).expanduser()
        if not path.is_file():
            raise VideoLoopError("fastdvdnet_weights", str(explicit), "does not exist", _where_to_get())
        return path
    for path in candidate_paths():
        if path.is_file():
            return path
    webui = _webui_models_dir()
    if download is None:
        download = webui is not None
    if download and webui is not None:
        try:
            from modules.modelloader import load_file_from_url

            fetched = Path(
                load_file_from_url(WEIGHTS_URL, model_dir=str(webui), file_name=FILE_NAME, hash_prefix=WEIGHTS_SHA256)
            )
            log.info("downloaded FastDVDNet weights to %s", fetched)
            return fetched
        except Exception as exc:  # no network, a proxy, a wrong hash...
            log.warning("FastDVDNet weights could not be downloaded: %s", exc)
    raise VideoLoopError(
        "fastdvdnet_weights", str(explicit or ""), "FastDVDNet's weights (model.pth) were not found", _where_to_get()
    )


def _where_to_get() -> str:
    places = " or ".join(str(p.parent) for p in candidate_paths()[::2])
    return (
        f"Download {WEIGHTS_URL} ({WEIGHTS_SIZE:,} bytes, sha256 {WEIGHTS_SHA256}) and put it in {places}, "
        "or give its path in fastdvdnet_weights (--fastdvdnet_weights on the command line)"
    )
