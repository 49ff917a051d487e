"""A run fanned out over two real Forge instances (API only, from the rig's install), driven by
the command line: the frames one instance makes, the wall time of each, a worker killed with
SIGKILL mid-loop, and the mistakes named before any work.

A WebUI does not give the same image twice for the same img2img request: it encodes the init
image by sampling the VAE's posterior with torch's global RNG (Forge's backend/nn/vae.py,
AUTOMATIC1111's DiagonalGaussianDistribution), whose state is whatever the server's last job
left. So frames are compared with how far a second run on the same single instance is from
the first, and with how far apart neighbouring frames are. A second run on one instance
repeats the first within 0.1 level (the same jobs in the same order leave the same RNG states);
over two instances each frame follows another job, and the frames land about 1-2 levels (of
255) from the one-instance frames, against tens for a frame swapped with its neighbour.
tests/test_workers.py checks the exact identity with workers that repeat themselves.

Opt-in like the rest of tests/real_webui: VIDEO_LOOPBACK_FORGE names a Forge install built by
rig.py. Each instance gets one CPU thread, so on a machine with two cores or more two of them
can generate side by side, as two GPUs would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rig

FORGE = os.environ.get("VIDEO_LOOPBACK_FORGE")
A1111 = os.environ.get("VIDEO_LOOPBACK_A1111")
if not (FORGE or A1111):
    pytest.skip("real workers: set VIDEO_LOOPBACK_FORGE / _A1111 to installs built by rig.py", allow_module_level=True)

REPO = Path(__file__).parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"  # the CLI's own environment (torch, PyAV)
INSTANCES = {"-worker1": 7881, "-worker2": 7882}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def workers():
    if not FORGE:
        pytest.skip("set VIDEO_LOOPBACK_FORGE")
    dest = Path(FORGE).resolve()
    urls = {}
    for name, port in INSTANCES.items():
        rig.stop(dest, name)
        urls[name] = rig.start(dest, port=port, nowebui=True, instance=name, env=ONE_THREAD)
    yield dest, urls
    for name in INSTANCES:
        rig.stop(dest, name)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_real_webui import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=12)


def cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    python = str(PYTHON if PYTHON.exists() else sys.executable)
    command = [python, "-m", "lib_videoloop", "run", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def run_args(clip: Path, out: Path, workers: str, frames: int = 12) -> list[str]:
    return [
        str(clip), "-o", str(out), "--workers", workers, "--max_frames", str(frames), "--loop_n", "2",
        "--steps", "6", "--sampler_name", "Euler", "--seed", "1234", "--subseed", "99", "--no-fix-seed", "--width", "64",
        "--height", "48", "--denoising_strength", "0.5", "--temporal_superimpose_alpha_list", "1,2,1",
        "--prompt", "a watercolour street",
    ]  # fmt: skip


def final_frames(out: Path) -> list[np.ndarray]:
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    return [np.asarray(Image.open(f)) for f in sorted((run / "loop_002").glob("*.png"))]


def difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean absolute difference in 8-bit levels, over the frames."""
    return float(np.mean([np.abs(x.astype(float) - y.astype(float)).mean() for x, y in zip(a, b, strict=True)]))


@pytest.fixture(scope="module")
def on_one(workers, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The job on the first instance alone, twice: the frames, the wall time, and how far the
    second run is from the first (what the WebUI's own RNG leaves)."""
    _, urls = workers
    runs = []
    for _ in range(2):
        out = tmp_path_factory.mktemp("one")
        started = time.monotonic()
        done = cli(*run_args(clip, out, urls["-worker1"]))
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append((final_frames(out), time.monotonic() - started))
    (first, seconds), (second, seconds_again) = runs
    noise = difference(first, second)
    print(f"one instance: {seconds:.1f} s and {seconds_again:.1f} s; the second run differs by {noise:.2f} levels")
    return {"frames": first, "seconds": min(seconds, seconds_again), "noise": noise}


def like_on_one(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """The frames are the expected ones up to the WebUI's VAE sampling (see above)."""
    assert len(got) == len(expected)
    apart = difference(got, expected)
    neighbours = difference(got[1:], expected[:-1])
    print(f"against one instance: {apart:.2f} levels; against the neighbouring frames: {neighbours:.2f}")
    assert apart <= 3.0 and neighbours > 5 * apart


def test_two_instances_make_the_frames_one_makes(workers, clip: Path, tmp_path: Path, on_one) -> None:
    _, urls = workers
    started = time.monotonic()
    done = cli(*run_args(clip, tmp_path, ",".join(urls.values())))
    seconds_two = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    seconds_one = on_one["seconds"]
    print(
        f"24 generations: one instance {seconds_one:.1f} s, two {seconds_two:.1f} s: {seconds_one / seconds_two:.2f}x"
    )
    like_on_one(final_frames(tmp_path), on_one["frames"])


def test_mistakes_are_named_before_any_work(workers, clip: Path, tmp_path: Path) -> None:
    _, urls = workers
    url = urls["-worker1"]
    cases = [
        (["--workers", "file:///etc/passwd"], "not the http(s) address"),
        (["--workers", f"{url},http://127.0.0.1:7899"], "'http://127.0.0.1:7899': does not answer"),
        (["--workers", url, "--model", "sd_xl_base_1.0.safetensors"], "does not have the model"),
    ]
    for extra, message in cases:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        args = run_args(clip, out, url, frames=2)
        done = cli(*args[: args.index("--workers")], *args[args.index("--workers") + 2 :], *extra)
        assert done.returncode != 0 and message in done.stderr, (extra, done.stderr[-2000:])
        assert not out.exists() or not any(out.iterdir()), "no run folder before the checks pass"


def test_the_webui_sends_its_frames_to_a_worker(workers, clip: Path) -> None:
    """The WebUI face: a job on the first instance with the second as its worker makes the
    frames the first makes by itself, from the img2img tab's values sent over."""
    from test_real_webui import frames, job, run_folder

    _, urls = workers
    here, there = urls["-worker1"], urls["-worker2"]
    common = {"input_directory": str(clip), "max_frames": 4, "loop_n": 1, "fix_seed": False}
    status, alone = job(here, **common)
    assert status == 200, alone
    status, sent = job(here, workers=there, **common)
    assert status == 200, sent
    folder = run_folder(sent)
    assert json.loads((folder / "settings.json").read_text())["workers"] == there
    status, again = job(here, **common)
    assert status == 200, again
    made_here, made_there = frames(run_folder(alone) / "loop_001"), frames(folder / "loop_001")
    print(f"here again: {difference(made_here, frames(run_folder(again) / 'loop_001')):.2f} levels")
    like_on_one(made_there, made_here)


def test_skip_on_the_webui_keeps_the_frame_its_worker_was_making(workers, clip: Path, tmp_path: Path) -> None:
    """The Skip button (the API's skip) of the WebUI that runs the job, while a worker makes the
    frame: that frame keeps its input, the worker's job stops, and the run goes on."""
    from test_real_webui import skipped_once

    _, urls = workers
    before, after = skipped_once(urls["-worker1"], tmp_path, 2, input_directory=str(clip), max_frames=6, loop_n=1,
                                 superimpose_alpha=1.0, workers=urls["-worker2"])  # fmt: skip
    assert len(after) == 6, "the run goes on after a skip"
    kept = [i for i in range(6) if np.array_equal(before[i], after[i])]
    assert len(kept) == 1, f"exactly the skipped frame keeps its input, got {kept}"


def test_a_worker_killed_mid_loop_loses_no_frame(workers, clip: Path, tmp_path: Path, on_one) -> None:
    dest, urls = workers
    python = str(PYTHON if PYTHON.exists() else sys.executable)
    command = [python, "-m", "lib_videoloop", "run", *run_args(clip, tmp_path, ",".join(urls.values()))]
    log = tmp_path.parent / f"{tmp_path.name}-stderr.txt"  # a file: a full pipe would stall the run
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        manifests = list(tmp_path.glob("*/manifest.jsonl"))
        if manifests and sum('"loop_001"' in line for line in manifests[0].read_text().splitlines()) >= 4:
            break
        time.sleep(0.2)
    pid = int((dest / "webui-worker2.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    proc.wait(timeout=1800)
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert "worker http://127.0.0.1:7882 failed" in err
    like_on_one(final_frames(tmp_path), on_one["frames"])
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    lines = (run / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)), "no frame written twice"


@pytest.fixture(scope="module", params=["a1111", "forge"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The same WebUI on both sides (AUTOMATIC1111 with sd-webui-controlnet, or Forge with its
    own): "-here" runs the jobs, "-there" is its worker; each logs its generations (the probe)."""
    kind = request.param
    install = {"a1111": A1111, "forge": FORGE}[kind]
    if not install:
        pytest.skip(f"set VIDEO_LOOPBACK_{kind.upper()}")
    dest = Path(install).resolve()
    logs = tmp_path_factory.mktemp(f"probe-{kind}")
    probes = {name: logs / f"probe{name}.jsonl" for name in ("-here", "-there")}
    urls = {}
    try:
        for name, port in (("-here", 7883), ("-there", 7884)):
            rig.stop(dest, name)
            urls[name] = rig.start(
                dest, port=port, nowebui=True, instance=name, env={"VL_PROBE_LOG": str(probes[name])}
            )
        yield {"kind": kind, "urls": urls, "probes": probes}
    finally:
        for name in probes:
            rig.stop(dest, name)


def test_controlnet_units_reach_the_worker_with_each_frame(pair: dict, clip: Path, tmp_path: Path) -> None:
    """A unit without an image of its own reaches the worker's ControlNet with each frame; this
    side generates nothing."""
    from test_real_webui import call, frames, job, run_folder

    urls, probes = pair["urls"], pair["probes"]
    for probe in probes.values():
        probe.unlink(missing_ok=True)
    unit = {"enabled": True, "module": "none" if pair["kind"] == "a1111" else "None", "model": "None", "weight": 1.0}
    status, response = job(urls["-here"], alwayson={"controlnet": {"args": [unit]}}, input_directory=str(clip),
                           output_directory=str(tmp_path / "out"), max_frames=4, loop_n=1,
                           workers=urls["-there"])  # fmt: skip
    assert status == 200, response
    inputs = frames(run_folder(response) / "input")
    there = [json.loads(line) for line in probes["-there"].read_text().splitlines()]
    seen = [r["units"][0]["image"] for r in there if r["units"] and r["units"][0]["enabled"]]
    assert len(seen) == 4, there
    for i, image in enumerate(seen):
        assert image is not None and image["shape"][:2] == [48, 64], f"frame {i + 1}: {image}"
        assert abs(image["mean"] - inputs[i][..., :3].mean()) < 1.0, f"frame {i + 1} got another image"
    here = probes["-here"].read_text().splitlines() if probes["-here"].exists() else []
    assert here == [], "nothing is generated on this side"
    assert call(urls["-there"], "/sdapi/v1/options")[0] == 200


def test_colour_correction_over_a_worker_is_the_one_made_here(pair: dict, clip: Path, tmp_path: Path) -> None:
    """With the img2img colour correction on, frames a worker makes are corrected towards their
    input frames as the frames this WebUI makes itself are, not left as the worker made them."""
    from test_real_webui import frames, job, run_folder

    here, there = pair["urls"]["-here"], pair["urls"]["-there"]
    common = {"input_directory": str(clip), "max_frames": 4, "loop_n": 1, "fix_seed": False, "superimpose_alpha": 1.0}

    def made(correct: bool, **panel: object) -> list[np.ndarray]:
        extra = {"override_settings": {"img2img_color_correction": correct}}
        out = tmp_path / f"{correct}-{bool(panel)}"
        status, response = job(here, body_extra=extra, output_directory=str(out), **common, **panel)
        assert status == 200, response
        return frames(run_folder(response) / "loop_001")

    here_corrected, there_corrected = made(True), made(True, workers=there)
    here_plain, there_plain = made(False), made(False, workers=there)
    # Uncorrected, the two sides' frames differ by the WebUI's VAE sampling (see the top); the
    # histogram match stretches that difference with the contrast it restores.
    noise, apart = difference(there_plain, here_plain), difference(there_corrected, here_corrected)
    uncorrected = difference(there_plain, here_corrected)
    print(f"{pair['kind']}: corrected over a worker {apart:.2f} levels from corrected here, uncorrected "
          f"{uncorrected:.2f}; uncorrected frames of both sides {noise:.2f} apart")  # fmt: skip
    assert apart <= 2 * noise and uncorrected > 3 * apart
