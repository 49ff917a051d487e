"""Where FastDVDNet's published weights are found (and, in the WebUI, downloaded once).

The host says where it keeps models and how it downloads (WeightPlaces): the WebUI layer passes
its models folder (which honours --models-dir) and its checked downloader; the command line
and the tests pass nothing, so they look in the extension's models/ folder and never download.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class WeightPlaces:
    """A host's models folder for FastDVDNet, and its downloader: download(url, folder,
    file_name, sha256) -> path of the checked file."""

    folder: Path | None = None
    download: Callable[[str, Path, str, str], Path] | None = None


NOWHERE_ELSE = WeightPlaces()


def candidate_paths(places: WeightPlaces = NOWHERE_ELSE) -> list[Path]:
    folders = [EXTENSION_MODELS] + ([places.folder] if places.folder is not None else [])
    return [folder / name for folder in folders for name in (FILE_NAME, "model.safetensors")]


def find_weights(explicit: str | Path | None = "", places: WeightPlaces = NOWHERE_ELSE) -> Path:
    """The weights file to use; raises before any work with what to download and where to put it.

    When nothing is found and the host gave a downloader, the official file is fetched once into
    its models folder (sha256-checked by the downloader)."""
    if explicit and str(explicit).strip():
        path = Path(str(explicit)).expanduser()
        if not path.is_file():
            raise VideoLoopError("fastdvdnet_weights", str(explicit), "does not exist", _where_to_get(places))
        return path
    for path in candidate_paths(places):
        if path.is_file():
            return path
    if places.download is not None and places.folder is not None:
        try:
            fetched = places.download(WEIGHTS_URL, places.folder, FILE_NAME, WEIGHTS_SHA256)
            log.info("downloaded FastDVDNet weights to %s", fetched)
            return Path(fetched)
        except Exception as exc:  # no network, a proxy, a wrong hash...
            log.warning("FastDVDNet weights could not be downloaded: %s", exc)
    raise VideoLoopError(
        "fastdvdnet_weights",
        str(explicit or ""),
        "FastDVDNet's weights (model.pth) were not found",
        _where_to_get(places),
    )


def _where_to_get(where: WeightPlaces) -> str:
    places = " or ".join(str(p.parent) for p in candidate_paths(where)[::2])
    return (
        f"Download {WEIGHTS_URL} ({WEIGHTS_SIZE:,} bytes, sha256 {WEIGHTS_SHA256}) and put it in {places}, "
        "or give its path in fastdvdnet_weights (--fastdvdnet_weights on the command line)"
    )
