"""Colour correction as modules.processing does it (A1111 v1.10.1 and Forge): the generated image's
LAB histograms matched to the target's (skimage.exposure.match_histograms on uint8, whose float
result is truncated back into uint8), then blendmodes' LUMINOSITY blend with the generated image
(the corrected colours, the generated image's luminosity). Written with numpy alone so that CI
needs neither skimage nor blendmodes (whose 2022 release, the WebUIs' pin, wants numpy < 2);
tests/real_webui checks it against the real function, pixel for pixel."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def setup_color_correction(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.copy()), cv2.COLOR_RGB2LAB)


def _match_channel(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """skimage's _match_cumulative_cdf for unsigned integers."""
    src_counts = np.bincount(source.reshape(-1))
    tmpl_counts = np.bincount(template.reshape(-1))
    tmpl_values = np.nonzero(tmpl_counts)[0]
    tmpl_counts = tmpl_counts[tmpl_values]
    src_quantiles = np.cumsum(src_counts) / source.size
    tmpl_quantiles = np.cumsum(tmpl_counts) / template.size
    return np.interp(src_quantiles, tmpl_quantiles, tmpl_values)[source.reshape(-1)].reshape(source.shape)


def _lum(colours: np.ndarray) -> np.ndarray:
    return colours[:, :, 0] * 0.299 + colours[:, :, 1] * 0.587 + colours[:, :, 2] * 0.114


def _set_lum(colours: np.ndarray, luminosity: np.ndarray) -> np.ndarray:
    """blendmodes' _setLum: shift to the new luminosity, then pull out-of-gamut pixels towards
    it, first below 0 and then (from the result of the first) above 1, as its per-pixel loop does."""
    c = colours + (luminosity - _lum(colours))[:, :, None]
    lum = _lum(c)[:, :, None]
    low, high = c.min(axis=2)[:, :, None], c.max(axis=2)[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(low < 0, lum + (c - lum) * lum / (lum - low), c)
        c = np.where(high > 1, lum + (c - lum) * (1 - lum) / (high - lum), c)
    return c


def apply_color_correction(correction: np.ndarray, original_image: Image.Image) -> Image.Image:
    lab = cv2.cvtColor(np.asarray(original_image), cv2.COLOR_RGB2LAB)
    matched = np.empty(lab.shape, dtype=lab.dtype)
    for channel in range(3):
        matched[..., channel] = _match_channel(lab[..., channel], correction[..., channel])
    corrected = cv2.cvtColor(matched, cv2.COLOR_LAB2RGB).astype("uint8")
    # blendLayers(corrected, original, LUMINOSITY) with both layers opaque
    background = corrected.astype(np.float64) / 255
    foreground = np.asarray(original_image.convert("RGB")).astype(np.float64) / 255
    blended = np.clip(_set_lum(background, _lum(foreground)), 0, 1)
    return Image.fromarray((blended * 255).astype(np.uint8)).convert("RGB")
