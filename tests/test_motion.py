"""The motion-aware methods follow motion: a pan is blended without ghosting, a cut is not crossed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lib_videoloop.config import FILTER_METHOD, FLOW_METHOD, TEMPORAL_METHODS, Settings
from lib_videoloop.motion import FlowEstimator, PairFlow
from lib_videoloop.smooth import smooth_frames

SHIFT = (3, 2)  # pixels per frame, x and y
H, W, N, MARGIN = 120, 160, 9, 32
GAINS = [1.0, 0.9, 1.08, 0.95, 1.05, 0.92, 1.1, 0.97, 1.02]  # a brightness flicker, the same everywhere


def texture(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.5)
    return np.clip((big - big.mean()) * 6 + 0.5, 0.05, 0.95).astype(np.float32)


def clip(moving: bool, seed: int = 0) -> list[np.ndarray]:
    canvas = texture(seed, H + N * SHIFT[1], W + N * SHIFT[0])
    frames = []
    for i in range(N):
        x, y = (i * SHIFT[0], i * SHIFT[1]) if moving else (0, 0)
        frames.append(np.ascontiguousarray(canvas[y : y + H, x : x + W]) * np.float32(GAINS[i]))
    return frames


def smooth(frames: list[np.ndarray], method: str) -> list[np.ndarray]:
    weights = "1" if method == FILTER_METHOD else "1,2,3,2,1"
    s = Settings(
        temporal_superimpose_method=method, temporal_superimpose_alpha_list=weights, temporal_filter_strength=0.7
    )
    return list(smooth_frames(iter(frames), len(frames), s))


def pan_error(method: str) -> float:
    """Mean difference, away from the borders, between the smoothed pan and the smoothed still
    clip moved by the same amount: zero when the method follows the pan exactly."""
    panned, still = smooth(clip(True), method), smooth(clip(False), method)
    errors = []
    for i in range(2, N - 2):
        dx, dy = i * SHIFT[0], i * SHIFT[1]
        # frame i of the pan shows the canvas from (dx, dy): its pixel (y, x) is the still's (y + dy, x + dx)
        inner = (slice(MARGIN, H - MARGIN - dy), slice(MARGIN, W - MARGIN - dx))
        moved = (slice(MARGIN + dy, H - MARGIN), slice(MARGIN + dx, W - MARGIN))
        errors.append(float(np.abs(panned[i][inner] - still[i][moved]).mean()))
    return float(np.mean(errors))


@pytest.mark.parametrize("method", [FLOW_METHOD, FILTER_METHOD])
def test_a_pan_is_blended_like_the_still_clip_without_ghosting(method: str) -> None:
    flicker = float(np.mean([abs(g - 1) for g in GAINS]))
    follows = pan_error(method)
    ghosts = pan_error("simple")
    assert ghosts > 0.05, "the pan is large enough for the simple mix to ghost"
    assert follows < 0.1 * ghosts
    assert follows < 0.01  # interpolation error only, 2.5 of 255 levels
    # and the flicker was smoothed, not just left alone
    still = smooth(clip(False), method)
    levels = [float(f.mean() / clip(False)[0].mean()) for f in still]
    assert np.mean([abs(v - np.mean(levels)) for v in levels]) < 0.6 * flicker


@pytest.mark.parametrize("method", TEMPORAL_METHODS)
def test_no_method_blends_across_a_scene_cut(method: str) -> None:
    first, second = clip(True, seed=1)[:5], clip(True, seed=2)[:4]
    whole = smooth(first + second, method)
    alone = smooth(first, method)
    # the last frame before the cut is made from its own scene only, as if the clip ended there
    np.testing.assert_allclose(whole[4], alone[4], atol=1e-5)
    assert np.abs(whole[5] - smooth(second, method)[0]).max() < 1e-5


def test_a_cut_is_told_from_fast_motion() -> None:
    rng = np.random.default_rng(3)
    canvas = cv2.GaussianBlur(rng.random((H + 40, W + 80, 3)).astype(np.float32), (0, 0), 8)
    canvas = np.clip((canvas - canvas.mean()) * 12 + 0.5, 0, 1)
    estimator = FlowEstimator()
    fast = PairFlow.estimate(estimator, canvas[:H, :W], np.ascontiguousarray(canvas[8 : 8 + H, 16 : 16 + W]))
    cut = PairFlow.estimate(estimator, canvas[:H, :W], texture(4, H, W))
    assert not fast.cut and fast.matched > 0.8
    assert cut.cut


def test_stored_flows_read_back_bit_for_bit_and_a_damaged_file_is_made_again(tmp_path) -> None:
    from lib_videoloop.media.flows import FlowFolder

    frames = clip(True)
    made = FlowFolder(tmp_path, frames.__getitem__, N).pair(0)
    path = FlowFolder(tmp_path, frames.__getitem__, N).path(0)
    read = FlowFolder(tmp_path, lambda _i: pytest.fail("read back, not computed"), N).pair(0)
    for name in ("forward", "backward", "valid_forward", "valid_backward", "matched"):
        assert np.array_equal(getattr(made, name), getattr(read, name)), name
    path.write_bytes(path.read_bytes()[:100])  # cut short, e.g. by a disk error
    again = FlowFolder(tmp_path, frames.__getitem__, N).pair(0)
    assert np.array_equal(again.forward, made.forward) and path.stat().st_size > 100


def test_trusted_pixels_follow_their_definition_pixel_by_pixel() -> None:
    """Where a blend may follow the flow (blend_mask, as its docstring defines it) and where the
    flicker metric trusts it (valid_mask, as DESIGN.md defines it), checked against those rules
    written out pixel by pixel. Whole-pixel flows land on pixels, so the backward flow is read
    there without interpolation."""
    from lib_videoloop.motion import blend_mask, valid_mask

    h, w = 24, 28
    rng = np.random.default_rng(5)
    forward = np.zeros((h, w, 2), np.float32)
    # four motions, two of them a pixel apart (a soft motion boundary), and one outlier
    forward[:12, :14], forward[:12, 14:], forward[12:, :14], forward[12:, 14:] = (4, 3), (-2, 5), (1, -1), (0, -1)
    forward[5, 5] = (-6, 2)
    backward = np.zeros_like(forward)
    for y in range(h):
        for x in range(w):
            tx, ty = x + int(forward[y, x, 0]), y + int(forward[y, x, 1])
            if 0 <= tx < w and 0 <= ty < h:
                backward[ty, tx] = -forward[y, x]  # the way back, where nothing else lands there
    off = rng.random((h, w)) < 0.5
    backward[off] += rng.integers(-2, 3, (off.sum(), 2)).astype(np.float32)  # by 0 to 2 px each way
    forward[:3, 16:24], backward[0, 16:24] = (0, -3), (0, 3)  # out of the frame, agreeing with its edge
    grad = [np.gradient(forward[..., c].astype(np.float64)) for c in range(2)]
    blend, valid = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            fx, fy = forward[y, x]
            tx, ty = x + fx, y + fy
            if not (0 <= tx <= w - 1 and 0 <= ty <= h - 1):
                continue
            bx, by = backward[int(ty), int(tx)]
            fwd_sq, back_sq, mismatch_sq = fx**2 + fy**2, bx**2 + by**2, (fx + bx) ** 2 + (fy + by) ** 2
            blend[y, x] = mismatch_sq <= 0.05 * (fwd_sq + back_sq) + 1.0
            boundary = sum(g[0][y, x] ** 2 + g[1][y, x] ** 2 for g in grad) > 0.01 * fwd_sq + 0.002
            valid[y, x] = mismatch_sq <= 0.01 * (fwd_sq + back_sq) + 0.5 and not boundary
    assert 0 < blend.sum() < h * w and 0 < valid.sum() < blend.sum()  # each rule both keeps and drops
    assert np.array_equal(blend_mask(forward, backward), blend)
    assert np.array_equal(valid_mask(forward, backward), valid)


def test_a_flow_file_gives_back_the_pixels_the_report_counts_also_from_runs_made_before(tmp_path, bikes) -> None:
    """flows/ keeps, beside the flows, the pixels where the warp error counts (the report's
    valid_mask): every loop's report reads them instead of working them out again. A run folder
    made before they were kept (its files b"VLF1", without them) still resumes and reports the
    same: they are worked out when such a file is read."""
    import struct

    from lib_videoloop.media import flows as flow_files
    from lib_videoloop.media.resize import resize_frame
    from lib_videoloop.media.sources import open_source
    from lib_videoloop.motion import valid_mask

    frames = [resize_frame(f.image, 160, 120) for f in open_source(bikes, max_frames=3)]  # riders: motion edges
    pair = PairFlow.estimate(FlowEstimator(), frames[0], frames[1])
    assert np.array_equal(pair.measured, valid_mask(pair.forward, pair.backward))
    assert 0.2 < pair.measured.mean() < 1 and not np.array_equal(pair.measured, pair.valid_forward)
    h, w = pair.measured.shape
    older = b"".join([
        struct.pack("<4sIId", b"VLF1", h, w, pair.matched),
        pair.forward.astype("<f2").tobytes(),
        pair.backward.astype("<f2").tobytes(),
        np.packbits(np.concatenate([pair.valid_forward.ravel(), pair.valid_backward.ravel()])).tobytes(),
    ])  # fmt: skip
    folder = flow_files.FlowFolder(tmp_path, lambda i: frames[i], len(frames))
    folder.path(0).write_bytes(older)
    folder.path(1).write_bytes(flow_files._encode(pair))
    for read in (folder.pair(0), folder.pair(1)):
        assert np.array_equal(read.forward, pair.forward) and np.array_equal(read.backward, pair.backward)
        assert np.array_equal(read.valid_forward, pair.valid_forward)
        assert np.array_equal(read.valid_backward, pair.valid_backward)
        assert np.array_equal(read.measured, pair.measured) and read.matched == pair.matched
