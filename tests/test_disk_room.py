"""A run its disk cannot hold is refused before its folder exists, saying how much room it
needs; and the room it says it needs is about what it writes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from lib_videoloop.backends import GenerationRequest
from lib_videoloop.cli import main
from lib_videoloop.config import FILTER_METHOD, PATCH_BLEND, Settings
from lib_videoloop.engine import Engine
from lib_videoloop.errors import InterruptedRun, VideoLoopError


class Instant:
    """Gives back each frame's init image at once: a run's whole folder, without a model."""

    name = "instant"

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        pass

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        return [request.init_image] * request.image_count


class Grainy(Instant):
    """Each frame's init image with seeded grain, as a random-weight checkpoint's noisy answers."""

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        grain = np.random.default_rng(request.seed).normal(0, 0.1, request.init_image.shape).astype(np.float32)
        return [np.clip(request.init_image + grain, 0, 1)] * request.image_count


def _settings(bikes: Path, out: Path, **kw: object) -> Settings:
    base = dict(
        input_directory=str(bikes), output_directory=str(out), width=256, height=256, max_frames=12, loop_n=2,
        denoising_strength=0.5, seed=1, prompt="a street",
    )  # fmt: skip
    return Settings(**{**base, **kw})


def _size_mb(text: str) -> float:
    number, unit = re.search(r"about ([\d.]+) (KB|MB|GB)", text).groups()
    return float(number) * {"KB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


def test_a_run_its_disk_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    # The disk as the system reports it, with 20 MB free: 12 frames at 512x512, the input and
    # 4 loops, take about 75 MB, their flows 23 MB.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=20_000_000))
    out = tmp_path / "out"

    with pytest.raises(VideoLoopError) as refused:
        Engine(_settings(bikes, out, width=512, height=512, loop_n=4), Instant()).run()

    message = str(refused.value)
    assert "output_directory" in message and str(out) in message
    assert "20.0 MB free" in message
    assert 60 < _size_mb(message) < 120, message
    assert "fewer loops" in message
    assert not out.exists() or not any(out.iterdir()), "a refused run leaves no run folder"


@pytest.mark.parametrize(
    "answers", ["the init image", "grain on a smooth gradient", "a patch blend pass each loop", "the temporal filter"]
)
def test_the_room_a_run_says_it_needs_is_about_the_most_its_folder_takes(
    answers: str, tmp_path: Path, bikes: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    if answers == "the init image":
        settings, backend = _settings(bikes, tmp_path / "out"), Instant()
    elif answers == "a patch blend pass each loop":  # each loop kept twice, and the pass's scratch while it runs
        settings, backend = (
            _settings(bikes, tmp_path / "out", width=128, height=128, video_post_process_method=PATCH_BLEND),
            Instant(),
        )
    elif answers == "the temporal filter":  # its scratch files while a loop runs
        settings, backend = _settings(bikes, tmp_path / "out", temporal_superimpose_method=FILTER_METHOD), Instant()
    else:  # an input whose frames compress far better than the loops' (a third, in the WebUI rig)
        x = np.linspace(0, 255, 96, dtype=np.float32)
        frames = [np.stack([np.broadcast_to((x + 8 * i) % 256, (64, 96))] * 3, -1).astype(np.uint8) for i in range(12)]
        clip = make_clip(tmp_path / "gradient.mp4", frames)
        settings, backend = _settings(clip, tmp_path / "out", width=96, height=64), Grainy()
    with caplog.at_level("INFO"), _Peak(tmp_path / "out") as peak, _Peak(system_tmp) as elsewhere:
        Engine(settings, backend).run()

    assert elsewhere.bytes == 0, "a run keeps its scratch in its own folder, not in the system's"

    said = _size_mb(next(r.getMessage() for r in caplog.records if r.getMessage().startswith("disk:")))
    assert 0.8 * peak.bytes / 1e6 < said < 1.2 * peak.bytes / 1e6, (said, peak.bytes)


@pytest.mark.parametrize("passes", ["none", "a patch blend pass each loop"])
def test_a_stopped_run_resumes_only_when_its_disk_holds_what_is_left(
    passes: str, tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[int] = []

    def stop_after_seven() -> bool:
        made.append(1)
        return len(made) > 7

    extra = {} if passes == "none" else dict(width=128, height=128, video_post_process_method=PATCH_BLEND)
    with pytest.raises(InterruptedRun):
        Engine(_settings(bikes, tmp_path, **extra), Instant(), should_stop=stop_after_seven).run()
    (run_dir,) = tmp_path.iterdir()
    before = _bytes(run_dir)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1_000_000))

    with pytest.raises(VideoLoopError) as refused:
        Engine.resume(run_dir, Instant()).run()

    message = str(refused.value)
    assert "resume" in message and str(run_dir) in message and "1.0 MB free" in message
    assert "Free some space on that disk, then resume" in message
    assert _bytes(run_dir) == before, "a refused resume writes nothing"

    monkeypatch.setattr(shutil, "disk_usage", real)
    caplog.clear()
    with caplog.at_level("INFO"), _Peak(run_dir) as peak:
        Engine.resume(run_dir, Instant()).run()
    said = _size_mb(next(r.getMessage() for r in caplog.records if r.getMessage().startswith("disk:")))
    wrote = (peak.bytes - before) / 1e6
    assert 0.8 * wrote < said < 1.2 * wrote, (said, wrote)


def _bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("output", ["smoothed.mp4", "frames"])
def test_smooth_refuses_a_clip_its_disks_cannot_hold(
    output: str, tmp_path: Path, bikes: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The temporal filter keeps 100 frames of bikes.mp4 (640x272) on disk at 24 bytes a pixel,
    with their flows: about 560 MB in the system's temporary folder; as a folder of frames, the
    output takes about 90 MB more."""
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=50_000_000))
    args = ["smooth", str(bikes), "-o", str(tmp_path / output), "--max_frames", "100"]

    assert main([*args, "--temporal_superimpose_method", FILTER_METHOD]) == 2
    message = capsys.readouterr().err
    assert "TMPDIR" in message and "50.0 MB free" in message and 450 < _size_mb(message) < 700, message

    code = main(args)  # simple: nothing kept in the temporary folder
    message = capsys.readouterr().err
    if output == "frames":
        assert code == 2 and "--output" in message and 70 < _size_mb(message) < 110, message
    else:
        assert code == 0, message
    assert output == "smoothed.mp4" or not (tmp_path / output).exists()


class _Peak:
    """The most a folder took while the block ran, looked at every 5 ms."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.bytes, self._done = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            done = self._done.is_set()  # one last look after the block
            total = 0
            for root, _dirs, files in os.walk(self.folder):  # a folder removed meanwhile is passed over
                for name in files:
                    with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
                        total += os.stat(os.path.join(root, name)).st_size
            self.bytes = max(self.bytes, total)
            if done:
                return
            self._done.wait(0.005)
