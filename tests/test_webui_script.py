"""The WebUI script against the stand-in `modules` (tests/webui), in A1111's and Forge's shapes.

process_images really generates (tiny diffusers pipeline); what differs between the WebUIs
(ControlNet's API, Forge's lists on p and its placeholder model) follows modules.flavour.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent / "webui"))

from modules import flavour, processing, scripts, shared  # noqa: E402

from conftest import flash_clip, load_webui_script, panel_values  # noqa: E402
from lib_videoloop.errors import VideoLoopError  # noqa: E402
from lib_videoloop.media.images import from_pil, to_pil  # noqa: E402
from lib_videoloop.media.store import FrameStore  # noqa: E402


class ControlNetScript(scripts.Script):
    alwayson = True
    args_from, args_to = 0, 2

    def title(self) -> str:
        return "ControlNet"


@pytest.fixture(params=["a1111", "forge"])
def webui(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    flavour.use(request.param)
    if request.param == "forge":
        from lib_controlnet.external_code import ControlNetUnit
    else:
        from scripts.external_code import ControlNetUnit
    calls: list[dict] = []
    real = processing.process_images

    def recording(p):
        processed = real(p)
        calls.append({"seed": p.seed, "subseed": p.subseed, "mask": p.image_mask, "control": list(p.controlnet_inputs),
                      "processed": processed, "denoising": p.denoising_strength, "subseed_strength": p.subseed_strength, "job_count": shared.state.job_count})  # fmt: skip
        return processed

    monkeypatch.setattr(processing, "process_images", recording)
    yield request.param, ControlNetUnit, calls
    flavour.use("a1111")


def make_p(unit_cls, own_image: np.ndarray, **kw) -> processing.StableDiffusionProcessingImg2Img:
    p = processing.StableDiffusionProcessingImg2Img(
        init_images=None, width=64, height=48, steps=4, denoising_strength=0.5, batch_size=2, n_iter=1, seed=100, subseed=5,
        prompt="a bike", mask_blur=0, **kw,
    )  # fmt: skip
    p.scripts = scripts.ScriptRunner()
    p.scripts.alwayson_scripts = [ControlNetScript()]
    p.script_args = (unit_cls(enabled=True), unit_cls(enabled=True, image=own_image))
    return p


def masks_for(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(1, count + 1):
        m = np.zeros((272, 640), np.uint8)
        m[:, 320:] = 255
        Image.fromarray(m).save(folder / f"{n:05d}.png")
    return folder


def test_run_drives_the_engine_through_process_images(webui, tmp_path: Path, bikes: Path) -> None:
    shape, unit_cls, calls = webui
    own = np.full((48, 64, 3), 7, np.uint8)
    p = make_p(unit_cls, own)
    masks = masks_for(tmp_path / "masks", 4)
    values = panel_values(
        input_directory=str(bikes), output_directory=str(tmp_path / "out"), max_frames=4, loop_n=2, fix_seed=False,
        temporal_superimpose_alpha_list="1,2,1", use_mask=True, mask_directory=str(masks),
        denoising_schedule="0.6 if loop_i == 1 else 0.4",
    )  # fmt: skip
    processed = load_webui_script().run(p, *values)

    assert len(calls) == 8
    # Seeds advance by batch_size per frame, through loops; the schedule reached each call.
    assert [c["seed"] for c in calls] == [100 + 2 * k for k in range(8)]
    assert [c["denoising"] for c in calls] == [0.6] * 4 + [0.4] * 4
    # Masks: every frame's own mask (right half).
    for c in calls:
        mask = np.asarray(c["mask"].convert("L"))
        assert mask[:, 40:].min() == 255 and mask[:, :24].max() == 0
    # ControlNet: the unit without an image got the frame; the other kept its own image.
    run_dir = Path(processed.info.splitlines()[0].split(": ", 1)[1])
    store = FrameStore.open(run_dir)
    for i, c in enumerate(calls[:4]):
        frame = (store.read_frame("input", i) * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(c["control"][0], frame)
        assert np.array_equal(c["control"][1], own)
    assert p.script_args[0].image is None, "the user's own units are not changed"
    # Progress: frames x loops, with the WebUI's job text.
    assert shared.state.job_count == 8 and shared.state.job_no == 8
    assert shared.state.job == "Loop 2/2, frame 4/4"
    assert shared.state.current_image is not None
    # The result: first, middle and last frame, the flicker plot; info names the folder and video.
    assert len(processed.images) == 4
    assert "Video: " in processed.info and str(run_dir) in processed.info and "E_warp" in processed.info
    assert "Video Loopback" in p.extra_generation_params
    assert store.read_settings()["run"]["models"] == ["tiny-random-sd"]  # read from p after a generation (Forge too)
    if shape == "forge":
        assert p.latents_after_sampling == [], "Forge's lists grow on copies, not on the user's p"


def test_with_workers_each_frame_goes_out_with_the_tabs_values_and_its_controlnet_image(
    webui, tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    """The img2img tab's sampler, styles, mask settings, checkpoint and ControlNet units reach
    the worker; the unit without an image gets the frame there, as it does here."""
    from lib_videoloop.backends.workers import decode_png
    from worker_server import Behaviour, WorkerServer

    _, unit_cls, calls = webui
    own = np.full((48, 64, 3), 7, np.uint8)
    p = make_p(unit_cls, own, sampler_name="Euler a", styles=["film"], inpainting_fill=1)
    shared.opts.CLIP_stop_at_last_layers = 2  # the webui fixture resets the options after the test
    loaded_here = {"title": "tiny-random-sd [0000]", "model_name": "tiny-random-sd"}
    with WorkerServer(tiny_backend, Behaviour(model=loaded_here)) as worker:
        values = panel_values(
            input_directory=str(bikes), output_directory=str(tmp_path / "out"), max_frames=3, loop_n=1,
            workers=worker.url,
        )  # fmt: skip
        processed = load_webui_script().run(p, *values)
        sent = worker.behaviour.requests
    assert calls == [], "nothing is generated here"
    assert len(sent) == 3 and "Video: " in processed.info
    run_dir = Path(processed.info.splitlines()[0].split(": ", 1)[1])
    store = FrameStore.open(run_dir)
    for i, body in enumerate(sent):
        assert (body["sampler_name"], body["styles"], body["inpainting_fill"], body["mask_blur"]) == (
            "Euler a",
            ["film"],
            1,
            0,
        )
        assert body["override_settings"] == {
            "sd_model_checkpoint": "tiny-random-sd [0000]",
            "CLIP_stop_at_last_layers": 2,
            "img2img_color_correction": False,
        }
        first, second = body["alwayson_scripts"]["controlnet"]["args"]
        frame = (store.read_frame("input", i) * 255 + 0.5).astype(np.uint8)
        assert np.array_equal((decode_png(first["image"]) * 255 + 0.5).astype(np.uint8), frame)
        assert np.array_equal((decode_png(second["image"]) * 255 + 0.5).astype(np.uint8), own)
    assert p.script_args[0].image is None, "the user's own units are not changed"


@pytest.mark.parametrize("root", ["none", "after logging.warning()", "--log-level INFO"])
def test_the_console_shows_the_plan_unless_the_webui_logs_info_itself(
    webui, tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch, capfd, *, root: str
) -> None:
    """Started without --log-level the WebUI sets up no logging, and Python printed only
    warnings (by a plain handler once anything called logging.warning()); with --log-level INFO
    the WebUI's own handler and format print the lines."""
    import logging

    package = logging.getLogger("lib_videoloop")
    for name, value in (("handlers", []), ("level", logging.NOTSET), ("propagate", True)):
        monkeypatch.setattr(package, name, value)
    plain = logging.StreamHandler()  # logging.basicConfig()'s, to stderr
    monkeypatch.setattr(logging.root, "handlers", [] if root == "none" else [plain])
    monkeypatch.setattr(logging.root, "level", logging.INFO if root == "--log-level INFO" else logging.WARNING)
    _, unit_cls, _ = webui
    values = panel_values(input_directory=str(bikes), output_directory=str(tmp_path), max_frames=2, loop_n=1)
    load_webui_script().run(make_p(unit_cls, np.zeros((48, 64, 3), np.uint8)), *values)
    err = capfd.readouterr().err
    if root == "--log-level INFO":
        assert "Video Loopback: " not in err and package.handlers == []
        assert "plan: 2 frames x 1 loops = 2 generations" in err  # by the WebUI's handler
    else:
        assert err.count("Video Loopback: plan: 2 frames x 1 loops = 2 generations") == 1, err
        assert "Video Loopback: disk: the run writes about" in err and "Video Loopback: loop 1/1 done" in err


def test_backend_takes_exactly_the_generated_images(webui) -> None:
    _, unit_cls, calls = webui
    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.webui.backend import WebUIBackend

    shared.opts.return_grid = True
    shared.opts.return_mask = True
    p = make_p(unit_cls, np.zeros((48, 64, 3), np.uint8))
    init = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
    mask = np.zeros((48, 64), np.float32)
    mask[:, 32:] = 1
    request = GenerationRequest(
        init_image=init, mask=mask, prompt="x", negative_prompt="", seed=1, subseed=2, subseed_strength=0.3,
        denoising_strength=0.6, steps=4, cfg_scale=7, width=64, height=48, batch_size=2, n_iter=2, control_images=[init],
    )  # fmt: skip
    images = WebUIBackend(p).generate(request)
    assert len(images) == 4
    # One call per batch, with the seeds the WebUI gives each batch of an n_iter run: with
    # variation strength the seed stays, the subseed advances by the batch size.
    assert [(c["seed"], c["subseed"]) for c in calls[-2:]] == [(1, 2), (1, 4)]
    generated = [img for c in calls[-2:] for img in c["processed"].images if "parameters" in img.info]
    assert len(generated) == 4
    for ours, theirs in zip(images, generated, strict=True):
        assert np.array_equal(ours, from_pil(theirs))
    assert shared.opts.return_grid and shared.opts.return_mask, "options are restored"


def test_interrupt_then_resume_finishes_with_the_same_frames(webui, tmp_path: Path, bikes: Path) -> None:
    _, unit_cls, _calls = webui
    values = dict(
        input_directory=str(bikes), max_frames=3, loop_n=2, fix_seed=False, temporal_superimpose_alpha_list="1,2,1"
    )
    straight = load_webui_script().run(
        make_p(unit_cls, None), *panel_values(output_directory=str(tmp_path / "a"), **values)
    )
    straight_dir = Path(straight.info.splitlines()[0].split(": ", 1)[1])

    real = processing.process_images
    count = {"n": 0}

    def interrupting(p):
        count["n"] += 1
        if count["n"] == 4:
            shared.state.interrupt()  # the user presses Interrupt during frame 1 of loop 2
        return real(p)

    processing.process_images = interrupting
    try:
        stopped = load_webui_script().run(
            make_p(unit_cls, None), *panel_values(output_directory=str(tmp_path / "b"), **values)
        )
    finally:
        processing.process_images = real
    assert stopped.images == [] and "Stopped" in stopped.info
    run_dir = Path(stopped.info.rsplit(": ", 1)[1])
    assert FrameStore.open(run_dir).complete_frames("loop_002") == set()
    shared.state.interrupted = False
    resumed = load_webui_script().run(make_p(unit_cls, None), *panel_values(resume_run_folder=str(run_dir)))
    assert str(run_dir) in resumed.info
    a, b = FrameStore.open(straight_dir), FrameStore.open(run_dir)
    for i in range(3):
        assert np.array_equal(a.read_frame("loop_002", i), b.read_frame("loop_002", i))


def test_skip_keeps_the_previous_loop_image(webui, tmp_path: Path, bikes: Path) -> None:
    _, unit_cls, _ = webui
    real = processing.process_images
    count = {"n": 0}

    def skipping(p):
        count["n"] += 1
        if count["n"] == 2:
            shared.state.skip()
        return real(p)

    processing.process_images = skipping
    try:
        processed = load_webui_script().run(
            make_p(unit_cls, None),
            *panel_values(input_directory=str(bikes), output_directory=str(tmp_path), max_frames=3, loop_n=1),
        )
    finally:
        processing.process_images = real
    store = FrameStore.open(Path(processed.info.splitlines()[0].split(": ", 1)[1]))
    assert np.array_equal(store.read_frame("loop_001", 1), store.read_frame("input", 1))
    assert not np.array_equal(store.read_frame("loop_001", 0), store.read_frame("input", 0))
    assert shared.state.skipped is False


def test_skip_with_workers_keeps_the_frame_a_worker_was_making(
    webui, tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    import threading
    import time

    from worker_server import Behaviour, WorkerServer

    _, unit_cls, _ = webui
    loaded_here = {"title": "tiny-random-sd [0000]", "model_name": "tiny-random-sd"}
    with WorkerServer(tiny_backend, Behaviour(model=loaded_here, delay=30)) as worker:

        def press_skip() -> None:  # the Skip button while the worker has the first frame
            while not worker.behaviour.requests:
                time.sleep(0.01)
            shared.state.skip()

        threading.Thread(target=press_skip, daemon=True).start()
        values = panel_values(input_directory=str(bikes), output_directory=str(tmp_path), max_frames=3, loop_n=1,
                              workers=worker.url)  # fmt: skip
        processed = load_webui_script().run(make_p(unit_cls, None), *values)
        assert worker.behaviour.interrupts == 1
    store = FrameStore.open(Path(processed.info.splitlines()[0].split(": ", 1)[1]))
    kept = [np.array_equal(store.read_frame("loop_001", i), store.read_frame("input", i)) for i in range(3)]
    assert kept == [True, False, False]
    assert shared.state.skipped is False


def test_shared_webui_limits_paths_until_the_owner_allows_them(webui, tmp_path: Path, bikes: Path) -> None:
    _, unit_cls, _ = webui
    shared.cmd_opts.listen = True
    values = panel_values(input_directory=str(bikes), output_directory=str(tmp_path / "out"), max_frames=2, loop_n=1)
    with pytest.raises(VideoLoopError) as e:
        load_webui_script().run(make_p(unit_cls, None), *values)
    assert "input_directory" in str(e.value) and "Settings > Video Loopback" in str(e.value)
    shared.opts.video_loopback_allowed_directories = f"{bikes.parent}\n{tmp_path}"
    assert "Video: " in load_webui_script().run(make_p(unit_cls, None), *values).info
    shared.cmd_opts.enable_insecure_extension_access = True
    shared.opts.video_loopback_allowed_directories = ""
    assert "Video: " in load_webui_script().run(make_p(unit_cls, None), *values).info


def test_settings_section_and_defaults_output_folder(
    webui, tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, unit_cls, _ = webui
    from modules import paths

    monkeypatch.setattr(paths, "data_path", str(tmp_path))
    processed = load_webui_script().run(
        make_p(unit_cls, None), *panel_values(input_directory=str(bikes), max_frames=2, loop_n=1)
    )
    run_dir = Path(processed.info.splitlines()[0].split(": ", 1)[1])
    assert run_dir.parent == tmp_path / "outputs" / "img2img-images" / "video-loopback"


def test_script_identity() -> None:
    script = load_webui_script()
    assert script.title() == "Video Loopback"
    assert script.show(True) and not script.show(False)
    assert script.elem_id("loop_n") == "script_video_loopback_loop_n"


def test_install_py_installs_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import launch

    spec = importlib.util.spec_from_file_location("install", ROOT / "install.py")
    install = importlib.util.module_from_spec(spec)
    launch.pip_calls.clear()
    spec.loader.exec_module(install)  # av is present here: nothing to do
    assert launch.pip_calls == []
    monkeypatch.setattr(launch, "is_installed", lambda name: name != "av")
    install.main()
    assert launch.pip_calls == ['install "av>=12"']  # quoted: run_pip goes through a shell


def test_colour_correction_pulls_each_frame_towards_its_own_input(webui) -> None:
    _, unit_cls, _ = webui
    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.webui.backend import WebUIBackend

    rng = np.random.default_rng(3)
    grey = rng.random((48, 64, 3), dtype=np.float32) * 0.2 + 0.4
    reddish = np.clip(grey * np.array([1.6, 0.6, 0.6], np.float32), 0, 1)  # the input frame, loop 0
    request = GenerationRequest(
        init_image=grey, mask=None, prompt="x", negative_prompt="", seed=1, subseed=2, subseed_strength=0,
        denoising_strength=0.5, steps=4, cfg_scale=7, width=64, height=48, batch_size=1, n_iter=1, input_image=reddish,
    )  # fmt: skip
    plain = WebUIBackend(make_p(unit_cls, None)).generate(request)[0]
    shared.opts.img2img_color_correction = True
    corrected = WebUIBackend(make_p(unit_cls, None)).generate(request)[0]
    red_bias = lambda img: float(img[..., 0].mean() - img[..., 1:].mean())  # noqa: E731
    assert red_bias(corrected) > red_bias(plain) + 0.1
    assert abs(red_bias(corrected) - red_bias(reddish)) < 0.1


def test_with_workers_colour_correction_is_towards_each_frames_input(
    webui, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    """A worker does not correct by its own option (towards the blended init image): the frames
    it makes are corrected here, towards their input frames, as a run made here is."""
    from worker_server import Behaviour, WorkerServer

    _, unit_cls, _ = webui
    loaded_here = {"title": "tiny-random-sd [0000]", "model_name": "tiny-random-sd"}

    def loop_one(name: str) -> tuple[list[Image.Image], list[Image.Image], list[dict]]:
        with WorkerServer(tiny_backend, Behaviour(model=loaded_here)) as worker:
            values = panel_values(
                input_directory=str(bikes), output_directory=str(tmp_path / name), max_frames=3, loop_n=1,
                superimpose_alpha=1.0, workers=worker.url,
            )  # fmt: skip
            p = make_p(unit_cls, None)
            p.batch_size = 1  # a frame is then the one corrected image, not a blend of several
            processed = load_webui_script().run(p, *values)
        store = FrameStore.open(Path(processed.info.splitlines()[0].split(": ", 1)[1]))
        read = lambda folder: [to_pil(store.read_frame(folder, i)) for i in range(3)]  # noqa: E731
        return read("input"), read("loop_001"), worker.behaviour.requests

    inputs, raw, _ = loop_one("plain")
    monkeypatch.setitem(shared.opts.data, "img2img_color_correction", True)
    _, corrected, sent = loop_one("corrected")
    assert all(body["override_settings"]["img2img_color_correction"] is False for body in sent)
    for source, made, got in zip(inputs, raw, corrected, strict=True):
        expected = np.asarray(processing.apply_color_correction(processing.setup_color_correction(source), made))
        assert np.abs(np.asarray(got).astype(int) - expected).max() <= 1
        assert np.abs(np.asarray(got).astype(int) - np.asarray(made)).mean() > 1, "the correction changed the frame"


def test_colour_correction_is_applied_once_per_image_towards_its_frames_input(
    webui, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Corrected twice (by process_images from the init image, then again by the extension) the
    histogram match and luminosity blend drift away from what the WebUI's own loopback gives."""
    _, unit_cls, calls = webui
    from modules import processing_color

    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.webui.backend import WebUIBackend

    applied: list[np.ndarray] = []
    real_apply = processing_color.apply_color_correction

    def recording(correction, image):
        applied.append(correction)
        return real_apply(correction, image)

    monkeypatch.setattr(processing_color, "apply_color_correction", recording)
    monkeypatch.setitem(shared.opts.data, "img2img_color_correction", True)
    rng = np.random.default_rng(5)
    inputs = [rng.random((48, 64, 3), dtype=np.float32) * (k + 1) / 3 for k in range(2)]

    def request(k: int) -> GenerationRequest:
        return GenerationRequest(
            init_image=rng.random((48, 64, 3), dtype=np.float32), mask=None, prompt="x", negative_prompt="", seed=k,
            subseed=2, subseed_strength=0, denoising_strength=0.5, steps=4, cfg_scale=7, width=64, height=48,
            batch_size=2, n_iter=1, input_image=inputs[k],
        )  # fmt: skip

    requests = [request(k) for k in range(2)]
    frames = WebUIBackend(make_p(unit_cls, None)).generate_frames(requests)  # two frames in one call
    assert [len(f) for f in frames] == [2, 2] and len(applied) == 4
    expected = [processing.setup_color_correction(to_pil(inputs[k])) for k in (0, 0, 1, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(applied, expected, strict=True))
    # and the images are what one correction of the generated image gives
    generated = [img for img in calls[-1]["processed"].images if "parameters" in img.info]
    assert all(
        np.array_equal(from_pil(img), f) for img, f in zip(generated, [x for f in frames for x in f], strict=True)
    )


def test_colour_correction_asked_for_by_an_api_request_is_still_towards_the_input(
    webui, monkeypatch: pytest.MonkeyPatch
) -> None:
    """override_settings (an API request's, the X/Y/Z plot's) take effect inside process_images:
    the correction is decided as they say, not as the settings page does."""
    _, unit_cls, _ = webui
    from modules import processing_color

    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.webui.backend import WebUIBackend

    applied: list[np.ndarray] = []
    real_apply = processing_color.apply_color_correction
    monkeypatch.setattr(
        processing_color, "apply_color_correction", lambda c, img: applied.append(c) or real_apply(c, img)
    )
    rng = np.random.default_rng(6)
    source = rng.random((48, 64, 3), dtype=np.float32)
    request = GenerationRequest(
        init_image=rng.random((48, 64, 3), dtype=np.float32), mask=None, prompt="x", negative_prompt="", seed=1,
        subseed=2, subseed_strength=0, denoising_strength=0.5, steps=4, cfg_scale=7, width=64, height=48,
        batch_size=1, n_iter=1, input_image=source,
    )  # fmt: skip
    p = make_p(unit_cls, None, override_settings={"img2img_color_correction": True})
    WebUIBackend(p).generate(request)
    assert len(applied) == 1 and np.array_equal(applied[0], processing.setup_color_correction(to_pil(source)))
    assert shared.opts.img2img_color_correction is False  # the override held for the call only


def test_the_variation_strength_and_its_schedule_reach_every_generation(webui, tmp_path: Path, bikes: Path) -> None:
    _, unit_cls, calls = webui
    p = make_p(unit_cls, np.zeros((48, 64, 3), np.uint8), subseed_strength=0.3)
    values = panel_values(input_directory=str(bikes), output_directory=str(tmp_path / "a"), max_frames=3, loop_n=1)
    load_webui_script().run(p, *values)
    assert [c["subseed_strength"] for c in calls] == [0.3] * 3
    calls.clear()
    values = panel_values(
        input_directory=str(bikes), output_directory=str(tmp_path / "b"), max_frames=3, loop_n=2,
        subseed_strength_schedule="0.1 * image_i if loop_i == 1 else 0",
    )  # fmt: skip
    load_webui_script().run(p, *values)
    assert [c["subseed_strength"] for c in calls] == pytest.approx([0.1, 0.2, 0.3, 0, 0, 0])


def test_fastdvdnet_weights_come_from_the_webuis_models_folder_and_downloader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modules import modelloader, paths

    from lib_videoloop.denoise import weights
    from lib_videoloop.errors import VideoLoopError
    from lib_videoloop.webui.backend import WebUIBackend

    monkeypatch.setattr(weights, "EXTENSION_MODELS", tmp_path / "extension-models")
    monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui-models"))
    places = WebUIBackend(None).weight_places  # what a run in the WebUI uses
    # Offline: the message says where the file goes, the WebUI's models folder included.
    with pytest.raises(VideoLoopError) as offline:
        weights.find_weights("", places)
    assert str(tmp_path / "webui-models" / "FastDVDNet") in str(offline.value)
    calls = []

    def fetch(url: str, *, model_dir: str, file_name=None, hash_prefix=None, **_options) -> str:
        calls.append((url, model_dir, file_name, hash_prefix))
        target = Path(model_dir) / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"weights")
        return str(target)

    monkeypatch.setattr(modelloader, "load_file_from_url", fetch)
    found = weights.find_weights("", places)
    assert found == tmp_path / "webui-models" / "FastDVDNet" / "model.pth"
    assert calls == [(weights.WEIGHTS_URL, str(found.parent), "model.pth", weights.WEIGHTS_SHA256)]
    assert weights.find_weights("", places) == found and len(calls) == 1, "downloaded once, then found"
    # Without the WebUI's places (the command line), nothing is downloaded, whatever sys.path holds.
    found.unlink()
    with pytest.raises(VideoLoopError):
        weights.find_weights("")
    assert len(calls) == 1


def test_keyframe_mode_inpaints_repairs_through_process_images(webui, tmp_path: Path) -> None:
    _, unit_cls, calls = webui
    p = make_p(unit_cls, np.zeros((48, 64, 3), np.uint8))
    values = panel_values(
        input_directory=str(flash_clip(tmp_path / "clip")), output_directory=str(tmp_path / "out"), loop_n=1,
        keyframe_mode="every n frames", keyframe_interval=4, repair_denoising_strength=0.7,
    )  # fmt: skip
    processed = load_webui_script().run(p, *values)
    run_dir = Path(processed.info.splitlines()[0].split(": ", 1)[1])
    keys = json.loads((run_dir / "keyframes.json").read_text())["keyframes"]
    repairs = sorted((run_dir / "repair" / "loop_001").glob("*.png"))
    whole, inpainted = [c for c in calls if c["mask"] is None], [c for c in calls if c["mask"] is not None]
    assert keys == [0, 4, 8] and len(whole) == 3
    assert [p.name for p in repairs] == ["000002.png"], "the square is painted once, in its first frame"
    assert len(inpainted) == 1 and inpainted[0]["denoising"] == 0.7
    painted = np.asarray(inpainted[0]["mask"].convert("L"))
    assert painted[12:28, 16:32].min() == 255 and painted[40:, 48:].max() == 0
    assert len(FrameStore.open(run_dir).complete_frames("loop_001")) == 9
    assert "generations" in processed.info


def test_frames_share_a_call_unless_a_mask_or_controlnet_takes_each_frame(webui, tmp_path: Path, bikes: Path) -> None:
    _, unit_cls, calls = webui
    own = np.full((48, 64, 3), 7, np.uint8)

    def run(name: str, frames_per_call: int, frame_unit: bool = False, **kw) -> list[np.ndarray]:
        calls.clear()
        p = make_p(unit_cls, own)
        p.script_args = (unit_cls(enabled=frame_unit), unit_cls(enabled=True, image=own))
        values = panel_values(
            input_directory=str(bikes), output_directory=str(tmp_path / name), max_frames=4, loop_n=1, fix_seed=False,
            prompt_schedule="f'a bike {image_i}'", frames_per_call=frames_per_call, **kw,
        )  # fmt: skip
        processed = load_webui_script().run(p, *values)
        store = FrameStore.open(Path(processed.info.splitlines()[0].split(": ", 1)[1]))
        return [store.read_frame("loop_001", i) for i in range(4)]

    alone = run("alone", 1)
    assert [c["seed"] for c in calls] == [100, 102, 104, 106]
    together = run("together", 2)
    # Two frames of two images each per call: an init image, prompt and seed per item.
    assert [c["seed"] for c in calls] == [[100, 101, 102, 103], [104, 105, 106, 107]]
    assert [c["processed"].all_prompts for c in calls] == [
        ["a bike 1", "a bike 1", "a bike 2", "a bike 2"], ["a bike 3", "a bike 3", "a bike 4", "a bike 4"]
    ]  # fmt: skip
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(together[0], together[1])
    # One mask and one image per ControlNet unit on p: such frames go one by one.
    run("unit", 2, frame_unit=True)
    assert len(calls) == 4
    run("mask", 2, use_mask=True, mask_directory=str(masks_for(tmp_path / "masks", 4)))
    assert len(calls) == 4


def test_the_latent_deflicker_works_in_the_run_s_calls_only(webui, tmp_path: Path, bikes: Path) -> None:
    """With latent_deflicker_steps the sampler's callbacks blend the x0 estimates of each call's
    frames; they are registered for the run's calls alone, so a plain img2img job afterwards
    gives what it gave before the run."""
    from modules import script_callbacks

    _, unit_cls, calls = webui
    own = np.full((48, 64, 3), 7, np.uint8)
    seen: list[int] = []

    def plain_job() -> np.ndarray:
        p = make_p(unit_cls, own)
        p.init_images = [to_pil(np.full((48, 64, 3), 0.4, np.float32))]
        p.script_args = (unit_cls(enabled=False), unit_cls(enabled=False))
        return from_pil(processing.process_images(p).images[0])

    def run(name: str, steps: str) -> list[np.ndarray]:
        p = make_p(unit_cls, own)
        p.steps = 8
        p.script_args = (unit_cls(enabled=False), unit_cls(enabled=False))
        values = panel_values(input_directory=str(bikes), output_directory=str(tmp_path / name), max_frames=4,
                              loop_n=1, frames_per_call=2, latent_deflicker_steps=steps)  # fmt: skip
        processed = load_webui_script().run(p, *values)
        store = FrameStore.open(Path(processed.info.splitlines()[0].split(": ", 1)[1]))
        return [store.read_frame("loop_001", i) for i in range(4)]

    before = plain_job()
    script_callbacks.on_cfg_after_cfg(lambda params: seen.append(params.sampling_step))  # another extension's
    plain = run("plain", "")
    counted = len(seen)
    deflickered = run("deflickered", "1, -1")
    assert (
        len(calls) == 5 and len(seen) == 2 * counted
    )  # the plain job, then two calls a run; both runs' steps reached the other extension's callback
    assert all(len(c["processed"].all_prompts) == 4 for c in calls[1:])  # two frames of two images a call
    # The tiny model's random VAE carries little of the blend back (about one level in 255 here):
    # what is checked is that the blend took place, and only inside the run.
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(plain, deflickered, strict=True))
    assert script_callbacks.callback_map["callbacks_cfg_denoiser"] == []
    script_callbacks.callback_map["callbacks_cfg_after_cfg"].clear()
    assert np.array_equal(plain_job(), before)
