"""The command line as a user runs it: a real process, Ctrl-C, the printed resume command."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import read_video
from lib_videoloop.cli import build_parser, main
from lib_videoloop.config import FILTER_METHOD
from lib_videoloop.media.sources import open_source
from lib_videoloop.media.store import FrameStore

ROOT = Path(__file__).parents[1]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lib_videoloop", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        **kw,
    )


def test_help_explains_every_flag_on_one_line() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and "\n" not in action.help, (name, action.dest)
    text = cli("run", "--help").stdout
    for flag in (
        "--loop_n",
        "--superimpose_alpha",
        "--denoising_schedule",
        "--temporal_superimpose_alpha_list",
        "--resume",
        "--config",
    ):
        assert flag in text


def test_ctrl_c_stops_after_the_frame_and_the_printed_command_resumes(tmp_path: Path, bikes: Path) -> None:
    args = [
        "run",
        str(bikes),
        "-o",
        str(tmp_path / "out"),
        "--model",
        "tiny-random",
        "--max_frames",
        "6",
        "--loop_n",
        "2",
        "--width",
        "64",
        "--height",
        "48",
        "--steps",
        "4",
        "--seed",
        "7",
        "--no-fix_seed",
        "--temporal_superimpose_alpha_list",
        "1,2,1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib_videoloop", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list((tmp_path / "out").glob("*/loop_001/000002.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "resumable" in out
    command = next(line.strip() for line in out.splitlines() if "--resume" in line)
    run_dir = Path(shlex.split(command)[shlex.split(command).index("--resume") + 1])
    done_before = len(FrameStore.open(run_dir).complete_frames("loop_001"))
    assert 2 <= done_before < 6
    resumed = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Video:" in resumed.stdout

    # The same settings in one go give the same frames, bit for bit (repeat with --config).
    again = cli(
        "run", "--config", str(run_dir / "settings.json"), "-o", str(tmp_path / "again"), "--model", "tiny-random"
    )
    assert again.returncode == 0, again.stderr
    other = next((tmp_path / "again").iterdir())
    a, b = FrameStore.open(run_dir), FrameStore.open(other)
    for i in range(6):
        assert np.array_equal(a.read_frame("loop_002", i), b.read_frame("loop_002", i))


def test_bad_settings_fail_with_a_message_not_a_traceback(
    tmp_path: Path, bikes: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        ["run", str(bikes), "-o", str(tmp_path), "--model", "tiny-random", "--temporal_superimpose_alpha_list", "1,2"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "temporal_superimpose_alpha_list" in err and "odd number" in err and "Traceback" not in err
    assert main(["run", str(tmp_path / "nope.mp4"), "-o", str(tmp_path), "--model", "tiny-random"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_smooth_a_real_clip_keeps_length_rate_and_sound(tmp_path: Path, bigbuckbunny: Path) -> None:
    out = tmp_path / "smooth.mp4"
    code = main(
        [
            "smooth",
            str(bigbuckbunny),
            "-o",
            str(out),
            "--temporal_superimpose_alpha_list",
            "1,2,1",
            "--max_frames",
            "30",
        ]
    )
    assert code == 0
    frames, rate = read_video(out)
    assert len(frames) == 30 and rate == 25 and frames[0].shape == (720, 1280, 3)
    with av.open(str(out)) as container:
        assert container.streams.audio
    # Refuses to overwrite what exists.
    assert main(["smooth", str(bigbuckbunny), "-o", str(out)]) == 2


def test_smooth_along_the_motion_of_a_clean_source(tmp_path: Path, bikes: Path) -> None:
    """A flickering copy of a clip, smoothed with the temporal filter along the motion of the
    clean clip, comes closer to the clean clip."""
    clean = [f.image for f in open_source(bikes, max_frames=10)]
    clean = [cv2.resize(f, (160, 68), interpolation=cv2.INTER_AREA) for f in clean]
    rng = np.random.default_rng(0)
    flickering = [np.clip(f * rng.uniform(0.9, 1.1), 0, 1) for f in clean]
    source, noisy = tmp_path / "clean", tmp_path / "noisy"
    for folder, frames in ((source, clean), (noisy, flickering)):
        folder.mkdir()
        for i, f in enumerate(frames):
            Image.fromarray((f * 255 + 0.5).astype(np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "smoothed"
    args = ["smooth", str(noisy), "-o", str(out), "--temporal_superimpose_method", FILTER_METHOD,
            "--temporal_filter_strength", "0.8", "--reference_frames_directory", str(source)]  # fmt: skip
    assert main(args) == 0
    smoothed = [f.image for f in open_source(out)]
    read_back = [f.image for f in open_source(source)]
    error = lambda seq: float(np.mean([np.abs(a - b).mean() for a, b in zip(seq, read_back, strict=True)]))  # noqa: E731
    assert len(smoothed) == 10
    assert error(smoothed) < 0.6 * error([f.image for f in open_source(noisy)])
    short = tmp_path / "short"
    short.mkdir()
    Image.fromarray((clean[0] * 255).astype(np.uint8)).save(short / "000.png")
    args[args.index(str(source))] = str(short)
    args[args.index(str(out))] = str(tmp_path / "other")
    assert main(args) == 2  # a reference shorter than the clip is refused before any work


def test_smooth_with_patch_blending_along_the_clean_source(tmp_path: Path, bikes: Path) -> None:
    """A copy of a clip with a new smooth blotch pattern per frame, patch-blended along the clean
    clip (no temporal superimpose first), comes closer to it; a reference shorter than the clip
    is refused."""
    clean = [cv2.resize(f.image, (160, 68), interpolation=cv2.INTER_AREA) for f in open_source(bikes, max_frames=8)]
    rng = np.random.default_rng(1)
    source, noisy = tmp_path / "clean", tmp_path / "noisy"
    for folder in (source, noisy):
        folder.mkdir()
    for i, f in enumerate(clean):
        pattern = cv2.GaussianBlur(rng.standard_normal(f.shape).astype(np.float32), (0, 0), 4)
        blotched = np.clip(f + 0.06 * pattern / pattern.std(), 0, 1)
        Image.fromarray((f * 255 + 0.5).astype(np.uint8)).save(source / f"{i:03d}.png")
        Image.fromarray((blotched * 255 + 0.5).astype(np.uint8)).save(noisy / f"{i:03d}.png")
    out = tmp_path / "blended"
    args = ["smooth", str(noisy), "-o", str(out), "--temporal_superimpose_alpha_list", "1", "--denoise", "patch-blend",
            "--video_post_process_alpha", "1", "--patch_blend_window", "5", "--reference_frames_directory", str(source)]  # fmt: skip
    assert main(args) == 0
    read_back = [f.image for f in open_source(source)]
    error = lambda seq: float(np.mean([np.abs(a - b).mean() for a, b in zip(seq, read_back, strict=True)]))  # noqa: E731
    blended = [f.image for f in open_source(out)]
    assert len(blended) == 8
    assert error(blended) < 0.7 * error([f.image for f in open_source(noisy)])
    short = tmp_path / "short"
    short.mkdir()
    Image.fromarray((clean[0] * 255).astype(np.uint8)).save(short / "000.png")
    args[args.index(str(source))] = str(short)
    args[args.index(str(out))] = str(tmp_path / "other")
    assert main(args) == 2


def test_smooth_to_a_frame_folder_reduces_frame_to_frame_change(tmp_path: Path, bikes: Path) -> None:
    out = tmp_path / "frames"
    assert (
        main(
            [
                "smooth",
                str(bikes),
                "-o",
                str(out),
                "--temporal_superimpose_alpha_list",
                "1,1,1,1,1",
                "--max_frames",
                "12",
            ]
        )
        == 0
    )
    from lib_videoloop.media.sources import open_source

    smooth = [f.image for f in open_source(out)]
    raw = [f.image for f in open_source(bikes, max_frames=12)]
    change = lambda seq: float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(seq)]))  # noqa: E731
    assert len(smooth) == 12
    assert change(smooth) < 0.6 * change(raw)


def test_the_installed_command_works_from_any_folder(tmp_path: Path, bikes: Path) -> None:
    """./dev-setup.sh installs the project (pip install -e .): its video-loopback command runs
    outside the checkout, with nothing on PYTHONPATH, and names itself in its usage."""
    command = Path(sys.executable).with_name("video-loopback")
    assert command.exists(), "the project is not installed in this venv: run ./dev-setup.sh (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "smooth.mp4"
    args = [str(command), "smooth", str(bikes), "-o", str(out), "--max_frames", "4"]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(read_video(out)[0]) == 4
    usage = subprocess.run(
        [str(command), "run", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert usage.stdout.startswith("usage: video-loopback run")


def test_a_misspelt_flag_is_named_with_the_closest_one_under_its_commands_usage() -> None:
    done = cli("run", "clip.mp4", "--loopn", "3")
    assert done.returncode == 2
    assert "did you mean --loop_n?" in done.stderr
    assert "lib_videoloop run [INPUT]" in done.stderr  # run's usage, not the top level's list of commands
    done = cli("smooth", "clip.mp4", "-o", "x.mp4", "--denoize", "fastdvdnet")
    assert "did you mean --denoise?" in done.stderr and "lib_videoloop smooth INPUT" in done.stderr


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_kill_9_at_any_frame_then_resume_gives_the_straight_runs_frames(tmp_path: Path, bikes: Path) -> None:
    args = ["run", str(bikes), "-o", str(tmp_path / "out"), "--model", "tiny-random", "--max_frames", "5"]
    args += ["--loop_n", "2", "--width", "64", "--height", "48", "--steps", "4", "--seed", "3", "--no-fix_seed"]
    args += ["--temporal_superimpose_alpha_list", "1,2,1"]
    proc = subprocess.Popen([sys.executable, "-m", "lib_videoloop", *args], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    manifest = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((tmp_path / "out").glob("*/manifest.jsonl")) if (tmp_path / "out").exists() else []
        if found and len(found[0].read_text().splitlines()) >= 5 + 6:  # the input and 6 generated frames
            manifest = found[0]
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert manifest is not None, "the run did not get into its second loop in time"
    run_dir = manifest.parent
    assert not FrameStore.open(run_dir).folder_complete("loop_002")
    resumed = cli("run", "--resume", str(run_dir))  # the recorded model, the recorded settings
    assert resumed.returncode == 0, resumed.stderr
    straight = cli(
        "run", "--config", str(run_dir / "settings.json"), "-o", str(tmp_path / "straight"), "--model", "tiny-random"
    )
    assert straight.returncode == 0, straight.stderr
    a, b = FrameStore.open(run_dir), FrameStore.open(next((tmp_path / "straight").iterdir()))
    for folder in ("loop_001", "loop_002"):
        for i in range(5):
            assert np.array_equal(a.read_frame(folder, i), b.read_frame(folder, i)), (folder, i)


def test_a_finished_run_is_neither_resumed_nor_nested(tmp_path: Path, bikes: Path) -> None:
    args = ["run", str(bikes), "--model", "tiny-random", "--max_frames", "3", "--loop_n", "1"]
    args += ["--width", "64", "--height", "48", "--steps", "2"]
    done = cli(*args, "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    assert not (run_dir / ".lock").exists(), "the lock goes with the process that held the folder"
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))

    again = cli("run", "--resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and f"Video: {run_dir}" in again.stdout
    assert "loop 1/1 done" not in again.stderr and "100%" not in again.stderr  # no work pretended

    nested = cli(*args, "-o", str(run_dir))
    assert nested.returncode == 2
    assert f"is inside the run folder {run_dir}" in nested.stderr and str(tmp_path / "out") in nested.stderr
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_run_on_a_worker_with_its_password_in_the_environment_only(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    """`run --workers`: the frames come from the worker's API; the password the worker's
    --api-auth asks for travels in the environment, and lands in no file of the run."""
    from worker_server import Behaviour, WorkerServer

    password = "pa55-w0rd-only-in-env"
    with WorkerServer(tiny_backend, Behaviour(auth=f"vl:{password}")) as worker:
        args = ["run", str(bikes), "-o", str(tmp_path), "--workers", worker.url, "--max_frames", "2", "--loop_n", "1",
                "--width", "64", "--height", "48", "--steps", "2", "--sampler_name", "Euler a"]  # fmt: skip
        refused = cli(*args)
        assert (
            refused.returncode != 0 and "HTTP 401" in refused.stderr and "VIDEO_LOOPBACK_WORKER_AUTH" in refused.stderr
        )
        done = cli(*args, env={**os.environ, "VIDEO_LOOPBACK_WORKER_AUTH": f"vl:{password}"})
        assert done.returncode == 0, done.stderr[-2000:]
        sent = worker.behaviour.requests
    assert [body["sampler_name"] for body in sent] == ["Euler a", "Euler a"]
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert FrameStore.open(run).folder_complete("loop_001")
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            assert password not in path.read_text(encoding="utf-8"), path
    assert password not in done.stdout + done.stderr
