"""The WebUI's three resize modes, on float32 arrays.

Same geometry as modules.images.resize_image in AUTOMATIC1111 and Forge (Lanczos, centred
paste, edge stretching for 'resize and fill'), computed per channel in 32-bit float so that
16-bit inputs and blended frames are not rounded to 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL = 0, 1, 2


def _resize(
    arr: np.ndarray, width: int, height: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    if box is None and arr.shape[1] == width and arr.shape[0] == height:
        return arr
    planes = arr[:, :, None] if arr.ndim == 2 else arr
    out = np.empty((height, width, planes.shape[2]), dtype=np.float32)
    for c in range(planes.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[:, :, c], dtype=np.float32), "F")
        out[:, :, c] = np.asarray(plane.resize((width, height), Image.LANCZOS, box=box))
    # Lanczos rings past the input's range at sharp edges; 8-bit PIL clamps, so do we.
    np.clip(out, 0.0, 1.0, out=out)
    return out[:, :, 0] if arr.ndim == 2 else out


def resize_frame(arr: np.ndarray, width: int, height: int, mode: int = JUST_RESIZE) -> np.ndarray:
    """Resizes an HxWx3 (or HxW mask) float32 array to width x height with a WebUI resize mode."""
    src_h, src_w = arr.shape[:2]
    if (src_w, src_h) == (width, height):
        return arr
    if mode == JUST_RESIZE:
        return _resize(arr, width, height)
    ratio = width / height
    src_ratio = src_w / src_h
    shape = (height, width, *arr.shape[2:])
    out = np.zeros(shape, dtype=np.float32)
    if mode == CROP_AND_RESIZE:
        new_w = width if ratio > src_ratio else src_w * height // src_h
        new_h = height if ratio <= src_ratio else src_h * width // src_w
    else:
        new_w = width if ratio < src_ratio else src_w * height // src_h
        new_h = height if ratio >= src_ratio else src_h * width // src_w
    resized = _resize(arr, new_w, new_h)
    _paste(out, resized, width // 2 - new_w // 2, height // 2 - new_h // 2)
    if mode == RESIZE_AND_FILL:
        if ratio < src_ratio:
            fill = height // 2 - new_h // 2
            if fill > 0:
                _paste(out, _resize(resized, width, fill, box=(0, 0, width, 0)), 0, 0)
                _paste(out, _resize(resized, width, fill, box=(0, new_h, width, new_h)), 0, fill + new_h)
        elif ratio > src_ratio:
            fill = width // 2 - new_w // 2
            if fill > 0:
                _paste(out, _resize(resized, fill, height, box=(0, 0, 0, height)), 0, 0)
                _paste(out, _resize(resized, fill, height, box=(new_w, 0, new_w, height)), fill + new_w, 0)
    return out


def _paste(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    """PIL.Image.paste semantics: the source may stick out on any side and is clipped."""
    h, w = src.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]
