"""Image files to float32 arrays and back, whatever their mode or bit depth."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lib_videoloop.errors import VideoLoopError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def load_image(path: Path, setting: str = "input_directory") -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (rgb HxWx3 float32 in [0, 1], alpha HxW float32 or None)."""
    try:
        if path.stat().st_size == 0:
            raise VideoLoopError(
                setting, str(path), "is an empty (zero-byte) file", "Remove it or export the frame again"
            )
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return pil_to_float(img)
    except VideoLoopError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VideoLoopError(
            setting, str(path), f"cannot be read as an image ({exc})", "Remove the file or export it again"
        ) from None


def pil_to_float(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    alpha = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: PIL's convert('RGB') would clip it to 8 bits.
        grey = np.asarray(img, dtype=np.float32)
        grey = grey / (65535.0 if grey.max(initial=0) > 255 or img.mode != "I" else 255.0)
        grey = np.clip(grey, 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3])
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0, alpha


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_pil(image: np.ndarray) -> Image.Image:
    if image.ndim == 2:
        return Image.fromarray(to_uint8(image), "L")
    return Image.fromarray(to_uint8(image), "RGB")


def from_pil(img: Image.Image) -> np.ndarray:
    return pil_to_float(img)[0]


def _file_mode() -> int:
    # mkstemp creates 0600 files; finished files get the usual mode (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def publish(tmp: str | Path, path: Path) -> None:
    """Gives a finished temporary file its final mode and name (an atomic rename)."""
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def write_atomic(path: Path, data: bytes) -> None:
    """Writes bytes under a temporary dot-name in the same folder, then renames.

    The rename is atomic on one file system, so after a crash or kill -9 a file with its final
    name is always whole; a leftover '.partial-*' file is removed by the store on reopen.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
