"""The latent deflicker: x0 estimates changed inside a real diffusers sampler, blended across a
call's frames, in a run, and through the WebUI's sampler callbacks only for the run's calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_engine import frames_of, small

from lib_videoloop.backends import GenerationRequest
from lib_videoloop.backends.diffusers_backend import DiffusersBackend
from lib_videoloop.backends.x0_hook import x0_transform
from lib_videoloop.config import Settings, deflicker_steps
from lib_videoloop.engine import Engine
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.latent_deflicker import CallDeflicker, blend_call, chosen
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import open_source
from lib_videoloop.metrics import measure


def _request(init: np.ndarray, seed: int, **kw) -> GenerationRequest:
    h, w = init.shape[:2]
    base = dict(prompt="a rabbit", negative_prompt="", seed=seed, subseed=0, subseed_strength=0.0,
                denoising_strength=0.6, steps=10, cfg_scale=7.0, batch_size=1, n_iter=1)  # fmt: skip
    base.update(kw)
    return GenerationRequest(init_image=init, mask=None, width=w, height=h, **base)


def _clip(path: Path, count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    return [resize_frame(f.image, width, height) for f in open_source(path, max_frames=count)]


@pytest.mark.parametrize(
    ("sampler", "prediction"),
    [("DDIM", "epsilon"), ("Euler", "epsilon"), ("DPM++ 2M", "epsilon"), ("DDIM", "v_prediction"), ("DDIM", "sample")],
)
def test_an_x0_changed_at_the_last_step_is_the_image_the_sampler_ends_on(
    carphone: Path, sampler: str, prediction: str
) -> None:
    """The hook's arithmetic, through three schedulers and diffusers' three prediction types: x0
    handed back unchanged (as a new tensor) leaves the images as they were; a chosen x0 at the
    last step is what the sampler returns."""
    backend = DiffusersBackend("tiny-random", sampler_name=sampler, device="cpu")
    pipe = backend.img2img
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction)
    frames = _clip(carphone, 2)
    requests = [_request(frame, 7 + i) for i, frame in enumerate(frames)]
    plain = backend.generate_frames(requests)
    vae = pipe.vae
    grey = torch.full((2, 3, 48, 64), 0.2)
    target = vae.encode(grey * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    expected = (vae.decode(target / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    expected = expected.permute(0, 2, 3, 1).detach().numpy()
    seen: list[tuple[int, int]] = []

    def same(x0, step, total):
        seen.append((step, total))
        return x0.clone()

    def towards_grey(x0, step, total):
        return target.to(x0) if step == total - 1 else x0

    with x0_transform(pipe, same, 2, 7.0):
        unchanged = backend.generate_frames(requests)
    with x0_transform(pipe, towards_grey, 2, 7.0):
        ended = backend.generate_frames(requests)
    assert [s for s, _ in seen] == list(range(6)) and {t for _, t in seen} == {6}  # 10 steps x 0.6
    for a, b in zip(plain, unchanged, strict=True):
        assert np.abs(a[0] - b[0]).max() < 2e-3
    for image, want in zip(ended, expected, strict=True):
        assert np.abs(image[0] - want).max() < 2e-2
    assert np.abs(plain[0][0] - expected[0]).mean() > 0.05  # the grey ending is not what it made anyway
    after = backend.generate_frames(requests)  # the hook is gone with its block
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain, after, strict=True))


def test_steps_are_counted_from_one_and_from_the_end() -> None:
    assert deflicker_steps("1, -1, 1") == (1, -1)
    assert [s for s in range(6) if chosen((1, -1), s, 6)] == [0, 5]
    assert not any(chosen((9,), s, 6) for s in range(6))  # beyond the steps sampled: nothing
    for text, message in (("0", "count from 1"), ("-1, x", "'x' is not a step number"), ("5000", "up to 1000")):
        with pytest.raises(VideoLoopError, match=message):
            deflicker_steps(text)


def test_frames_of_a_call_are_blended_through_their_guides_matches() -> None:
    """Three frames of a moving texture, each with its own colour cast: blended, each keeps its
    own content where it was (matched through the guides) and the casts come together."""
    rng = np.random.default_rng(0)
    import cv2

    texture = cv2.GaussianBlur(rng.random((80, 120, 3)).astype(np.float32), (0, 0), 1.5)
    guides = torch.stack([torch.from_numpy(np.roll(texture, 3 * i, axis=1)).permute(2, 0, 1) for i in range(3)])
    casts = torch.tensor([0.85, 1.0, 1.15])[:, None, None, None]
    blended = blend_call(guides * casts, guides)
    inner = (slice(None), slice(None), slice(10, -10), slice(20, -20))
    assert torch.allclose(blended[inner], guides[inner], atol=0.02)
    assert float((guides * casts - guides)[inner].abs().mean()) > 0.05


def test_a_run_with_the_latent_deflicker_is_no_less_consistent(tmp_path: Path, carphone: Path, tiny_backend) -> None:
    kw = dict(max_frames=8, loop_n=2, frames_per_call=4, steps=10, width=96, height=64, resize_mode=0)
    plain = Engine(small(carphone, tmp_path / "plain", **kw), tiny_backend).run()
    deflickered = Engine(small(carphone, tmp_path / "on", latent_deflicker_steps="-1", **kw), tiny_backend).run()
    assert tiny_backend.last_deflicker is not None and tiny_backend.last_deflicker.applied == [4]  # 10 x 0.5 steps
    source = frames_of(plain.run_dir, "input")
    e_plain = measure(frames_of(plain.run_dir, plain.frames_folder), source, with_tof=False).e_warp
    e_on = measure(frames_of(deflickered.run_dir, deflickered.frames_folder), source, with_tof=False).e_warp
    assert e_on <= e_plain * 1.02, (e_on, e_plain)
    on = frames_of(deflickered.run_dir, deflickered.frames_folder)
    assert any(
        np.abs(a - b).max() > 1e-3 for a, b in zip(on, frames_of(plain.run_dir, plain.frames_folder), strict=True)
    )


def test_the_setting_needs_several_frames_per_call() -> None:
    for frames in (0, 1):
        with pytest.raises(VideoLoopError, match=r"frames_per_call.*must be 2 or more with latent_deflicker_steps"):
            Settings(input_directory="x", latent_deflicker_steps="-1", frames_per_call=frames).validate()
    Settings(input_directory="x", latent_deflicker_steps="-1", frames_per_call=2).validate()


def test_one_frame_per_call_leaves_the_images_alone(carphone: Path, tiny_backend) -> None:
    frame = _clip(carphone, 1)[0]
    assert np.array_equal(
        tiny_backend.generate_frames([_request(frame, 3, deflicker_steps=(1, -1))])[0][0],
        tiny_backend.generate_frames([_request(frame, 3)])[0][0],
    )


def test_call_deflicker_blends_image_k_of_each_frame_with_image_k_of_the_others() -> None:
    """A batch of two images per frame: the latent batch is frame-major, and batch item 0 of
    every frame is blended with item 0 of the others, never with item 1."""
    guides = [np.full((32, 32, 3), 0.5, np.float32)] * 3  # flat guides: every patch matches anywhere

    def identity(x):
        return x

    deflicker = CallDeflicker((-1,), guides, 2, identity, identity)
    x0 = torch.zeros(6, 3, 32, 32)
    x0[1::2] = 1.0  # item 1 of every frame is white, item 0 black
    out = deflicker(x0, 4, 5)
    assert float(out[0::2].max()) < 1e-6 and float(out[1::2].min()) > 1 - 1e-6
    assert deflicker(x0, 3, 5) is x0 and deflicker.applied == [4]
