"""Image files to float32 arrays and back, whatever their mode or bit depth."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lib_videoloop.errors import VideoLoopError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
# An 8K frame is 33 Mpx; a frame is decoded as float32 RGB (12 bytes a pixel), so this bound
# keeps one frame under 500 MB. Pillow itself refuses only at 179 Mpx, with a traceback.
MAX_PIXELS = 40_000_000


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def image_size(path: Path, setting: str = "input_directory") -> tuple[int, int]:
    """(width, height) from the file's header alone, checked against MAX_PIXELS."""
    with _opened(path, setting) as img:
        return img.size


def load_image(path: Path, setting: str = "input_directory") -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (rgb HxWx3 float32 in [0, 1], alpha HxW float32 or None)."""
    with _opened(path, setting) as img:
        try:
            if _is_png16_colour(img):
                rgb, alpha = _read_png16(path)
                return _oriented(rgb, img), None if alpha is None else _oriented(alpha, img)
            img.load()
            rgb, alpha = pil_to_float(ImageOps.exif_transpose(img))
        except (OSError, SyntaxError, ValueError) as exc:
            raise VideoLoopError(
                setting, str(path), f"cannot be read as an image ({exc})", "Remove the file or export it again"
            ) from None
    if not np.isfinite(rgb).all():
        raise VideoLoopError(
            setting, str(path), "has NaN or infinite pixels", "Export it again with finite values (0 to 1)"
        )
    return rgb, alpha


@contextlib.contextmanager
def _opened(path: Path, setting: str) -> Iterator[Image.Image]:
    """Image.open with the size checked from the header and every failure phrased for the user."""
    if path.stat().st_size == 0:
        raise VideoLoopError(setting, str(path), "is an empty (zero-byte) file", "Remove it or export the frame again")
    try:
        img = Image.open(path)
    except Image.DecompressionBombError:
        raise _too_large(setting, path, "over 179 million") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VideoLoopError(
            setting, str(path), f"cannot be read as an image ({exc})", "Remove the file or export it again"
        ) from None
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS or min(width, height) < 1:
            raise _too_large(setting, path, f"{width}x{height}")
        yield img


def _too_large(setting: str, path: Path, size: str) -> VideoLoopError:
    return VideoLoopError(
        setting,
        str(path),
        f"is {size} pixels; frames may have at most {MAX_PIXELS:,} pixels",
        "Scale the frames down before the run (width and height only scale after reading)",
    )


def _is_png16_colour(img: Image.Image) -> bool:
    # Pillow decodes 16-bit RGB(A) PNGs to 8 bits; its decoder's raw mode still says 16.
    return img.format == "PNG" and bool(img.tile) and img.tile[0][3] in ("RGB;16B", "RGBA;16B")


def _read_png16(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        raise ValueError("the 16-bit PNG could not be decoded")
    arr = data.astype(np.float32) / 65535.0
    rgb = np.ascontiguousarray(arr[:, :, 2::-1])
    alpha = np.ascontiguousarray(arr[:, :, 3]) if arr.shape[2] == 4 else None
    return rgb, alpha


def _oriented(arr: np.ndarray, img: Image.Image) -> np.ndarray:
    """arr turned as the file's EXIF orientation says (what ImageOps.exif_transpose does)."""
    orientation = img.getexif().get(0x0112, 1)
    turns = {3: 2, 6: -1, 8: 1}
    if orientation in turns:
        arr = np.rot90(arr, turns[orientation])
    elif orientation in (2, 4):
        arr = arr[:, ::-1] if orientation == 2 else arr[::-1]
    elif orientation in (5, 7):
        arr = np.swapaxes(arr, 0, 1)
        arr = arr if orientation == 5 else arr[::-1, ::-1]
    return np.ascontiguousarray(arr)


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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
