"""Blending maths: normalised temporal weights, float batch blend, superimpose within masks."""

from __future__ import annotations

import numpy as np
import pytest

from lib_videoloop.blend import batch_blend, difference_superimpose, superimpose, temporal_superimpose, window_weights


def test_window_weights_renormalise_at_the_ends() -> None:
    assert window_weights([1, 2, 1], 0, 5) == [(0, 2 / 3), (1, 1 / 3)]
    assert window_weights([1, 2, 1], 2, 5) == [(1, 0.25), (2, 0.5), (3, 0.25)]
    assert window_weights([1, 2, 1], 4, 5) == [(3, 1 / 3), (4, 2 / 3)]
    assert window_weights([1], 3, 5) == [(3, 1.0)]
    assert window_weights([1, 0, 1], 0, 1) == [(0, 1.0)]  # only a zero-weight frame left


def test_temporal_superimpose_is_a_weighted_mean() -> None:
    frames = {j: np.full((2, 2, 3), j / 10, np.float32) for j in range(5)}
    out = temporal_superimpose(frames, window_weights([1, 2, 1], 2, 5))
    assert np.allclose(out, 0.2)
    out = temporal_superimpose(frames, window_weights([0, 1, 3], 2, 5))
    assert np.allclose(out, (0.2 + 3 * 0.3) / 4)


def test_batch_blend_stays_in_float() -> None:
    # Eight images whose 8-bit chained blending would drift; the float mean is exact.
    images = [np.full((1, 1, 3), v / 255, np.float32) for v in (1, 2, 2, 2, 2, 2, 2, 2)]
    assert batch_blend(images)[0, 0, 0] == pytest.approx(15 / 8 / 255, rel=1e-5)


def test_superimpose_alpha_and_mask() -> None:
    base = np.zeros((2, 2, 3), np.float32)
    gen = np.ones((2, 2, 3), np.float32)
    assert np.allclose(superimpose(base, gen, 0.25), 0.25)
    assert superimpose(base, gen, 0.0) is base
    mask = np.array([[1, 0], [0, 1]], np.float32)
    out = superimpose(base, gen, 0.5, mask)
    assert out[0, 0, 0] == 0.5 and out[0, 1, 0] == 0.0 and out[1, 1, 0] == 0.5


def test_difference_mask_keeps_moving_parts_of_the_current_frame() -> None:
    frames = {0: np.zeros((4, 4, 3), np.float32), 1: np.full((4, 4, 3), 0.5, np.float32)}
    refs = {0: np.zeros((4, 4, 3), np.float32), 1: np.zeros((4, 4, 3), np.float32)}
    refs[0][:, 2:] = 1.0  # the right half moved between the reference frames
    out = difference_superimpose(frames, refs, 1, [(0, 0.5), (1, 0.5)], threshold=24)
    assert np.allclose(out[:, 0], 0.25)  # still: averaged with the neighbour
    assert np.allclose(out[:, 3], 0.5)  # moving: the current frame only
