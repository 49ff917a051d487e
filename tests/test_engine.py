"""The loopback engine end to end, on real footage with the real (tiny) diffusers pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from lib_videoloop.backends import GenerationRequest
from lib_videoloop.config import FILTER_METHOD, FLOW_METHOD, Settings
from lib_videoloop.engine import Engine
from lib_videoloop.errors import InterruptedRun, VideoLoopError
from lib_videoloop.media.store import FrameStore


class Recording:
    """Passes every request to the real backend and remembers it, and how many frames each
    generation call held."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.requests: list[GenerationRequest] = []
        self.calls: list[int] = []

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        self.inner.check(uses_subseed, uses_mask)

    def frames_per_call(self, request: GenerationRequest, setting: int) -> int:
        return self.inner.frames_per_call(request, setting)

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        return self.generate_frames([request])[0]

    def generate_frames(self, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
        self.requests += requests
        self.calls.append(len(requests))
        return self.inner.generate_frames(requests)


class UsesInputFrames:
    """A WebUI-style backend: it takes each frame's input and control images (ControlNet, colour
    correction) and hands back its init image; it keeps the control images it was given."""

    name = "frames-only"
    wants_input_frames = True

    def __init__(self) -> None:
        self.controls: list[np.ndarray] = []

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        pass

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        assert request.input_image is not None and len(request.control_images) == 1
        self.controls.append(request.control_images[0])
        return [request.init_image] * request.image_count


def small(input_path: Path, out: Path, **kw) -> Settings:
    base = dict(
        input_directory=str(input_path),
        output_directory=str(out),
        width=64,
        height=48,
        resize_mode=1,
        max_frames=5,
        loop_n=2,
        steps=4,
        denoising_strength=0.5,
        seed=1234,
        subseed=99,
        prompt="a rabbit",
    )
    base.update(kw)
    return Settings(**base)


def frames_of(root: Path, folder: str) -> list[np.ndarray]:
    store = FrameStore.open(root)
    return [store.read_frame(folder, i) for i in range(store.frame_count)]


def test_two_loops_with_window_masks_schedules_and_sound(tmp_path: Path, bigbuckbunny: Path, tiny_backend) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    for n in range(1, 8):  # video input: masks matched by frame number
        m = np.zeros((720, 1280), np.uint8)
        m[:, 640:] = 255  # repaint the right half only
        Image.fromarray(m).save(masks / f"mask_{n:04d}.png")
    backend = Recording(tiny_backend)
    settings = small(
        bigbuckbunny,
        tmp_path / "out",
        temporal_superimpose_alpha_list="1,2,1",
        use_mask=True,
        mask_directory=str(masks),
        denoising_schedule="0.6 if loop_i == 1 else 0.3",
        batch_count_schedule="(1, 2) if image_i == 1 else 1",
        prompt_schedule="f'rabbit {image_i}'",
        superimpose_alpha=0.5,
        fix_seed=False,
    )
    result = Engine(settings, backend).run()
    root = result.run_dir

    # Run folder: settings with the seeds used, frames per loop, masks, manifest, videos.
    saved = json.loads((root / "settings.json").read_text())
    assert saved["seed"] == 1234 and saved["run"]["frame_count"] == 5
    assert saved["denoising_schedule"] == "0.6 if loop_i == 1 else 0.3"
    for folder in ("input", "masks", "loop_001", "loop_002"):
        assert len(list((root / folder).glob("*.png"))) == 5
    store = FrameStore.open(root)
    assert store.folder_complete("loop_001") and store.folder_complete("loop_002")

    # Schedules reached the backend, frame by frame and loop by loop.
    assert len(backend.requests) == 10
    first = backend.requests[0]
    assert (first.denoising_strength, first.batch_size, first.prompt) == (0.6, 2, "rabbit 1")
    assert backend.requests[5].denoising_strength == 0.3 and backend.requests[1].prompt == "rabbit 2"
    # Without fix_seed the seed advances by the images of each frame, through the loops.
    assert [r.seed for r in backend.requests[:3]] == [1234, 1236, 1237]
    assert backend.requests[5].seed == 1234 + 2 + 4

    # Outside the mask every loop keeps the input exactly; inside, it changed.
    inputs, last = frames_of(root, "input"), frames_of(root, "loop_002")
    for a, b in zip(inputs, last, strict=True):
        assert np.array_equal(a[:, :32], b[:, :32])
        assert np.abs(a[:, 32:] - b[:, 32:]).mean() > 0.005
    # The temporal window fed the init image: frame 2's init is not its own input frame.
    init = backend.requests[1].init_image
    assert not np.allclose(init[:, 32:], inputs[1][:, 32:])

    # Videos: one per loop and the final one, each with sound for the frames' span.
    assert result.video is not None and result.video.exists()
    assert [p.name for p in result.loop_videos] == ["loop_001.mp4"]
    with av.open(str(result.video)) as container:
        assert container.streams.video[0].frames == 5
        assert container.streams.audio, "the source's sound is kept"
        audio = container.streams.audio[0]
        seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
    assert seconds == pytest.approx(5 / 25, abs=0.03)


def test_superimpose_alpha_zero_reproduces_the_input_bit_for_bit(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    settings = small(bikes, tmp_path, superimpose_alpha=0.0, loop_n=1, temporal_superimpose_alpha_list="1,1,1")
    root = Engine(settings, tiny_backend).run().run_dir
    for a, b in zip(frames_of(root, "input"), frames_of(root, "loop_001"), strict=True):
        assert np.array_equal(a, b)


def test_stopped_run_resumes_to_identical_frames(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    common = dict(temporal_superimpose_alpha_list="1,2,1", loop_n=2, save_every_loop=False, fix_seed=False)
    straight = Engine(small(bikes, tmp_path / "a", **common), tiny_backend).run().run_dir

    calls = {"n": 0}

    def stop_after_seven() -> bool:
        calls["n"] += 1
        return calls["n"] == 7  # inside loop 2

    with pytest.raises(InterruptedRun) as stopped:
        Engine(small(bikes, tmp_path / "b", **common), tiny_backend, should_stop=stop_after_seven).run()
    root = Path(str(stopped.value))
    assert len(FrameStore.open(root).complete_frames("loop_002")) == 2
    result = Engine.resume(root, tiny_backend).run()
    for folder in ("loop_001", "loop_002"):
        for a, b in zip(frames_of(straight, folder), frames_of(root, folder), strict=True):
            assert np.array_equal(a, b)
    assert result.seeds == [1234 + 7, 1234 + 8, 1234 + 9]  # only the missing frames were made


@pytest.mark.parametrize("method", [FLOW_METHOD, FILTER_METHOD])
def test_motion_methods_resume_to_identical_frames_on_the_stored_flows(
    tmp_path: Path, bikes: Path, tiny_backend, method: str
) -> None:
    common = dict(temporal_superimpose_method=method, temporal_superimpose_alpha_list="1,2,3,2,1", loop_n=2,
                  save_every_loop=False, temporal_filter_schedule="0.8 if loop_i == 1 else 0.5")  # fmt: skip
    straight = Engine(small(bikes, tmp_path / "a", **common), tiny_backend).run().run_dir
    calls = {"n": 0}

    def stop_in_loop_two() -> bool:
        calls["n"] += 1
        return calls["n"] == 7

    with pytest.raises(InterruptedRun) as stopped:
        Engine(small(bikes, tmp_path / "b", **common), tiny_backend, should_stop=stop_in_loop_two).run()
    root = Path(str(stopped.value))
    flows = sorted((root / "flows").iterdir())
    assert [p.name for p in flows] == [f"{k:06d}.flow" for k in range(1, 5)]  # one per pair of the 5 frames
    written = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in flows}
    Engine.resume(root, tiny_backend).run()
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in flows} == written, "the resumed run read them back"
    assert not (root / "filter_pass").exists()
    for folder in ("loop_001", "loop_002"):
        for a, b in zip(frames_of(straight, folder), frames_of(root, folder), strict=True):
            assert np.array_equal(a, b)
    assert not np.array_equal(frames_of(straight, "loop_001")[2], frames_of(straight, "input")[2])


def test_schedules_are_checked_before_anything_is_made(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    backend = Recording(tiny_backend)
    out = tmp_path / "out"
    settings = small(bikes, out, denoising_schedule="0.3 if loop_i < 2 else 1.5")
    with pytest.raises(VideoLoopError) as e:
        Engine(settings, backend).run()
    text = str(e.value)
    assert "denoising_schedule" in text and "frame 1" in text and "loop 2" in text and "0 to 1" in text
    assert backend.requests == [] and not out.exists()
    with pytest.raises(VideoLoopError, match="batch_count_schedule"):
        Engine(small(bikes, out, batch_count_schedule="(0, 2)"), backend).run()
    with pytest.raises(VideoLoopError, match="image_post_processing_schedule"):
        Engine(small(bikes, out, image_post_processing_schedule="lambda img: 3"), backend).run()


def test_frames_without_masks_are_listed_before_generation(tmp_path: Path, tiny_backend) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(frames / f"f{i}.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(masks / "f0.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(masks / "f2.png")
    backend = Recording(tiny_backend)
    with pytest.raises(VideoLoopError) as e:
        Engine(
            Settings(
                input_directory=str(frames),
                output_directory=str(tmp_path / "o"),
                use_mask=True,
                mask_directory=str(masks),
            ),
            backend,
        ).run()
    assert "2 frame(s) have no mask: f1, f3" in str(e.value)
    assert backend.requests == [] and not (tmp_path / "o").exists()


def test_alpha_channel_masks_and_txt_prompts(tmp_path: Path, tiny_backend) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., :3] = 100
        rgba[:8, :, 3] = 255  # the top half is to be repainted
        Image.fromarray(rgba).save(frames / f"{i}.png")
    (frames / "0.txt").write_text("a cat --neg blurry")
    (frames / "2.txt").write_text("a dog")
    backend = Recording(tiny_backend)
    settings = Settings(
        input_directory=str(frames),
        output_directory=str(tmp_path / "o"),
        use_mask=True,
        read_prompt_from_txt=True,
        prompt="default",
        negative_prompt="neg",
        loop_n=1,
        steps=4,
        denoising_strength=0.8,
        superimpose_alpha=1.0,
        seed=5,
    )
    root = Engine(settings, backend).run().run_dir
    assert [(r.prompt, r.negative_prompt) for r in backend.requests] == [
        ("a cat", "blurry"),
        ("default", "neg"),
        ("a dog", "neg"),
    ]
    assert (
        backend.requests[0].mask is not None
        and backend.requests[0].mask[:8].all()
        and not backend.requests[0].mask[8:].any()
    )
    out, inp = frames_of(root, "loop_001")[0], frames_of(root, "input")[0]
    assert np.array_equal(out[8:], inp[8:]) and not np.array_equal(out[:8], inp[:8])


def test_post_processing_schedule_changes_only_the_scheduled_loop(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    pp = "lambda img: img.filter(ImageFilter.GaussianBlur(3)) if loop_i == 2 else img"
    plain = Engine(small(bikes, tmp_path / "a", loop_n=2, max_frames=2), tiny_backend).run().run_dir
    post = (
        Engine(small(bikes, tmp_path / "b", loop_n=2, max_frames=2, image_post_processing_schedule=pp), tiny_backend)
        .run()
        .run_dir
    )
    assert all(
        np.array_equal(a, b) for a, b in zip(frames_of(plain, "loop_001"), frames_of(post, "loop_001"), strict=True)
    )
    blurred, sharp = frames_of(post, "loop_002")[0], frames_of(plain, "loop_002")[0]
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.7 * np.abs(np.diff(sharp, axis=1)).mean()


def test_diffusers_backend_refuses_variation_seeds(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    with pytest.raises(VideoLoopError, match="subseed_strength"):
        Engine(small(bikes, tmp_path, subseed_strength=0.2), tiny_backend).run()


def test_reference_frames_do_not_pile_up_over_a_loop(
    tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WebUI-style backend (control images, colour correction) keeps memory flat with length:
    a clip three times as long peaks within a few frames' worth of the short one. (The store
    keeps the frames it wrote last in memory up to RECENT_BYTES, 96 MB: capped at four here; and
    the input's copy and the writes run some frames ahead, so the short clip is not too short.)"""
    import tracemalloc

    import lib_videoloop.media.store as store_module

    monkeypatch.setattr(store_module, "RECENT_BYTES", 4 * 256 * 192 * 3 * 2)

    class Forgetful(UsesInputFrames):
        def generate(self, request: GenerationRequest) -> list[np.ndarray]:
            assert request.input_image is not None and len(request.control_images) == 1
            return [request.init_image] * request.image_count

    peaks = []
    for count in (40, 120):
        settings = small(bikes, tmp_path / str(count), max_frames=count, loop_n=1, width=256, height=192,
                         temporal_superimpose_alpha_list="1,2,1", save_every_loop=False)  # fmt: skip
        tracemalloc.start()
        Engine(settings, Forgetful()).run()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frame = 256 * 192 * 3 * 4  # one float32 frame; the 80 more frames would add 80 of them
    assert peaks[1] - peaks[0] < 6 * frame, (peaks, frame)


def test_resume_keeps_the_videos_and_reports_of_finished_loops(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    calls = {"n": 0}

    def stop_in_loop_two() -> bool:
        calls["n"] += 1
        return calls["n"] == 6

    settings = small(bikes, tmp_path, max_frames=4, loop_n=2, save_every_loop=True)
    with pytest.raises(InterruptedRun) as stopped:
        Engine(settings, tiny_backend, should_stop=stop_in_loop_two).run()
    root = Path(str(stopped.value))
    first_video = root / "loop_001.mp4"
    before = first_video.stat().st_mtime_ns
    result = Engine.resume(root, tiny_backend).run()
    assert first_video.stat().st_mtime_ns == before, "the finished loop's video is not encoded again"
    assert result.loop_videos == [first_video]
    assert [e["loop"] for e in json.loads((root / "report.json").read_text())["loops"]] == [1, 2]


@pytest.mark.parametrize("held", [8, 1])
def test_every_loop_is_encoded_as_it_is_made_into_the_video_its_files_make(
    tmp_path: Path, bikes: Path, tiny_backend, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    """Each loop's video and the final one, encoded from memory while their loop is made (not
    read back from the loop's files after it: on a long clip that decoded every frame's PNG
    once more), hold exactly the frames of their loop's folder, also when frames come faster
    than the encoder takes them (held 1: one waits in memory, the others are read back when
    their turn comes; a loop's video then also waits for the one before it). Checked on a
    lossless video: two lossy H.264 encodes of the same frames need not be the same bytes
    (x264's macroblock tree reads memory it never wrote: MALLOC_PERTURB_=85 and =170 give two
    different files), so comparing a lossy video with a second encode of the files fails at
    random, whichever frames went in."""
    from lib_videoloop import loop_end
    from lib_videoloop.loop_end import LoopEnd
    from lib_videoloop.media.images import to_uint8
    from lib_videoloop.media.sources import open_source

    encoded: list[tuple[str, bool]] = []  # each video, and whether from frames as they were written
    original = LoopEnd.write_video

    def recording(self, folder, name, frames=None):
        encoded.append((name, frames is not None))
        return original(self, folder, name, frames)

    monkeypatch.setattr(LoopEnd, "write_video", recording)
    monkeypatch.setattr(loop_end._StreamedVideo, "QUEUE", held)
    taken = loop_end._StreamedVideo.frames

    def slowly(self):  # an encoder slower than the loop
        for frame in taken(self):
            time.sleep(0.15)
            yield frame

    monkeypatch.setattr(loop_end._StreamedVideo, "frames", slowly)
    settings = small(bikes, tmp_path / "out", max_frames=6, loop_n=3, fix_seed=False, lossless=True)
    result = Engine(settings, tiny_backend).run()
    name = result.run_dir.name
    assert sorted(encoded) == sorted([("loop_001", True), ("loop_002", True), (name, True)]), (
        "every video streamed, none encoded again from the files"
    )
    store = FrameStore.open(result.run_dir)
    videos = [*zip(result.loop_videos, ["loop_001", "loop_002"], strict=True), (result.video, result.frames_folder)]
    for video, folder in videos:
        files = [to_uint8(f) for f in store.frames(folder)]
        got = [to_uint8(f.image) for f in open_source(video)]
        assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, files, strict=True)), folder
        assert not np.array_equal(files[0], files[1])  # frames in their order, not one frame repeated


def test_a_stop_inside_a_loop_leaves_no_half_video_and_the_resume_makes_it(
    tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    """A loop's video is encoded as the loop is made: stopped halfway through loop 1, the run
    folder holds no video and no half-written one, and the resumed run's loop_001 video holds
    that loop's frames, the ones made before the stop and after."""
    from lib_videoloop.media.images import to_uint8
    from lib_videoloop.media.sources import open_source

    calls = {"n": 0}

    def stop_in_loop_one() -> bool:
        calls["n"] += 1
        return calls["n"] == 3

    settings = small(bikes, tmp_path / "out", max_frames=6, loop_n=2, lossless=True)
    with pytest.raises(InterruptedRun) as stopped:
        Engine(settings, tiny_backend, should_stop=stop_in_loop_one).run()
    root = Path(str(stopped.value))
    assert len(FrameStore.open(root).complete_frames("loop_001")) == 3
    assert not [p.name for p in root.iterdir() if p.suffix == ".mp4" or p.name.startswith(".partial-")]
    result = Engine.resume(root, tiny_backend).run()
    (video,) = result.loop_videos
    files = [to_uint8(f) for f in FrameStore.open(root).frames("loop_001")]
    got = [to_uint8(f.image) for f in open_source(video)]
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(got, files, strict=True))
    assert not [p.name for p in root.iterdir() if p.name.startswith(".partial-")]


def test_the_next_frames_init_image_is_made_while_a_frame_generates(
    tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window, blend and mask of frame i+1 come from the previous loop only, so they are
    made beside frame i's generation: on a fast GPU that work would otherwise sit between two
    generations."""
    import threading

    from lib_videoloop.temporal import LoopBlend

    prepared: dict[tuple[int, int], threading.Event] = {}
    real_frame = LoopBlend.frame

    def frame(self, plan, *args, **kwargs):  # the init image of a frame, blended from the previous loop
        out = real_frame(self, plan, *args, **kwargs)
        prepared.setdefault((plan.loop, plan.frame), threading.Event()).set()
        return out

    monkeypatch.setattr(LoopBlend, "frame", frame)
    seen: list[tuple[int, bool]] = []

    class WaitsForTheNext:
        name = "waits"

        def check(self, uses_subseed: bool, uses_mask: bool) -> None:
            pass

        def generate(self, request: GenerationRequest) -> list[np.ndarray]:
            loop, frame = len(seen) // 5 + 1, len(seen) % 5
            following = prepared.setdefault((loop, frame + 1), threading.Event())
            seen.append((frame, frame == 4 or following.wait(timeout=10)))
            return [request.init_image] * request.image_count

    mask = np.zeros((272, 640), np.uint8)
    mask[:, 320:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    settings = small(
        bikes, tmp_path / "out", temporal_superimpose_alpha_list="1,2,3,2,1",
        use_mask=True, mask_directory=str(tmp_path / "mask.png"),
    )  # fmt: skip
    Engine(settings, WaitsForTheNext()).run()
    assert seen == [(i, True) for i in range(5)] * 2


def test_reference_frames_reach_each_frame_while_they_are_copied(tmp_path: Path, bikes: Path) -> None:
    """Reference frames are copied beside loop 1 like the input: each frame still gets its own
    reference frame (ControlNet's image), resized, and the run folder ends up holding them all."""
    from lib_videoloop.media.resize import resize_frame
    from lib_videoloop.media.sources import open_source
    from lib_videoloop.media.store import as_stored

    reference = tmp_path / "reference"
    reference.mkdir()
    for frame in open_source(bikes, max_frames=6):
        flipped = (frame.image[::-1] * 255 + 0.5).astype(np.uint8)  # unlike the input frame
        Image.fromarray(flipped).save(reference / f"{frame.index:03d}.png")
    expected = [as_stored(resize_frame(f.image, 64, 48, 1)) for f in open_source(reference)]
    settings = small(bikes, tmp_path / "out", max_frames=6, reference_frames_directory=str(reference),
                     temporal_superimpose_method=FLOW_METHOD, temporal_superimpose_alpha_list="1,2,3,2,1")  # fmt: skip
    backend = UsesInputFrames()
    result = Engine(settings, backend).run()
    assert len(backend.controls) == 12
    for i, control in enumerate(backend.controls):
        assert np.array_equal(control, expected[i % 6])
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(result.run_dir, "reference_1"), expected, strict=True))
