"""The patch matcher and patch blending: known fields on textures, identity, and flicker removed
from a real clip with the bench's texture flicker."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import open_source
from lib_videoloop.metrics import psnr
from lib_videoloop.patch_blend import patch_blend
from lib_videoloop.patchmatch import compose, flow_start, invert, nearest_field, remap


def texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def offsets(field: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, h, w = field.shape
    return field[:, 0] - torch.arange(w).float(), field[:, 1] - torch.arange(h).float()[:, None]


@pytest.mark.parametrize("shift", [(3, -5), (-17, 22)])
def test_a_translated_images_field_is_the_shift_away_from_the_borders(shift: tuple[int, int]) -> None:
    source = texture(160, 200)
    target = torch.roll(source, shifts=shift, dims=(2, 3))  # target(y, x) = source(y - dy, x - dx)
    field, error = nearest_field(source, target)
    dx, dy = offsets(field)
    inner = (slice(None), slice(30, -30), slice(30, -30))
    assert bool((dx[inner] == -shift[1]).all()) and bool((dy[inner] == -shift[0]).all())
    assert float(error[inner].max()) < 1e-6


def test_a_batch_of_pairs_is_matched_at_once_each_with_its_own_field() -> None:
    sources = torch.cat([texture(96, 128, 1), texture(96, 128, 2)])
    targets = torch.cat([torch.roll(sources[:1], (2, 4), (2, 3)), torch.roll(sources[1:], (-6, 1), (2, 3))])
    field, _ = nearest_field(sources, targets)
    dx, dy = offsets(field)
    inner = (slice(20, -20), slice(20, -20))
    assert bool((dx[0][inner] == -4).all()) and bool((dy[0][inner] == -2).all())
    assert bool((dx[1][inner] == -1).all()) and bool((dy[1][inner] == 6).all())


def test_remapping_a_frame_onto_itself_is_the_identity() -> None:
    guide = texture(64, 80, 3)
    style = torch.rand(1, 4, 64, 80, generator=torch.Generator().manual_seed(0))  # any channels
    field, error = nearest_field(guide, guide)
    assert float(error.max()) < 1e-6
    assert torch.allclose(remap(style, field), style, atol=1e-6)


def test_large_frames_matched_and_remapped_in_bands_of_rows_come_out_as_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Frames larger than a tile go through in bands of rows: no seams where two bands meet.
    source, target = texture(72, 96, 4), torch.roll(texture(72, 96, 4), (3, -2), (2, 3))
    style = torch.rand(1, 4, 72, 96, generator=torch.Generator().manual_seed(1))
    whole_field, whole_error = nearest_field(source, target, seed=3)
    whole = remap(style, whole_field)
    monkeypatch.setattr("lib_videoloop.patchmatch.TILE_PIXELS", {"cpu": 96 * 7})  # bands of 7 rows
    field, error = nearest_field(source, target, seed=3)
    assert torch.equal(field, whole_field) and torch.equal(error, whole_error)
    assert torch.allclose(remap(style, field), whole, atol=1e-6)


def test_a_start_from_the_flow_is_refined_to_the_match() -> None:
    source = texture(96, 128, 4)
    target = torch.roll(source, shifts=(4, 7), dims=(2, 3))
    rough = torch.zeros(1, 2, 96, 128)
    rough[:, 0], rough[:, 1] = -6.0, -5.0  # a flow one pixel off in each direction
    field, _ = nearest_field(source, target, start=flow_start(rough))
    dx, dy = offsets(field)
    assert bool((dx[:, 20:-20, 20:-20] == -7).all()) and bool((dy[:, 20:-20, 20:-20] == -4).all())


def test_two_fields_composed_lead_through_the_middle_frame() -> None:
    """Fast mode starts a long match from two short ones composed: frame c to b, then b to a,
    is c to a."""
    a = texture(120, 150, 5)
    b = torch.roll(a, shifts=(2, -3), dims=(2, 3))
    c = torch.roll(b, shifts=(-5, 4), dims=(2, 3))
    b_to_a, _ = nearest_field(a, b)
    c_to_b, _ = nearest_field(b, c)
    dx, dy = offsets(compose(c_to_b, b_to_a))
    inner = (slice(None), slice(30, -30), slice(30, -30))
    assert bool((dx[inner] == -1).all()) and bool((dy[inner] == 3).all())
    field, error = nearest_field(a, c, start=compose(c_to_b, b_to_a), iterations=1, jump=2)
    assert bool((offsets(field)[0][inner] == -1).all()) and float(error[inner].max()) < 1e-6


def test_a_field_inverted_leads_back_and_takes_the_fallback_where_nothing_matched() -> None:
    """Fast mode's second sweep starts each neighbour match from the first sweep's, inverted:
    b to a out of a to b is the opposite shift; what no pixel of a matched (b's side that a
    does not show) takes the fallback's match."""
    a = texture(120, 150, 6)
    b = torch.roll(a, shifts=(3, -4), dims=(2, 3))
    a_to_b, _ = nearest_field(b, a)  # a's pixel (x, y) is b's (x - 4, y + 3)
    fallback = torch.full_like(a_to_b, -7.0)
    inverted = invert(a_to_b, fallback)
    dx, dy = offsets(inverted)
    inner = (slice(None), slice(30, -30), slice(30, -30))
    # A pixel that several of a's matched takes the last: near enough everywhere, the shift.
    assert float(((dx[inner] == 4) & (dy[inner] == -3)).float().mean()) > 0.99
    unmatched = inverted[:, 0] == -7.0
    assert int(unmatched.sum()) > 0 and bool((inverted[:, 1][unmatched] == -7.0).all())
    assert not bool(unmatched[inner].any())
    # and the one light round that fast mode gives it makes it the shift everywhere
    field, _ = nearest_field(a, b, start=inverted, iterations=1, jump=2, search_radius=4)
    dx, dy = offsets(field)
    assert bool((dx[inner] == 4).all()) and bool((dy[inner] == -3).all())


def test_patch_blending_removes_flicker_and_keeps_the_picture(tmp_path: Path, bikes: Path) -> None:
    """bikes.mp4 with the bench's texture flicker (a new smooth pattern per frame): blended
    along the clean frames' matches, the frame-to-frame change of the error falls to a fraction,
    the frames come closer to the clean ones, and fast mode is within a few percent of exact."""
    clean = [resize_frame(f.image, 160, 68) for f in open_source(bikes, start_frame=60, max_frames=10)]
    rng = np.random.default_rng(0)
    noisy = []
    for frame in clean:
        pattern = cv2.GaussianBlur(rng.standard_normal(frame.shape).astype(np.float32), (0, 0), 4)
        noisy.append(np.clip(frame + 0.06 * pattern / pattern.std(), 0, 1).astype(np.float32))

    def blended(mode: str) -> list[np.ndarray]:
        (tmp_path / mode).mkdir()
        chain = FlowFolder(tmp_path / mode, clean.__getitem__, len(clean)).chain()
        return list(patch_blend(noisy.__getitem__, clean.__getitem__, len(clean), chain, window=7, mode=mode))

    def change(frames: list[np.ndarray]) -> float:  # flicker: how much the error moves between frames
        errors = [f - c for f, c in zip(frames, clean, strict=True)]
        return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(errors)]))

    fast, exact = blended("fast"), blended("exact")
    assert len(fast) == len(exact) == len(clean)
    assert change(fast) < 0.5 * change(noisy)
    assert (
        np.mean([psnr(a, b) for a, b in zip(fast, clean, strict=True)])
        > np.mean([psnr(a, b) for a, b in zip(noisy, clean, strict=True)]) + 2
    )
    assert abs(change(fast) - change(exact)) < 0.05 * change(exact)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cpu_and_cuda_find_the_same_field_and_remap() -> None:
    source = texture(120, 160, 5)
    target = torch.roll(source, shifts=(5, -3), dims=(2, 3))
    cpu_field, cpu_error = nearest_field(source, target)
    gpu_field, gpu_error = nearest_field(source.cuda(), target.cuda())
    assert torch.equal(cpu_field, gpu_field.cpu())
    assert torch.allclose(cpu_error, gpu_error.cpu(), atol=1e-5)
    assert torch.allclose(remap(source, cpu_field), remap(source.cuda(), gpu_field).cpu(), atol=1e-5)


class TextureFlicker:
    """img2img's flicker without a model: the init image plus a smooth pattern drawn from the seed."""

    name = "texture-flicker"
    wants_input_frames = False

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        pass

    def generate(self, request) -> list[np.ndarray]:
        rng = np.random.default_rng(request.seed)
        pattern = cv2.GaussianBlur(rng.standard_normal(request.init_image.shape).astype(np.float32), (0, 0), 4)
        image = np.clip(request.init_image + 0.06 * pattern / pattern.std(), 0, 1).astype(np.float32)
        return [image] * request.image_count


def test_a_run_with_the_patch_blend_pass_makes_its_video_from_steadier_frames(tmp_path: Path, bikes: Path) -> None:
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine
    from lib_videoloop.media.store import FrameStore

    def run(**kw) -> tuple[FrameStore, list[np.ndarray]]:
        settings = Settings(
            input_directory=str(bikes), output_directory=str(tmp_path / str(len(kw))), start_frame=60, max_frames=8,
            width=160, height=68, loop_n=1, superimpose_alpha=1.0, fix_seed=False, seed=5,
            temporal_superimpose_alpha_list="1", **kw,
        )  # fmt: skip
        result = Engine(settings, TextureFlicker()).run()
        store = FrameStore.open(result.run_dir)
        return store, [store.read_frame(result.frames_folder, i) for i in range(8)]

    _, plain = run()
    store, blended = run(video_post_process_method="patch blend", video_post_process_alpha=1.0, patch_blend_window=5)
    assert store.folder_complete("loop_001_denoised")
    clean = [store.read_frame("input", i) for i in range(8)]

    def change(frames: list[np.ndarray]) -> float:
        errors = [f - c for f, c in zip(frames, clean, strict=True)]
        return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(errors)]))

    assert change(blended) < 0.5 * change(plain)
    assert len(list(store.root.glob("*.mp4"))) == 1  # the video, made from the blended frames
