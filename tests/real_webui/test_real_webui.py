"""Video Loopback in real WebUIs: AUTOMATIC1111 v1.10.1 and Forge, built by rig.py, on the CPU.

Opt-in: set VIDEO_LOOPBACK_A1111 and/or VIDEO_LOOPBACK_FORGE to a folder that rig.py built, e.g.

    VIDEO_LOOPBACK_A1111=/work/rig/a1111 VIDEO_LOOPBACK_FORGE=/work/rig/forge \\
        .venv-gradio4/bin/python -m pytest -p no:cacheprovider tests/real_webui -v

(the gradio-4 venv has Playwright for the page check). Each WebUI is started cold by the tests
and stopped afterwards; the first job is the first request after the start.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rig
from conftest import CHROMIUM, flash_clip, launch_chromium

INSTALLS = {kind: os.environ.get(f"VIDEO_LOOPBACK_{kind.upper()}") for kind in ("a1111", "forge")}
PORT = {"a1111": 7871, "forge": 7872}
if not any(INSTALLS.values()):
    pytest.skip(
        "real-WebUI tests: set VIDEO_LOOPBACK_A1111 / VIDEO_LOOPBACK_FORGE to installs built by tests/real_webui/rig.py",
        allow_module_level=True,
    )


# -- helpers ---------------------------------------------------------------------------------
def call(url: str, path: str, body: dict | None = None, timeout: float = 900) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def make_clip(path: Path, frames: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    """A moving gradient with a 440 Hz tone: something to animate and a sound to keep."""
    import av

    w, h = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        x = np.linspace(0, 1, w, dtype=np.float32)
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        for i in range(frames):
            rgb = np.stack([(x + i / frames) % 1 + 0 * y, y + 0 * x, np.full((h, w), 0.3 + 0.05 * i)], -1)
            frame = av.VideoFrame.from_ndarray((rgb * 255).astype(np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        t = np.arange(48000 * frames // 8) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate = 48000
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
    return path


def script_info(url: str) -> list[dict]:
    status, info = call(url, "/sdapi/v1/script-info")
    assert status == 200
    return next(s for s in info if s["name"] == "video loopback" and s["is_img2img"])["args"]


def job(
    url: str,
    timeout: float = 900,
    alwayson: dict | None = None,
    steps: int = 6,
    body_extra: dict | None = None,
    **panel: object,
) -> tuple[int, dict]:
    """One img2img request with Video Loopback chosen and script_args in the panel's order."""
    args = script_info(url)
    labels = [a["label"] for a in args]
    values = {a["label"]: a["value"] for a in args}
    unknown = set(panel) - set(labels)
    assert not unknown, unknown
    values.update(panel)
    body = {
        "prompt": "a watercolour street", "negative_prompt": "", "steps": steps, "cfg_scale": 5, "denoising_strength": 0.5,
        "width": 64, "height": 48, "seed": 1234, "subseed": 99, "sampler_name": "Euler", "batch_size": 1, "n_iter": 1,
        "init_images": [], "script_name": "video loopback", "script_args": [values[label] for label in labels],
        "send_images": True, "save_images": False,
    }  # fmt: skip
    if alwayson:
        body["alwayson_scripts"] = alwayson
    body.update(body_extra or {})
    return call(url, "/sdapi/v1/img2img", body, timeout)


def run_folder(response: dict) -> Path:
    info = json.loads(response["info"])
    first = info["infotexts"][0].splitlines()[0]
    assert first.startswith("Video Loopback run folder: "), first
    return Path(first.split(": ", 1)[1])


def frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(f)) for f in sorted(folder.glob("*.png"))]


def log_since(dest: Path, offset: int) -> str:
    return (dest / "webui.log").read_bytes()[offset:].decode(errors="replace")


# -- the server ------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[k for k, v in INSTALLS.items() if v])
def webui(request: pytest.FixtureRequest):
    kind = request.param
    dest = Path(INSTALLS[kind]).resolve()
    rig.stop(dest)
    (dest / "probe.jsonl").unlink(missing_ok=True)
    offset = (dest / "webui.log").stat().st_size if (dest / "webui.log").exists() else 0
    started = time.monotonic()
    url = rig.start(dest, port=PORT[kind])
    print(f"{kind}: answered after {time.monotonic() - started:.0f} s")
    yield {"kind": kind, "dest": dest, "url": url, "log_offset": offset}
    rig.stop(dest)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "street.mp4")


# -- the tests, in order: the first job is the first request after the start ------------------
def test_first_job_after_a_cold_start_and_again_warm(webui, clip: Path, tmp_path: Path) -> None:
    url = webui["url"]
    # the warm job blends along the optical flow of the input
    for attempt, method in (("cold", "simple"), ("warm", "along optical flow of reference")):
        started = time.monotonic()
        status, response = job(url, input_directory=str(clip), output_directory=str(tmp_path / attempt), max_frames=4,
                               loop_n=2, superimpose_alpha=0.5, temporal_superimpose_alpha_list="1,2,1",
                               temporal_superimpose_method=method)  # fmt: skip
        assert status == 200, response
        print(f"{webui['kind']} {attempt} job: {time.monotonic() - started:.1f} s")
        root = run_folder(response)
        assert root.parent == tmp_path / attempt
        for loop in ("loop_001", "loop_002"):
            assert len(frames(root / loop)) == 4, loop
        settings = json.loads((root / "settings.json").read_text())
        assert settings["run"]["models"][-1] not in ("", "webui"), settings["run"]["models"]
        assert settings["temporal_superimpose_method"] == method
        assert len(list((root / "flows").glob("*.flow"))) == 3, "one flow file per pair of neighbours"
        report = json.loads((root / "report.json").read_text())
        assert report
        videos = list(root.glob("*.mp4"))
        assert videos
        import av

        with av.open(str(videos[0])) as container:
            assert container.streams.audio, "the source's sound is in the video"
            assert container.streams.video[0].frames == 4
        images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in response["images"]]
        assert len(images) >= 3 and images[0].size == (64, 48)
        info = json.loads(response["info"])
        recorded = json.loads(info["extra_generation_params"]["Video Loopback"])
        assert recorded["temporal_superimpose_method"] == method and "run" not in recorded
        assert "Video: " in info["infotexts"][0]
    # The run's own lines reach the console (the WebUI was started without --log-level).
    text = log_since(webui["dest"], webui["log_offset"])
    assert text.count("Video Loopback: plan: 4 frames x 2 loops = 8 generations") == 2, text[-3000:]
    assert "Video Loopback: disk: the run writes about" in text and "Video Loopback: loop 2/2 done" in text


def test_started_without_a_traceback_and_lists_the_script(webui) -> None:
    url, dest = webui["url"], webui["dest"]
    text = log_since(dest, webui["log_offset"])
    ours = [block for block in text.split("Traceback")[1:] if "video" in block.lower() and "loopback" in block.lower()]
    assert not ours, ours[0][:3000]
    assert "bad options item type" not in text
    assert "Error loading script: video_loopback.py" not in text
    status, scripts = call(url, "/sdapi/v1/scripts")
    assert status == 200 and "video loopback" in scripts["img2img"] and "video loopback" not in scripts["txt2img"]
    from lib_videoloop.webui.panel import PANEL_ORDER

    args = script_info(url)
    assert [a["label"] for a in args] == list(PANEL_ORDER)
    by_label = {a["label"]: a["value"] for a in args}
    assert by_label["loop_n"] == 10 and by_label["superimpose_alpha"] == 0.25
    # The settings page was built at start (UI mode): an option the WebUI cannot render stops it.
    # /sdapi/v1/options cannot show it: its response model knows only the WebUI's own options.
    # install.py's requirement went through the WebUI's shell quoted: no stray "=12" file.
    assert not list((dest / "webui").glob("=*"))


def test_panel_opens_on_the_webuis_own_page(webui, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "video" in m.text.lower() else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(webui["url"] + "/", wait_until="load", timeout=120_000)
        page.locator("#tabs button", has_text="img2img").first.click(timeout=120_000)
        dropdown = page.locator("#img2img_script_container #script_list")
        dropdown.locator("input").first.click()
        # gradio 3 gives options role "button", gradio 4 "option"; both mark them this way
        dropdown.locator('[data-testid="dropdown-option"][aria-label="Video Loopback"]').click()
        loops = page.locator("#script_video_loopback_loop_n")
        loops.wait_for(state="visible", timeout=30_000)
        # the keyframe preview: the mode's settings appear, and the strip shows where keyframes fall
        clip = flash_clip(tmp_path / "flash")
        page.locator("#script_video_loopback_input_directory textarea").first.fill(str(clip))
        page.locator("#script_video_loopback_keyframes").get_by_text("Keyframes").first.click()
        mode = page.locator("#script_video_loopback_keyframe_mode")
        mode.locator("input").first.click()
        mode.locator('[data-testid="dropdown-option"][aria-label="every n frames"]').click()
        page.locator("#script_video_loopback_keyframe_interval input").first.fill("4")
        page.locator("#script_video_loopback_preview_keyframes").click()
        page.locator("#script_video_loopback_keyframe_strip img").wait_for(state="visible", timeout=60_000)
        message = page.locator("#script_video_loopback_keyframe_message").first.inner_text()
        assert "3 keyframes of 9 frames" in message and "0, 4, 8" in message, message
        shot = Path(__file__).parents[1] / "artifacts" / f"real-{webui['kind']}-panel.png"
        shot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        page.locator("#tabs button", has_text="Settings").first.click()
        page.locator("#settings").get_by_text("Video Loopback").first.click()
        page.locator("#setting_video_loopback_default_superimpose_alpha").wait_for(state="visible", timeout=30_000)
        browser.close()
    page_errors = [e for e in errors if "loopback" in e.lower() or "video_loopback" in e.lower()]
    assert not page_errors, page_errors


def test_interrupt_then_resume_equals_a_straight_run(webui, clip: Path, tmp_path: Path) -> None:
    url = webui["url"]
    # fix_seed off: every frame has its own seed, and the frame after the resume must not depend
    # on what the server generated before it (A1111 encodes init images with torch's global RNG).
    # the temporal filter: its backward pass is made anew by the resumed run, its flows are read back
    panel = {
        "input_directory": str(clip),
        "max_frames": 8,
        "loop_n": 3,
        "fix_seed": False,
        "superimpose_alpha": 0.5,
        "temporal_superimpose_method": "temporal filter along optical flow",
        "temporal_filter_strength": 0.6,
    }
    status, straight = job(url, output_directory=str(tmp_path / "straight"), **panel)
    assert status == 200, straight
    expected = frames(run_folder(straight) / "loop_003")

    out = tmp_path / "stopped"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=job(url, output_directory=str(out), **panel)))
    thread.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(out.glob("*/loop_002/*.png")):
        time.sleep(0.2)
    call(url, "/sdapi/v1/interrupt", {})
    thread.join(600)
    status, stopped = result["r"]
    assert status == 200, stopped
    text = json.loads(stopped["info"])["infotexts"][0]
    assert "resume_run_folder" in text, text
    root = Path(text.rsplit(": ", 1)[1].strip())
    assert len(frames(root / "loop_003")) < 8, "the run was stopped before its end"

    status, resumed = job(url, resume_run_folder=str(root))
    assert status == 200, resumed
    assert run_folder(resumed) == root
    got = frames(root / "loop_003")
    assert len(got) == 8
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert np.array_equal(a, b), f"frame {i + 1} differs after the resume"


def test_frames_batched_in_one_call_follow_their_own_seeds_and_prompts(webui, clip: Path, tmp_path: Path) -> None:
    url = webui["url"]
    panel = {
        "input_directory": str(clip),
        "max_frames": 4,
        "loop_n": 1,
        "fix_seed": False,
        "superimpose_alpha": 1.0,
        "prompt_schedule": "f'a watercolour street, frame {image_i}'",
    }
    runs = {}
    for frames_per_call in (1, 4):
        started = time.monotonic()
        status, response = job(url, output_directory=str(tmp_path / str(frames_per_call)), frames_per_call=frames_per_call,
                               **panel)  # fmt: skip
        assert status == 200, response
        print(f"{webui['kind']} frames_per_call={frames_per_call}: {time.monotonic() - started:.1f} s")
        runs[frames_per_call] = [
            f.astype(np.float64) / np.iinfo(f.dtype).max for f in frames(run_folder(response) / "loop_001")
        ]
    alone, together = runs[1], runs[4]
    assert len(together) == 4
    diffs = [float(np.abs(a - b).max()) for a, b in zip(alone, together, strict=True)]
    print(f"{webui['kind']} largest difference per frame, batched vs one by one: {diffs}")
    # The first frame of the call is the one-by-one frame up to the order of floating-point sums.
    # The later ones differ by the VAE encoder's sampling alone: both WebUIs draw it from torch's
    # global generator, which the backend seeds with the call's first seed (0.07-0.11 here with the
    # rig's random VAE; a trained VAE's posterior is far narrower).
    assert diffs[0] < 2 / 255
    # Each frame has its own seed and prompt in the batch: no two frames came out alike.
    assert min(float(np.abs(together[i] - together[i + 1]).mean()) for i in range(3)) > 0.01


def test_keyframe_mode_generates_keyframes_and_inpaints_repairs(webui, tmp_path: Path) -> None:
    # a red square seen only in frames 1-3: between keyframes 0 and 4, so it is inpainted once
    clip = flash_clip(tmp_path / "flash")
    status, response = job(webui["url"], input_directory=str(clip), output_directory=str(tmp_path / "out"), loop_n=2,
                           keyframe_mode="every n frames", keyframe_interval=4, repair_denoising_strength=0.7)  # fmt: skip
    assert status == 200, response
    root = run_folder(response)
    assert json.loads((root / "keyframes.json").read_text())["keyframes"] == [0, 4, 8]
    for loop in ("loop_001", "loop_002"):
        assert len(frames(root / loop)) == 9, loop
        assert [p.name for p in (root / "repair" / loop).iterdir()] == ["000002.png"], loop
    last = json.loads((root / "report.json").read_text())["loops"][-1]
    assert last["generations"] == 4 and last["repaired_frames"] == 1
    painted = frames(root / "loop_002")
    square = (slice(12, 28), slice(16, 32))
    assert np.abs(painted[3][square].astype(int) - painted[1][square].astype(int)).mean() < 8, "carried, not repainted"


def skipped_once(url: str, out: Path, made_first: int, **panel: object) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A one-loop job whose Skip is pressed (the API's) once `made_first` frames are written: the
    input frames and loop 1's. Enough steps that the Skip lands while a frame is sampled."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=job(url, steps=60, output_directory=str(out), **panel)))
    thread.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(list(out.glob("*/loop_001/*.png"))) < made_first:
        time.sleep(0.05)
    call(url, "/sdapi/v1/skip", {})
    thread.join(900)
    status, response = result["r"]
    assert status == 200, response
    root = run_folder(response)
    return frames(root / "input"), frames(root / "loop_001")


def test_skip_keeps_the_frame_it_was_pressed_on(webui, clip: Path, tmp_path: Path) -> None:
    before, after = skipped_once(webui["url"], tmp_path / "skip", 3, input_directory=str(clip), max_frames=8,
                                 loop_n=1, superimpose_alpha=1.0)  # fmt: skip
    assert len(after) == 8, "the run goes on after a skip"
    kept = [i for i in range(8) if np.array_equal(before[i], after[i])]
    assert len(kept) == 1, f"exactly the skipped frame keeps its input, got {kept}"


def test_controlnet_unit_without_image_gets_each_frame(webui, clip: Path, tmp_path: Path) -> None:
    probe = webui["dest"] / "probe.jsonl"
    probe.unlink(missing_ok=True)
    unit = {"enabled": True, "module": "None", "model": "None", "weight": 1.0}
    if webui["kind"] == "a1111":
        unit["module"] = "none"
    status, response = job(webui["url"], alwayson={"controlnet": {"args": [unit]}}, input_directory=str(clip),
                           output_directory=str(tmp_path), max_frames=4, loop_n=1)  # fmt: skip
    assert status == 200, response  # no model: ControlNet reports it, the job still runs
    root = run_folder(response)
    inputs = frames(root / "input")
    records = [json.loads(line) for line in probe.read_text().splitlines()]
    seen = [r["units"][0]["image"] for r in records if r["units"] and r["units"][0]["enabled"]]
    assert len(seen) == 4, records
    for i, image in enumerate(seen):
        assert image is not None, f"frame {i + 1}: the unit had no image"
        assert image["shape"][:2] == [48, 64]
        assert abs(image["mean"] - inputs[i][..., :3].mean()) < 1.0, f"frame {i + 1} got another image"


def test_a_run_its_disk_cannot_hold_is_refused_with_the_room_it_needs(webui, tmp_path: Path) -> None:
    """On a 3 MB filesystem: a 4-frame job runs; 40 frames over 6 loops (about 5 MB: the
    random-weight checkpoint's frames take 16-bit PNGs three times the size of the gradient's
    input frames) are refused before anything is written, the message naming the setting."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(small)], check=False).returncode == 0
    )
    if not mounted:
        pytest.skip("needs a small filesystem: mounting a tmpfs takes root")
    try:
        longer = make_clip(tmp_path / "forty.mp4", frames=40)
        status, response = job(
            webui["url"], input_directory=str(longer), output_directory=str(small / "few"), max_frames=4, loop_n=1
        )
        assert status == 200, response
        status, response = job(
            webui["url"], input_directory=str(longer), output_directory=str(small / "many"), max_frames=40, loop_n=6
        )
        text = json.dumps(response)
        assert status != 200 and "VideoLoopError" in text, text[:2000]
        assert "output_directory" in text and "MB free" in text and "fewer loops" in text, text[:2000]
        assert not (small / "many").exists(), "nothing is written for a refused run"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_exposed_server_refuses_paths_outside_the_allowed_folders(webui, clip: Path, tmp_path: Path) -> None:
    dest = webui["dest"]
    rig.stop(dest)
    url = rig.start(dest, port=PORT[webui["kind"]], listen=True)
    try:
        out = tmp_path / "not-allowed"
        status, response = job(url, input_directory=str(clip), output_directory=str(out), max_frames=2, loop_n=1)
        text = json.dumps(response)
        assert status != 200
        assert "is outside the folders this shared WebUI allows" in text, text[:2000]
        assert "input_directory" in text
        assert not out.exists(), "nothing is written for a refused run"
    finally:
        rig.stop(dest)
        webui["url"] = rig.start(dest, port=PORT[webui["kind"]])


def test_the_stand_ins_colour_correction_is_the_webuis(webui) -> None:
    """tests/webui's processing_color reimplements the WebUI's (no skimage or blendmodes in CI):
    it must give the same pixels as modules.processing's own function."""
    import subprocess

    webui_dir = webui["dest"] / "webui"
    script = Path(__file__).with_name("color_check.py")
    done = subprocess.run(
        [str(webui_dir / "venv" / "bin" / "python"), str(script), *rig.ARGS[webui["kind"]]], cwd=webui_dir,
        capture_output=True, text=True, check=False,
        env={**rig.server_env(webui["dest"]), "PYTHONPATH": str(webui_dir)}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"compared": 8, "identical": 8}


def test_colour_correction_is_set_before_processing_towards_each_input_frame(webui, clip: Path, tmp_path: Path) -> None:
    """With img2img colour correction on, every generation arrives with one correction per image,
    made from its input frame (so the WebUI neither builds its own from the blended init image
    nor is the image corrected a second time), and the frames keep the input's colours."""
    url = webui["url"]
    probe = webui["dest"] / "probe.jsonl"
    offset = probe.stat().st_size if probe.exists() else 0
    panel = {"input_directory": str(clip), "max_frames": 4, "loop_n": 2, "superimpose_alpha": 1.0, "frames_per_call": 1}
    runs = {}
    for on in (False, True):
        extra = {"override_settings": {"img2img_color_correction": on}, "batch_size": 2}
        status, response = job(url, output_directory=str(tmp_path / str(on)), body_extra=extra, **panel)
        assert status == 200, response
        runs[on] = run_folder(response)
    records = [json.loads(line) for line in probe.read_bytes()[offset:].decode().splitlines()]
    assert len(records) == 16
    assert all(r["color_corrections"] is None for r in records[:8])
    inputs = [np.asarray(Image.open(f).convert("RGB")) for f in sorted((runs[True] / "input").glob("*.png"))]
    import cv2

    for n, r in enumerate(records[8:]):
        expected = cv2.cvtColor(inputs[n % 4], cv2.COLOR_RGB2LAB).astype(np.float64).mean(axis=(0, 1))
        assert r["color_corrections"]["count"] == 2
        assert np.allclose(r["color_corrections"]["mean"], expected, atol=1.0), (n, r, expected)

    def colour_gap(folder: Path) -> float:
        got = frames(folder / "loop_002")
        return float(np.mean([np.abs(g.astype(np.float64).mean((0, 1)) / np.iinfo(g.dtype).max * 255
                                     - i.astype(np.float64).mean((0, 1))).sum() for g, i in zip(got, inputs, strict=True)]))  # fmt: skip

    print(
        f"{webui['kind']} colour gap to the input, off / on: {colour_gap(runs[False]):.1f} / {colour_gap(runs[True]):.1f}"
    )
    assert colour_gap(runs[True]) < colour_gap(runs[False])


def test_variation_strength_changes_the_frames_and_follows_the_subseed(webui, clip: Path, tmp_path: Path) -> None:
    url = webui["url"]
    panel = {"input_directory": str(clip), "max_frames": 3, "loop_n": 1, "superimpose_alpha": 1.0}
    runs = {}
    for name, strength, subseed in (("none", 0, 99), ("a", 0.6, 99), ("a-again", 0.6, 99), ("b", 0.6, 7)):
        extra = {"subseed_strength": strength, "subseed": subseed}
        status, response = job(url, output_directory=str(tmp_path / name), body_extra=extra, **panel)
        assert status == 200, response
        runs[name] = frames(run_folder(response) / "loop_001")

    def gap(x: str, y: str) -> float:
        return max(float(np.abs(a.astype(np.float64) - b).mean()) for a, b in zip(runs[x], runs[y], strict=True))

    assert gap("a", "a-again") == 0, "the same seeds give the same frames"
    assert gap("none", "a") > 0 and gap("a", "b") > 0, "the variation seed and its strength change the frames"


def test_the_patch_blend_pass_makes_the_final_frames(webui, clip: Path, tmp_path: Path) -> None:
    panel = {"input_directory": str(clip), "max_frames": 6, "loop_n": 1, "video_post_process_method": "patch blend",
             "video_post_process_alpha": 1.0, "patch_blend_window": 5, "output_directory": str(tmp_path)}  # fmt: skip
    status, response = job(webui["url"], **panel)
    assert status == 200, response
    root = run_folder(response)
    blended, made = frames(root / "loop_001_denoised"), frames(root / "loop_001")
    assert len(blended) == len(made) == 6
    assert any(not np.array_equal(a, b) for a, b in zip(blended, made, strict=True))
    assert (root / f"{root.name}.mp4").is_file()


def test_the_latent_deflicker_changes_the_runs_frames_and_no_other_job(webui, clip: Path, tmp_path: Path) -> None:
    """latent_deflicker_steps through the sampler's after-CFG callback, with the settings sent by
    name (the named script_args form): the run's frames change, the WebUI reports no callback
    error, and a plain job after the runs gives the images it gave before them (txt2img: AUTOMATIC1111's
    img2img encodes its init image with the global random generator, so it repeats only roughly). With
    Euler a (a k-diffusion sampler: the callback sees x0) and DDIM (a timestep sampler: in
    AUTOMATIC1111 the callback sees the noise prediction)."""
    url = webui["url"]
    plain = {"prompt": "a watercolour street", "steps": 6, "cfg_scale": 5, "width": 64, "height": 48, "seed": 77,
             "sampler_name": "Euler a", "batch_size": 2, "n_iter": 1, "save_images": False}  # fmt: skip
    status, before = call(url, "/sdapi/v1/txt2img", plain)
    assert status == 200, before
    offset = (webui["dest"] / "webui.log").stat().st_size
    for sampler in ("Euler a", "DDIM"):
        made = {}
        for steps in ("", "1, -1"):
            named = {"input_directory": str(clip), "output_directory": str(tmp_path / f"{sampler}{steps}"),
                     "max_frames": 4, "loop_n": 1, "superimpose_alpha": 1.0, "frames_per_call": 4,
                     "latent_deflicker_steps": steps}  # fmt: skip
            body = {"script_args": [named], "sampler_name": sampler, "steps": 8, "batch_size": 1}
            status, response = job(url, body_extra=body)
            assert status == 200, response
            made[steps] = frames(run_folder(response) / "loop_001")
        assert len(made[""]) == len(made["1, -1"]) == 4
        assert all(not np.array_equal(a, b) for a, b in zip(made[""], made["1, -1"], strict=True)), sampler
    log = log_since(webui["dest"], offset)
    assert "Error executing callback" not in log and "Traceback" not in log, log[-3000:]
    status, after = call(url, "/sdapi/v1/txt2img", plain)
    assert status == 200 and after["images"] == before["images"]


def test_named_script_args_make_the_frames_the_positional_list_makes(webui, clip: Path, tmp_path: Path) -> None:
    """The same job with script_args by position and by name (one object), sent as JSON and
    through the webuiapi client: the same frames."""
    url = webui["url"]
    named = {"input_directory": str(clip), "max_frames": 3, "loop_n": 1, "superimpose_alpha": 0.5,
             "temporal_superimpose_alpha_list": "1,2,1", "fix_seed": False}  # fmt: skip
    made = {}
    status, response = job(url, output_directory=str(tmp_path / "positional"), **named)
    assert status == 200, response
    made["positional"] = frames(run_folder(response) / "loop_001")
    body = {"script_args": [dict(named, output_directory=str(tmp_path / "named"))]}
    status, response = job(url, body_extra=body)
    assert status == 200, response
    made["named"] = frames(run_folder(response) / "loop_001")
    webuiapi = pytest.importorskip("webuiapi", reason="pip install webuiapi into this venv for the client's part")
    host, port = url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port))
    args = script_info(url)
    positional = [dict({a["label"]: a["value"] for a in args}, **named, output_directory=str(tmp_path / "client-p"))[
        a["label"]] for a in args]  # fmt: skip
    for name, script_args in (("client, positional", positional),
                              ("client, named", [dict(named, output_directory=str(tmp_path / "client-n"))])):  # fmt: skip
        result = api.img2img(images=[], prompt="a watercolour street", negative_prompt="", steps=6, cfg_scale=5,
                             denoising_strength=0.5, width=64, height=48, seed=1234, subseed=99, sampler_name="Euler",
                             script_name="video loopback", script_args=script_args, save_images=False)  # fmt: skip
        first = result.info["infotexts"][0].splitlines()[0]
        made[name] = frames(Path(first.split(": ", 1)[1]) / "loop_001")
    assert made["positional"] and all(len(f) == 3 for f in made.values())
    for a, b in zip(made["positional"], made["named"], strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(made["client, positional"], made["client, named"], strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(made["positional"][0], made["positional"][1])  # frames differ: a real comparison
