"""Colour correction as modules.processing does it (histogram matching in LAB), simplified."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def setup_color_correction(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2LAB)


def apply_color_correction(correction: np.ndarray, original_image: Image.Image) -> Image.Image:
    lab = cv2.cvtColor(np.asarray(original_image.convert("RGB")), cv2.COLOR_RGB2LAB).astype(np.float32)
    target = correction.astype(np.float32)
    for c in range(3):  # match mean and spread per channel (the real one matches histograms)
        src = lab[..., c]
        lab[..., c] = (src - src.mean()) / (src.std() + 1e-6) * target[..., c].std() + target[..., c].mean()
    return Image.fromarray(cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB))
