"""The three WebUI resize modes, against the WebUI's own geometry done on PIL RGB images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib_videoloop.media.resize import resize_frame


def webui_resize(mode: int, im: Image.Image, width: int, height: int) -> Image.Image:
    """modules.images.resize_image (A1111 / Forge) without an upscaler, restated for the test."""
    if mode == 0:
        return im.resize((width, height), Image.LANCZOS)
    ratio, src_ratio = width / height, im.width / im.height
    if mode == 1:
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
    else:
        src_w = width if ratio < src_ratio else im.width * height // im.height
        src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = im.resize((src_w, src_h), Image.LANCZOS)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2:
        if ratio < src_ratio:
            fill = height // 2 - src_h // 2
            if fill > 0:
                res.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
                res.paste(
                    resized.resize((width, fill), box=(0, resized.height, width, resized.height)), box=(0, fill + src_h)
                )
        elif ratio > src_ratio:
            fill = width // 2 - src_w // 2
            if fill > 0:
                res.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
                res.paste(
                    resized.resize((fill, height), box=(resized.width, 0, resized.width, height)), box=(fill + src_w, 0)
                )
    return res


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("src_size,dst_size", [((64, 40), (32, 32)), ((40, 64), (48, 24)), ((33, 17), (50, 70))])
def test_matches_webui_geometry(mode: int, src_size: tuple[int, int], dst_size: tuple[int, int]) -> None:
    import cv2

    rng = np.random.default_rng(3)
    # A smooth picture: what is compared is geometry (where things land), not ringing at edges.
    noise = rng.random((src_size[1], src_size[0], 3)).astype(np.float32)
    arr = (cv2.GaussianBlur(noise, (0, 0), 2.0) * 4 - 1.5).clip(0, 1)
    arr = (arr * 255).astype(np.uint8)
    ours = resize_frame(arr.astype(np.float32) / 255, dst_size[0], dst_size[1], mode)
    theirs = np.asarray(webui_resize(mode, Image.fromarray(arr), *dst_size), np.float32) / 255
    assert ours.shape == theirs.shape
    # Float resampling versus 8-bit: the same picture to within rounding.
    assert np.abs(ours - theirs).mean() < 0.01
    assert np.abs(ours - theirs).max() < 0.05
