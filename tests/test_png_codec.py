"""The run folder's PNG files: what other programs read in them, and what the store reads back."""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from lib_videoloop.media.png_codec import encode_png, read_own_png
from lib_videoloop.media.store import decode_png


def _bikes_frame(bikes: Path) -> np.ndarray:
    with av.open(str(bikes)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _as_cv2_reads(pixels: np.ndarray) -> np.ndarray:
    """pixels in OpenCV's channel order: BGR, BGRA or grey."""
    if pixels.ndim == 2:
        return pixels
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)


def _kinds(bikes: Path) -> dict[str, np.ndarray]:
    frame = _bikes_frame(bikes)
    noise = np.random.default_rng(0).integers(0, 65536, frame.shape, dtype=np.uint16)
    blended = (frame.astype(np.uint16) * 257 // 2 + noise // 2).astype(np.uint16)
    alpha = np.random.default_rng(1).integers(0, 256, frame.shape[:2], dtype=np.uint8)
    return {
        "8-bit RGB": frame,
        "16-bit RGB, low bits noise": blended,
        "8-bit grey": frame[:, :, 1].copy(),
        "16-bit grey": blended[:, :, 0].copy(),
        "8-bit RGBA": np.dstack([frame, alpha]),
        "one row": frame[:1],
        "odd crop, not contiguous": frame[3:40:2, 5:57],
    }


@pytest.mark.parametrize(
    "kind", ["8-bit RGB", "16-bit RGB, low bits noise", "8-bit grey", "16-bit grey", "8-bit RGBA", "one row",
             "odd crop, not contiguous"],
)  # fmt: skip
def test_every_kind_of_frame_reads_the_same_in_opencv_and_back_in_the_store(bikes: Path, kind: str) -> None:
    pixels = _kinds(bikes)[kind]
    data = encode_png(pixels)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), _as_cv2_reads(pixels))
    if pixels.dtype == np.uint8:  # Pillow reads 16-bit colour as 8 bits
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    back = read_own_png(data)
    assert back is not None and back.dtype.itemsize == pixels.dtype.itemsize
    assert np.array_equal(back, pixels)


def test_a_png_from_another_program_is_read_by_the_general_reader(bikes: Path) -> None:
    frame = _bikes_frame(bikes)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a watercolour street, Steps: 20")  # as the WebUI saves what it made
    with_text = io.BytesIO()
    Image.fromarray(frame).save(with_text, format="PNG", pnginfo=info)
    adaptive = cv2.imencode(".png", frame[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    palette = io.BytesIO()
    Image.fromarray(frame).quantize(16).save(palette, format="PNG")
    expected_palette = np.asarray(Image.open(io.BytesIO(palette.getvalue())).convert("RGB"))
    for data, expected in ((with_text.getvalue(), frame), (adaptive, frame), (palette.getvalue(), expected_palette)):
        assert read_own_png(data) is None
        assert np.array_equal(decode_png(data), expected / np.float32(255))


def test_a_damaged_frame_is_refused_not_read_as_other_pixels(bikes: Path) -> None:
    data = encode_png(_bikes_frame(bikes).astype(np.uint16) * 257)
    assert np.array_equal(decode_png(data) * 65535, _bikes_frame(bikes).astype(np.float32) * 257)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # inside the pixel data
    for damaged in (data[:30], data[: len(data) // 2], data[:-12], bytes(flipped)):
        assert read_own_png(damaged) is None
        with pytest.raises(OSError):
            decode_png(damaged)
