"""Flicker metrics on cases whose answer is known, the metrics command, and the run report."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import make_clip
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.metrics import measure, psnr, ssim


def texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 1.0, 0.05, 0.95)


def test_static_clip_has_no_warp_error() -> None:
    frame = texture()
    result = measure([frame] * 5, [frame] * 5)
    assert result.e_warp == 0 and result.e_warp_source == 0 and result.pairs == 4


def test_per_frame_noise_gives_twice_sigma_squared() -> None:
    rng = np.random.default_rng(1)
    clean = np.full((64, 64, 3), 0.5, np.float32)
    clean[16:48, 16:48] = 0.3  # some structure for the flow; it stays still
    sigma = 0.03
    noisy = [clean + rng.normal(0, sigma, clean.shape).astype(np.float32) for _ in range(8)]
    result = measure(noisy, [clean] * 8)
    assert result.e_warp == pytest.approx(2 * sigma**2, rel=0.1)
    assert result.e_warp_source == 0


def test_translation_is_warped_correctly() -> None:
    big = texture(140, 180, seed=2)
    shifted = [big[20 : 20 + 96, 20 + 3 * t : 20 + 3 * t + 128] for t in range(6)]  # the camera pans 3 px
    result = measure(shifted, shifted)
    assert result.e_warp < 1e-4  # motion compensated: a consistent pan is not flicker
    unwarped = float(np.mean([((a - b) ** 2).mean() for a, b in itertools.pairwise(shifted)]))
    assert unwarped > 20 * result.e_warp
    # The same pan with per-frame brightness jitter is caught.
    jitter = [f * (1 + 0.1 * (-1) ** t) for t, f in enumerate(shifted)]
    assert measure(jitter, shifted).e_warp > 50 * result.e_warp


def test_frames_of_different_sizes_are_refused() -> None:
    with pytest.raises(VideoLoopError, match="differs in size"):
        measure([texture(64, 64)] * 3, [texture(96, 128)] * 3)
    with pytest.raises(VideoLoopError, match="differ in length"):
        measure([texture()] * 3, [texture()] * 4)


def test_fidelity_figures() -> None:
    a = texture()
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a + 0.1, 0, 1)
    assert 15 < psnr(a, b) < 25 and ssim(a, b) < 1.0
    mse = ((a.astype(np.float64) - b) ** 2).mean()  # over pixels and channels, in 0-1 units
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)


def test_ssim_is_wang_et_al_formula() -> None:
    """The in-place SSIM gives the textbook formula's value (11x11 Gaussian window, sigma 1.5,
    C1 = 0.01², C2 = 0.03²), worked out here in float64 the plain way, on a textured pair and on
    a dark, nearly flat one, where C1 and C2 decide the value."""

    def formula(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a.astype(np.float64), b.astype(np.float64)
        window = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
        mu_a, mu_b = window(a), window(b)
        var_a, var_b = window(a * a) - mu_a**2, window(b * b) - mu_b**2
        cov = window(a * b) - mu_a * mu_b
        c1, c2 = 0.01**2, 0.03**2
        return float(
            (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean()
        )

    rng = np.random.default_rng(5)
    a = texture()
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    dark = np.full((48, 64, 3), 0.02, np.float32)
    dark_b = (dark + rng.normal(0, 0.004, dark.shape)).astype(np.float32)
    for x, y in ((a, b), (dark, dark_b)):
        assert ssim(x, y) == pytest.approx(formula(x, y), abs=1e-5)
    assert ssim(dark, dark_b) < 0.99 and ssim(a, b) < 0.95


def test_metrics_command_json_and_plot(tmp_path: Path) -> None:
    frames = [(texture(48, 64, seed=4)[:, :] * 255).astype(np.uint8)] * 6
    source = make_clip(tmp_path / "src.mp4", frames, 25)
    rng = np.random.default_rng(5)
    noisy_dir = tmp_path / "noisy"
    noisy_dir.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8)).save(noisy_dir / f"{i}.png")
    plot = tmp_path / "plot.png"
    proc = subprocess.run(
        [sys.executable, "-m", "lib_videoloop", "metrics", str(noisy_dir), "--source", str(source), "--reference", str(source), "--json", "--plot", str(plot)],
        cwd=Path(__file__).parents[1], capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= {"e_warp", "e_warp_source", "tof", "psnr", "ssim"}
    assert data["e_warp"] == pytest.approx(2 * (6 / 255) ** 2, rel=0.25)  # unscaled units
    assert data["e_warp_source"] < 1e-4
    with Image.open(plot) as img:
        assert img.size[0] > 400


def test_every_run_gets_a_report_per_loop(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    settings = Settings(
        input_directory=str(bikes), output_directory=str(tmp_path), width=64, height=48, max_frames=5, loop_n=2, steps=4,
        denoising_strength=0.5, seed=1, temporal_superimpose_alpha_list="1,2,1",
    )  # fmt: skip
    result = Engine(settings, tiny_backend).run()
    report = json.loads((result.run_dir / "report.json").read_text())
    assert [e["loop"] for e in report["loops"]] == [1, 2]
    for entry in report["loops"]:
        assert entry["e_warp"] > 0 and len(entry["per_frame"]) == 4 and entry["psnr"] > 5
    # The source's own flicker, the yardstick printed beside every loop, is the input's E_warp.
    from lib_videoloop.media.store import FrameStore
    from lib_videoloop.metrics import measure

    store = FrameStore.open(result.run_dir)
    own = measure(store.frames("input"), store.frames("input"), with_tof=False).e_warp
    # the report reads the flows the run keeps (float16): within 0.1% of flows computed afresh
    assert report["e_warp_source"] == pytest.approx(own, rel=1e-3) and own > 0
    assert len(list((result.run_dir / "flows").glob("*.flow"))) == 4
    with Image.open(result.run_dir / "flicker.png") as img:
        assert img.mode == "RGB"
    assert result.report == report


@pytest.mark.parametrize("case", ["streamed", "none held in memory", "resumed in loop 2"])
def test_a_loop_measured_as_it_is_made_reports_what_its_frames_on_disk_measure(
    tmp_path: Path, bikes: Path, tiny_backend, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report measures each frame as it is written (no wait at the loop's end), also the
    frames that come faster than it measures (none held in memory: each is read back when its
    turn comes); a loop whose frames came partly from an earlier session is measured
    from disk after it. Either way the numbers are those of the frames in the run folder."""
    from lib_videoloop import loop_end
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine
    from lib_videoloop.errors import InterruptedRun
    from lib_videoloop.media.flows import FlowFolder
    from lib_videoloop.media.store import FrameStore

    monkeypatch.setattr(loop_end._LoopMeter, "QUEUE", 0 if case == "none held in memory" else 8)
    resume_in_loop_2 = case == "resumed in loop 2"

    settings = Settings(
        input_directory=str(bikes), output_directory=str(tmp_path), width=64, height=48, max_frames=6, loop_n=2, steps=4,
        denoising_strength=0.5, seed=1, fix_seed=False, temporal_superimpose_alpha_list="1,2,1",
    )  # fmt: skip
    from lib_videoloop.loop_end import LoopEnd

    read_back: list[int] = []  # loops measured from their files after the loop
    after_loop = LoopEnd._report
    monkeypatch.setattr(
        LoopEnd, "_report", lambda self, loop, folder: read_back.append(loop) or after_loop(self, loop, folder)
    )
    if resume_in_loop_2:
        progress: list[tuple[int, int]] = []
        engine = Engine(settings, tiny_backend, on_progress=lambda p: progress.append((p.loop, p.frame)),
                        should_stop=lambda: progress[-1] == (2, 3))  # fmt: skip
        with pytest.raises(InterruptedRun) as stopped:
            engine.run()
        result = Engine.resume(stopped.value.args[0], tiny_backend).run()
    else:
        result = Engine(settings, tiny_backend).run()
    assert read_back == ([2] if resume_in_loop_2 else [])
    report = json.loads((result.run_dir / "report.json").read_text())
    store = FrameStore.open(result.run_dir)
    flows = FlowFolder(result.run_dir / "flows", lambda i: store.read_frame("input", i), store.frame_count)
    for entry in report["loops"]:
        folder = f"loop_{entry['loop']:03d}"
        on_disk = measure(store.frames(folder), store.frames("input"), fidelity_to_source=True, with_tof=False,
                          flows=flows.pair)  # fmt: skip
        assert entry["per_frame"] == on_disk.per_frame
        assert (entry["e_warp"], entry["psnr"], entry["ssim"]) == (on_disk.e_warp, on_disk.psnr, on_disk.ssim)
    # The input's own warp errors, worked out in loop 1 and kept for the later loops' reports.
    assert report["per_frame_source"] == [None if math.isnan(v) else v for v in on_disk.per_frame_source]
    assert report["e_warp_source"] == on_disk.e_warp_source


@pytest.mark.parametrize("failing", [3, 6], ids=["a frame within the loop", "the loop's last frame"])
def test_a_frame_whose_fidelity_fails_leaves_the_loop_measured_from_its_files(
    tmp_path: Path, bikes: Path, tiny_backend, failing: int, *, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Each frame's PSNR and SSIM are measured on a thread of their own beside the warp error;
    one that fails there, even after the loop's last frame came, costs neither the run nor the
    loop's report: the loop is measured again from its files."""
    import logging

    from lib_videoloop import metrics
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine
    from lib_videoloop.media.flows import FlowFolder
    from lib_videoloop.media.store import FrameStore

    calls: list[int] = []
    fidelity = metrics._fidelity

    def failing_once(out: np.ndarray, src: np.ndarray) -> tuple[float, float]:
        calls.append(1)
        if len(calls) == failing:
            raise MemoryError("no room for the SSIM's blur")
        return fidelity(out, src)

    monkeypatch.setattr(metrics, "_fidelity", failing_once)
    settings = Settings(
        input_directory=str(bikes), output_directory=str(tmp_path), width=64, height=48, max_frames=6, loop_n=2, steps=4,
        denoising_strength=0.5, seed=1, fix_seed=False, temporal_superimpose_alpha_list="1,2,1",
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        result = Engine(settings, tiny_backend).run()
    assert any("loop 1" in r.getMessage() and r.exc_info for r in caplog.records), "the failure is logged with its loop"
    report = json.loads((result.run_dir / "report.json").read_text())
    store = FrameStore.open(result.run_dir)
    flows = FlowFolder(result.run_dir / "flows", lambda i: store.read_frame("input", i), store.frame_count)
    assert [entry["loop"] for entry in report["loops"]] == [1, 2]
    for entry in report["loops"]:
        on_disk = measure(store.frames(f"loop_{entry['loop']:03d}"), store.frames("input"), fidelity_to_source=True,
                          with_tof=False, flows=flows.pair)  # fmt: skip
        assert (entry["e_warp"], entry["psnr"], entry["ssim"]) == (on_disk.e_warp, on_disk.psnr, on_disk.ssim)


def test_a_stopped_run_does_not_wait_for_the_frames_its_report_has_not_reached(
    tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Frames that come faster than the report measures wait for their turn; a stop leaves them
    to the resumed run, which measures the loop from its files, instead of making the user wait
    for each of them, and the one being measured as the stop comes still has its flows."""
    import logging
    import time

    from lib_videoloop import loop_end
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine
    from lib_videoloop.errors import InterruptedRun
    from lib_videoloop.metrics import FlickerMeter

    class Echo:  # a backend that takes no time: the frames outrun the report
        name = "echo"

        def check(self, uses_subseed: bool, uses_mask: bool) -> None:
            pass

        def generate(self, request):  # type: ignore[no-untyped-def]
            return [request.init_image] * request.image_count

    stopped: list[bool] = []
    started: list[bool] = []  # whether the stop had come, for each measure begun
    add = FlickerMeter.add

    def slow_add(self, out, src, ref=None):  # type: ignore[no-untyped-def]
        started.append(bool(stopped))
        if len(started) > 2:  # the one measured as the stop comes needs a flow made long before
            time.sleep(0.3)
        add(self, out, src, ref)

    monkeypatch.setattr(loop_end._LoopMeter, "QUEUE", 0)
    monkeypatch.setattr(FlickerMeter, "add", slow_add)
    written: list[int] = []

    def stop() -> bool:
        if len(written) == 10:
            stopped.append(True)
        return bool(stopped)

    settings = Settings(input_directory=str(bikes), output_directory=str(tmp_path), width=64, height=48,
                        max_frames=12, loop_n=2)  # fmt: skip
    engine = Engine(settings, Echo(), on_progress=lambda p: written.append(p.frame), should_stop=stop)
    with caplog.at_level(logging.ERROR), pytest.raises(InterruptedRun):
        engine.run()
    # At most the measure the report was starting as the stop came; before, all 9 it had not reached.
    assert sum(started) <= 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no frame failed to be measured"


def test_the_pair_across_a_real_cut_is_left_out_of_the_warp_error(bikes: Path) -> None:
    # bikes.mp4 cuts between frames 186 and 187; DIS still "matches" a few percent of the pixels
    # across it, and that pair alone would outweigh the rest of the clip.
    from lib_videoloop.media.resize import resize_frame
    from lib_videoloop.media.sources import open_source

    frames = [resize_frame(f.image, 160, 68) for f in open_source(bikes, start_frame=181, max_frames=12)]
    rng = np.random.default_rng(2)
    noisy = [np.clip(f + rng.normal(0, 0.02, f.shape), 0, 1).astype(np.float32) for f in frames]
    result = measure(noisy, frames, with_tof=False)
    assert result.pairs == 11 and result.skipped_pairs == 1
    assert np.isnan(result.per_frame[5]), "the pair 186-187 is the one left out"
    # The other pairs are grain plus the clip's own motion: near 2 sigma^2 plus the source's own.
    assert result.e_warp < 2 * 0.02**2 + 2 * result.e_warp_source
