"""Keyframe mode: which frames are generated, how the others are carried along the motion, and
where they are repaired; end to end through the engine with the tiny diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_engine import Recording, UsesInputFrames, frames_of, small

from conftest import flash_clip
from lib_videoloop.config import FILTER_METHOD, Settings
from lib_videoloop.engine import Engine
from lib_videoloop.errors import InterruptedRun, VideoLoopError
from lib_videoloop.keyframes import KeyframePlan, Propagation, choose
from lib_videoloop.media.store import FrameStore
from lib_videoloop.motion import FlowChain, FlowEstimator, PairFlow


def texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return (t - t.min()) / (t.max() - t.min())


def pan(
    count: int, step: tuple[int, int] = (3, 2), seed: int = 0, size: tuple[int, int] = (96, 128)
) -> list[np.ndarray]:
    h, w = size
    big = texture(h + step[1] * count, w + step[0] * count, seed)
    return [big[k * step[1] : k * step[1] + h, k * step[0] : k * step[0] + w].copy() for k in range(count)]


def chain_of(frames: list[np.ndarray]) -> FlowChain:
    estimator = FlowEstimator()
    return FlowChain(lambda i: PairFlow.estimate(estimator, frames[i], frames[i + 1]))


def styled(frame: np.ndarray) -> np.ndarray:
    """A deterministic 'style' that moves with the content, as a keyframe's generation does."""
    return np.ascontiguousarray(frame[..., ::-1] * 0.8 + 0.1)


@pytest.mark.parametrize("propagation_kind", ["optical flow", "patch match"])
def test_a_propagated_frame_is_the_keyframe_moved_along_a_known_pan(propagation_kind: str) -> None:
    from lib_videoloop.patch_blend import PatchBlender

    frames = pan(9)
    plan = KeyframePlan(9, [0, 8])
    chain = chain_of(frames)
    patches = PatchBlender(chain, frames.__getitem__) if propagation_kind == "patch match" else None
    propagation = Propagation(plan, chain, frames.__getitem__, lambda k: styled(frames[k]), patches)
    margin = 20  # what the pan brings in from outside the keyframes stays out of the comparison
    for i in (1, 4, 7):
        made = propagation.frame(i)
        assert made is not None
        out, unreached, _painted = made
        truth = styled(frames[i])
        error = np.abs(out - truth)[margin:-margin, margin:-margin].mean()
        unmoved = np.abs(styled(frames[0]) - truth)[margin:-margin, margin:-margin].mean()
        assert error < 0.01 and error < unmoved / 10, (i, error, unmoved)
        assert unreached[margin:-margin, margin:-margin].mean() < 0.01


def test_one_sided_frames_after_the_last_keyframe_follow_it() -> None:
    frames = pan(6)
    plan = KeyframePlan(6, [0])
    out, *_ = Propagation(plan, chain_of(frames), frames.__getitem__, lambda k: styled(frames[k])).frame(5)
    assert np.abs(out - styled(frames[5]))[24:-24, 24:-24].mean() < 0.01


def test_keyframes_every_n_frames_and_at_every_cut() -> None:
    frames = pan(7, seed=1) + pan(7, seed=2)  # a cut between frames 6 and 7
    plan = choose(Settings(input_directory="-", keyframe_mode="every n frames", keyframe_interval=4), frames, 14)
    assert plan.scene_starts == [0, 7]
    assert plan.keyframes == [0, 4, 7, 11]
    assert plan.sides(6) == [(4, 1.0)], "no frame is made from the far side of a cut"
    assert plan.sides(5) == [(4, 1.0)]
    assert plan.sides(9) == [(7, 0.5), (11, 0.5)]
    listed = choose(Settings(input_directory="-", keyframe_mode="listed frames", keyframe_frames="3, 10"), frames, 14)
    assert listed.keyframes == [0, 3, 7, 10], "each scene starts with a keyframe"


def test_keyframes_by_motion_follow_how_fast_the_content_changes() -> None:
    slow, fast = pan(20, step=(1, 0)), pan(20, step=(6, 3))
    settings = Settings(input_directory="-", keyframe_mode="by motion", keyframe_interval=30, keyframe_motion=0.1)
    slow_keys, fast_keys = choose(settings, slow, 20).keyframes, choose(settings, fast, 20).keyframes
    assert len(fast_keys) >= 3 * len(slow_keys), (slow_keys, fast_keys)
    assert (
        len(choose(Settings(input_directory="-", keyframe_mode="by motion", keyframe_interval=5), slow, 20).keyframes)
        >= 4
    )


class _Unchanged(UsesInputFrames):
    """Gives back each init image: where repairs fall depends on the reference frames alone."""

    wants_input_frames = False

    def generate(self, request):  # type: ignore[no-untyped-def]
        return [request.init_image] * request.image_count


def test_repairs_fall_where_the_moving_square_uncovered_the_background(tmp_path: Path) -> None:
    """A textured square goes right and comes back between keyframes (every 8 frames), standing
    at the same place in each keyframe: the background under that place is seen by no keyframe,
    so what a frame between them shows of it is new, and repairs go there and nowhere else."""
    h, w, side = 192, 256, 56
    background, square = texture(h, w, 3), 0.5 + 0.5 * texture(side, side, 4)
    x0, y0 = 60, 68

    def left(t: int) -> int:
        return x0 + round(40 * abs(np.sin(np.pi * t / 8)))  # 0, 15, 28, 37, 40, 37, ... px

    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(17):
        frame = background.copy()
        frame[y0 : y0 + side, left(t) : left(t) + side] = square
        Image.fromarray((frame * 255 + 0.5).astype(np.uint8)).save(folder / f"{t:04d}.png")
    settings = Settings(input_directory=str(folder), output_directory=str(tmp_path / "out"), loop_n=1, seed=7,
                        keyframe_mode="every n frames", save_every_loop=False)  # fmt: skip
    root = Engine(settings, _Unchanged()).run().run_dir
    assert json.loads((root / "keyframes.json").read_text())["keyframes"] == [0, 8, 16]
    repairs = sorted((root / "repair" / "loop_001").glob("*.png"))
    # New content is painted once and carried on: frames 1 and 3 of each span are repaired, and
    # the frames after them take the repaired background from them.
    assert len(repairs) >= 2, "frames between the keyframes show background no keyframe has"
    # 4 px of slack: the repair mask's own dilation and feather, and the flow's edge at the square.
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    inside = outside = 0
    for path in repairs:
        t = int(path.stem) - 1
        band = np.zeros((h, w), np.uint8)
        band[y0 : y0 + side, x0 : x0 + side] = 1  # under the square in both keyframes...
        band[y0 : y0 + side, left(t) : left(t) + side] = 0  # ...and not under it now
        band = cv2.dilate(band, grow).astype(bool)
        repaired = np.asarray(Image.open(path)) > 127
        inside += int((repaired & band).sum())
        outside += int((repaired & ~band).sum())
        assert (repaired & ~band).mean() <= 0.01, t
    assert inside / (inside + outside) >= 0.8


def test_listed_keyframes_are_checked_against_the_clip(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    with pytest.raises(VideoLoopError, match=r"keyframe_frames.*not a frame number"):
        Settings(input_directory="x", keyframe_mode="listed frames", keyframe_frames="0, ten").validate()
    with pytest.raises(VideoLoopError, match=r"keyframe_frames.*past the clip.s last frame, 4"):
        Engine(
            small(bikes, tmp_path / "out", keyframe_mode="listed frames", keyframe_frames="0, 5"), tiny_backend
        ).run()
    assert not (tmp_path / "out").exists()


def test_keyframe_mode_generates_keyframes_and_repairs_only(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    backend = Recording(tiny_backend)
    settings = small(bikes, tmp_path / "out", max_frames=9, keyframe_mode="every n frames", keyframe_interval=4,
                     repair_denoising_strength=0.8, save_every_loop=False)  # fmt: skip
    result = Engine(settings, backend).run()
    plan = json.loads((result.run_dir / "keyframes.json").read_text())
    keys = plan["keyframes"]
    assert keys[:1] == [0] and 4 in keys and len(keys) < 9
    repairs = sorted((result.run_dir / "repair" / "loop_002").glob("*.png"))
    full = [r for r in backend.requests if r.mask is None]
    inpainted = [r for r in backend.requests if r.mask is not None]
    assert len(full) == 2 * len(keys), "only keyframes are generated whole"
    assert all(r.denoising_strength == 0.8 for r in inpainted)
    loop2 = result.report["loops"][1]
    assert loop2["generations"] == len(keys) + len(repairs) and loop2["keyframes"] == len(keys)
    for path in repairs:  # each saved mask is the one the frame was inpainted with
        saved = np.asarray(Image.open(path)) / 255.0
        assert any(r.mask.shape == saved.shape and np.abs(r.mask - saved).max() <= 1 / 255 for r in inpainted)
    frames = frames_of(result.run_dir, "loop_002")
    assert all(f.shape == (48, 64, 3) for f in frames)


def test_patch_match_propagation_makes_the_in_betweens_of_a_run(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    """keyframe_propagation reaches the run: the same keyframes, in-betweens made another way."""
    runs = {}
    for kind in ("optical flow", "patch match"):
        settings = small(bikes, tmp_path / kind, max_frames=6, loop_n=1, keyframe_mode="every n frames",
                         keyframe_interval=5, keyframe_repair=False, keyframe_propagation=kind)  # fmt: skip
        result = Engine(settings, tiny_backend).run()
        runs[kind] = frames_of(result.run_dir, "loop_001")
    flow, patches = runs["optical flow"], runs["patch match"]
    assert np.array_equal(flow[0], patches[0]) and np.array_equal(flow[5], patches[5])  # keyframes 0 and 5
    assert all(not np.array_equal(a, b) for a, b in zip(flow[1:5], patches[1:5], strict=True))


def test_the_temporal_filter_leaves_no_scratch_when_the_last_frame_is_no_keyframe(
    tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    settings = small(bikes, tmp_path / "out", max_frames=10, keyframe_mode="every n frames", keyframe_interval=4,
                     temporal_superimpose_method=FILTER_METHOD, save_every_loop=False)  # fmt: skip
    root = Engine(settings, tiny_backend).run().run_dir
    assert json.loads((root / "keyframes.json").read_text())["keyframes"][-1] < 9
    assert not (root / "filter_pass").exists()


def test_keyframe_mode_resumes_to_identical_frames(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    common = dict(max_frames=9, keyframe_mode="every n frames", keyframe_interval=4, loop_n=2, save_every_loop=False,
                  fix_seed=False)  # fmt: skip
    straight = Engine(small(bikes, tmp_path / "a", **common), tiny_backend).run().run_dir
    calls = {"n": 0}

    def stop_among_the_in_betweens_of_loop_two() -> bool:
        calls["n"] += 1
        return calls["n"] == 9 + 5

    with pytest.raises(InterruptedRun) as stopped:
        Engine(
            small(bikes, tmp_path / "b", **common), tiny_backend, should_stop=stop_among_the_in_betweens_of_loop_two
        ).run()
    root = Path(str(stopped.value))
    assert 0 < len(FrameStore.open(root).complete_frames("loop_002")) < 9
    Engine.resume(root, tiny_backend).run()
    for folder in ("loop_001", "loop_002"):
        for a, b in zip(frames_of(straight, folder), frames_of(root, folder), strict=True):
            assert np.array_equal(a, b)
    assert (root / "keyframes.json").read_bytes() == (straight / "keyframes.json").read_bytes()


def test_a_keyframe_run_exports_for_ebsynth_and_other_runs_are_refused(
    tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    from lib_videoloop.cli import main

    settings = small(bikes, tmp_path / "out", max_frames=9, keyframe_mode="listed frames", keyframe_frames="0, 5",
                     keyframe_repair=False, save_every_loop=False)  # fmt: skip
    root = Engine(settings, tiny_backend).run().run_dir
    assert main(["ebsynth", str(root), "-o", str(tmp_path / "project")]) == 0
    project = tmp_path / "project"
    assert sorted(p.name for p in (project / "img2img_key").iterdir()) == ["00001.png", "00006.png"]
    assert len(list((project / "video_frame").iterdir())) == 9
    key = np.asarray(Image.open(project / "img2img_key" / "00006.png")) / 255.0
    assert np.abs(key - frames_of(root, "loop_002")[5]).max() <= 0.5 / 255 + 1e-6
    assert main(["ebsynth", str(root), "-o", str(project)]) == 2, "an existing project is never overwritten"
    plain = Engine(small(bikes, tmp_path / "plain", max_frames=3, loop_n=1), tiny_backend).run().run_dir
    assert main(["ebsynth", str(plain), "-o", str(tmp_path / "p2")]) == 2
    assert not (tmp_path / "p2").exists()


def test_the_preview_chooses_the_keyframes_the_run_chooses(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    from lib_videoloop.keyframe_run import preview_plan

    settings = small(bikes, tmp_path / "out", max_frames=40, loop_n=1, keyframe_mode="by motion", keyframe_interval=12,
                     keyframe_motion=0.05, keyframe_repair=False, save_every_loop=False)  # fmt: skip
    previewed = preview_plan(settings)
    root = Engine(settings, tiny_backend).run().run_dir
    chosen = json.loads((root / "keyframes.json").read_text())
    assert chosen == previewed.to_dict()
    assert len(chosen["keyframes"]) > 40 // 12 + 1, "the motion, not only the interval, placed keyframes"


def test_the_panel_previews_where_the_keyframes_fall(carphone: Path, bikes: Path) -> None:
    from conftest import panel_values
    from lib_videoloop.webui.panel import preview_keyframes

    values = panel_values(
        input_directory=str(carphone), max_frames=40, keyframe_mode="every n frames", keyframe_interval=8
    )
    text, image = preview_keyframes(values)
    assert image is not None and image.width > 0
    # Every 8 frames from 0 (carphone has no cut in its first 40 frames).
    assert "5 keyframes of 40 frames" in text and "Keyframes: 0, 8, 16, 24, 32." in text
    text, image = preview_keyframes(panel_values(input_directory=str(bikes), keyframe_mode="listed frames"))
    assert image is None and "keyframe_frames" in text


# 40: the square's look changes by more than LOOKS_ALIKE a frame, so the reference frames do
# not look alike along the flow; the repaint still goes on (it was painted again in each frame).
@pytest.mark.parametrize("brighten", [0, 40])
def test_new_content_is_painted_once_and_carried_to_the_next_frames(
    tmp_path: Path, tiny_backend, brighten: int
) -> None:
    clip = flash_clip(tmp_path / "clip", brighten=brighten)  # a square only in frames 1-3, between keyframes 0 and 4
    backend = Recording(tiny_backend)
    settings = small(clip, tmp_path / "out", max_frames=None, loop_n=1, keyframe_mode="every n frames",
                     keyframe_interval=4, save_every_loop=False)  # fmt: skip
    root = Engine(settings, backend).run().run_dir
    assert [p.name for p in (root / "repair" / "loop_001").iterdir()] == ["000002.png"]
    assert sum(r.mask is not None for r in backend.requests) == 1
    made = frames_of(root, "loop_001")
    square = (slice(12, 28), slice(16, 32))
    # Carried along, not painted again (a new repaint differs by more than 0.05); the
    # brightening square nudges the flow below a pixel, and each bilinear step softens the noise.
    assert np.abs(made[2][square] - made[1][square]).mean() < 0.02, "carried along, not painted again"
    assert np.abs(made[3][square] - made[1][square]).mean() < 0.05, "carried along, not painted again"
    assert np.abs(made[1][square] - made[0][square]).mean() > 0.05, "the repair painted over the keyframe's warp"
    assert not (root / "guessed" / "loop_001").exists() or not any((root / "guessed" / "loop_001").iterdir())
    assert sorted(p.name for p in (root / "painted" / "loop_001").iterdir()) == [
        "000002.png",
        "000003.png",
        "000004.png",
    ]
