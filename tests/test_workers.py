"""A run fanned out over workers (other WebUIs' HTTP API): the same frames as on one, frames
handed on when a worker fails or vanishes, a resumable stop when none is left, and every
mistake named before any work. The workers are real HTTP servers (tests/worker_server.py)
generating with the tiny random pipeline; tests/real_webui drives real Forge instances."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from lib_videoloop.backends.workers import WorkersBackend, cli_template
from lib_videoloop.config import FILTER_METHOD, PATCH_BLEND, Settings, worker_urls
from lib_videoloop.engine import Engine
from lib_videoloop.errors import InterruptedRun, VideoLoopError, WorkersLost
from lib_videoloop.media.store import FrameStore, loop_dir_name
from worker_server import Behaviour, WorkerServer

PASSWORD = "s3cret-Pa55"


def job(bikes: Path, out: Path, **kw) -> Settings:
    base = dict(
        input_directory=str(bikes), output_directory=str(out), width=64, height=48, resize_mode=1, max_frames=6,
        loop_n=2, steps=3, denoising_strength=0.5, seed=77, fix_seed=False, prompt="a street", keep_audio=False,
        temporal_superimpose_alpha_list="1,2,1",
    )  # fmt: skip
    base.update(kw)
    return Settings(**base)


def final_frames(result) -> list[np.ndarray]:
    store = FrameStore.open(result.run_dir)
    return [store.read_frame(result.frames_folder, i) for i in range(store.frame_count)]


@pytest.fixture(scope="module")
def one_worker_frames(bikes: Path, tmp_path_factory, tiny_backend) -> list[np.ndarray]:
    """The job's frames made on one worker: what every other way of running it must give."""
    with WorkerServer(tiny_backend) as server:
        s = job(bikes, tmp_path_factory.mktemp("one"), workers=server.url)
        return final_frames(Engine(s, WorkersBackend([server.url])).run())


def test_two_workers_make_the_frames_one_makes_and_share_them(bikes, tmp_path, tiny_backend, one_worker_frames) -> None:
    lock = threading.Lock()
    with WorkerServer(tiny_backend, lock=lock) as a, WorkerServer(tiny_backend, lock=lock) as b:
        backend = WorkersBackend([a.url, b.url])
        result = Engine(job(bikes, tmp_path, workers=f"{a.url}, {b.url}"), backend).run()
        got = final_frames(result)
    assert all(np.array_equal(x, y) for x, y in zip(got, one_worker_frames, strict=True))
    sent = len(a.behaviour.requests), len(b.behaviour.requests)
    assert sum(sent) == 12 and min(sent) >= 4  # 6 frames x 2 loops, shared
    # Each request is the frame's own: its seed, the sizes, no saving on the worker.
    seeds = sorted(r["seed"] for r in a.behaviour.requests + b.behaviour.requests)
    assert len(set(seeds)) == 12 and all(r["save_images"] is False for r in a.behaviour.requests)
    assert result.store.read_settings()["run"]["models"] == ["tiny-random.safetensors [0b1c2d3e4f]"]


def test_a_faster_worker_makes_more_frames_and_the_same_ones(bikes, tmp_path, tiny_backend, one_worker_frames) -> None:
    """A fast GPU beside a slow one does not wait for it: while the slow worker makes a frame,
    the fast one goes on with the next call's frames."""
    lock = threading.Lock()
    with WorkerServer(tiny_backend, lock=lock) as fast, WorkerServer(tiny_backend, Behaviour(delay=1.0), lock) as slow:
        result = Engine(job(bikes, tmp_path), WorkersBackend([fast.url, slow.url])).run()
        got = final_frames(result)
    assert all(np.array_equal(x, y) for x, y in zip(got, one_worker_frames, strict=True))
    made = len(fast.behaviour.requests), len(slow.behaviour.requests)
    assert sum(made) == 12 and made[0] >= 2 * made[1], made  # one call per frame pair would split them 6 / 6
    lines = (result.run_dir / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == 6 + 12  # the input, then each frame written once


def test_one_frame_per_call_still_keeps_every_worker_busy(bikes, tmp_path, tiny_backend) -> None:
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(delay=0.3), lock) as a,
        WorkerServer(tiny_backend, Behaviour(delay=0.3), lock) as b,
        WorkerServer(tiny_backend, Behaviour(delay=0.3), lock) as c,
    ):
        Engine(job(bikes, tmp_path, frames_per_call=1), WorkersBackend([a.url, b.url, c.url])).run()
        made = [len(w.behaviour.requests) for w in (a, b, c)]
    assert sum(made) == 12 and min(made) >= 2, made


@pytest.mark.parametrize(("method", "frames"), [("simple", 6), (FILTER_METHOD, 10)])
def test_a_short_clip_with_a_wide_window_goes_on_into_its_next_loop(
    bikes, tmp_path, tiny_backend, method, frames
) -> None:
    """6 frames, 2 a call, a 5-frame window: the loop's last call starts while the call holding
    frame 2, which the next loop's first blend reads, still generates. That frame is read once
    written (before, loop 2 failed, naming its file as unreadable). The temporal filter reads
    the whole loop before the next loop's first frame: with 10 frames that call waits for the
    last ones, which generate while the next loop's first calls could start."""
    wide = dict(frames_per_call=2, temporal_superimpose_alpha_list="1,2,3,2,1", temporal_superimpose_method=method,
                max_frames=frames)  # fmt: skip
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(delay=0.5), lock) as a,
        WorkerServer(tiny_backend, Behaviour(delay=0.5), lock) as b,
    ):
        two = final_frames(Engine(job(bikes, tmp_path / "two", **wide), WorkersBackend([a.url, b.url])).run())
        one = final_frames(Engine(job(bikes, tmp_path / "one", **wide), WorkersBackend([a.url])).run())
    assert all(np.array_equal(x, y) for x, y in zip(two, one, strict=True))


class _Arrivals(list):
    """A worker's requests, each also noted in the run's events as it arrives."""

    def __init__(self, events: list[tuple]) -> None:
        super().__init__()
        self.events = events

    def append(self, body: dict) -> None:
        self.events.append(("request", body["seed"]))
        super().append(body)


@pytest.mark.parametrize("pass_after_each_loop", [False, True], ids=["no pass", "a patch-blend pass"])
def test_a_worker_freed_at_a_loops_end_takes_the_next_loops_first_frame(
    bikes, tmp_path, tiny_backend, one_worker_frames, pass_after_each_loop
) -> None:
    """Loop 1's last frame generates on the slow worker while the quick one is free: loop 2's
    first frame goes to it at once, not once loop 1 is written; the frames are the same. A pass
    after each loop changes the loop's frames, so the next loop waits for it."""
    events: list[tuple] = []  # requests arriving and frames written, in order
    extra = (
        dict(video_post_process_method=PATCH_BLEND, video_post_process_when="every loop")
        if pass_after_each_loop
        else {}
    )
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(delay=0.2, requests=_Arrivals(events)), lock) as quick,
        WorkerServer(tiny_backend, Behaviour(delay=1.0, requests=_Arrivals(events)), lock) as slow,
    ):
        result = Engine(
            job(bikes, tmp_path, frames_per_call=2, **extra), WorkersBackend([quick.url, slow.url]),
            on_progress=lambda p: events.append(("written", p.loop, p.frame)) if p.frame else None,
        ).run()  # fmt: skip
    loop_2_first_sent = events.index(("request", 77 + 6))  # seeds go on through the frames and loops
    loop_1_written = events.index(("written", 1, 6))
    if pass_after_each_loop:
        assert loop_2_first_sent > loop_1_written
    else:
        assert loop_2_first_sent < loop_1_written, events
        assert all(np.array_equal(x, y) for x, y in zip(final_frames(result), one_worker_frames, strict=True))


def test_a_stop_also_stops_the_next_call_already_on_a_worker(bikes, tmp_path, tiny_backend, one_worker_frames) -> None:
    """Stopped once the first call is written: the next call's job, running on the faster worker,
    is interrupted and not written; the run resumes to the frames one worker makes."""
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(delay=1.0), lock) as quick,
        WorkerServer(tiny_backend, Behaviour(delay=2.5), lock) as slow,
    ):
        # The first call: frame 0 on `quick` (0-1 s), frame 1 on `slow` (0-2.5 s). The second: frames 2
        # and 3 on `quick` as it frees (1-2 s, 2-3 s); the stop comes at 2.5 s, during frame 3.
        engine = Engine(job(bikes, tmp_path), WorkersBackend([quick.url, slow.url]), should_stop=lambda: True)
        with pytest.raises(InterruptedRun):
            engine.run()
        assert quick.behaviour.interrupts == 1 and slow.behaviour.interrupts == 0
        assert len(quick.behaviour.requests) == 3
    assert FrameStore.open(engine.run_dir).complete_frames(loop_dir_name(1)) == {0}
    with WorkerServer(tiny_backend) as fresh:
        result = Engine.resume(engine.run_dir, WorkersBackend([fresh.url])).run()
    assert all(np.array_equal(x, y) for x, y in zip(final_frames(result), one_worker_frames, strict=True))


def test_a_failing_worker_hands_its_frame_to_another(bikes, tmp_path, tiny_backend, one_worker_frames, caplog) -> None:
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(fail_next=1), lock) as failing,
        WorkerServer(tiny_backend, lock=lock) as good,
        caplog.at_level(logging.WARNING),
    ):
        result = Engine(job(bikes, tmp_path), WorkersBackend([failing.url, good.url])).run()
        got = final_frames(result)
    assert all(np.array_equal(x, y) for x, y in zip(got, one_worker_frames, strict=True))
    assert len(failing.behaviour.requests) == 1  # dropped after its failure
    assert f"worker {failing.url} failed" in caplog.text and "CUDA out of memory" in caplog.text


def test_a_worker_that_vanishes_mid_job_loses_no_frame(bikes, tmp_path, tiny_backend, one_worker_frames) -> None:
    lock = threading.Lock()
    with (
        WorkerServer(tiny_backend, Behaviour(vanish_after=3), lock) as vanishing,
        WorkerServer(tiny_backend, lock=lock) as good,
    ):
        result = Engine(job(bikes, tmp_path), WorkersBackend([vanishing.url, good.url])).run()
        got = final_frames(result)
    assert all(np.array_equal(x, y) for x, y in zip(got, one_worker_frames, strict=True))
    store = FrameStore.open(result.run_dir)
    lines = (result.run_dir / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))  # no frame written twice
    assert store.folder_complete(loop_dir_name(2))


def test_with_no_worker_left_the_run_stops_resumable_and_resumes_to_the_same_frames(
    bikes, tmp_path, tiny_backend, one_worker_frames
) -> None:
    with WorkerServer(tiny_backend, Behaviour(vanish_after=4)) as doomed:
        engine = Engine(job(bikes, tmp_path), WorkersBackend([doomed.url]))
        with pytest.raises(WorkersLost, match="none of them answers"):
            engine.run()
    made = FrameStore.open(engine.run_dir).complete_frames(loop_dir_name(1))
    assert made == {0, 1, 2, 3}
    with WorkerServer(tiny_backend) as fresh:
        result = Engine.resume(engine.run_dir, WorkersBackend([fresh.url])).run()
        assert len(fresh.behaviour.requests) == 12 - 4
    assert all(np.array_equal(x, y) for x, y in zip(final_frames(result), one_worker_frames, strict=True))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("file:///etc/passwd", "not the http(s) address"),
        ("ftp://gpu1:7860", "not the http(s) address"),
        ("http://", "not the http(s) address"),
        ("http://gpu1:99999", "not the http(s) address"),
        ("gpu1:7860", "not the http(s) address"),
        ("http://gpu1:7860?x=1", "query or fragment"),
        ("http://gpu1:7860, http://gpu1:7860/", "listed twice"),
    ],
)
def test_a_bad_worker_url_is_refused_by_name(text: str, problem: str, bikes: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoLoopError, match="workers") as refused:
        job(bikes, tmp_path / "out", workers=text).validate()
    assert problem in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_password_in_a_url_is_refused_without_being_repeated(bikes: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoLoopError, match="VIDEO_LOOPBACK_WORKER_AUTH") as refused:
        job(bikes, tmp_path, workers=f"http://me:{PASSWORD}@gpu1:7860").validate()
    assert PASSWORD not in str(refused.value) and "gpu1:7860" in str(refused.value)
    assert worker_urls(" http://gpu1:7860/ ,\nhttps://gpu2 ") == ["http://gpu1:7860", "https://gpu2"]


def test_latent_deflicker_is_refused_with_workers(bikes: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoLoopError, match="latent_deflicker_steps"):
        job(bikes, tmp_path, workers="http://gpu1:7860", latent_deflicker_steps="-1", frames_per_call=2).validate()


def test_an_unreachable_worker_or_a_missing_model_is_named_before_any_work(bikes, tmp_path, tiny_backend) -> None:
    with WorkerServer(tiny_backend) as up:
        gone = WorkerServer(tiny_backend)
        gone.vanish()  # a port nothing listens on
        with pytest.raises(VideoLoopError, match="does not answer") as unreachable:
            Engine(job(bikes, tmp_path / "a"), WorkersBackend([up.url, gone.url])).run()
        assert gone.url in str(unreachable.value)
        template = cli_template("", "sd_xl_base_1.0")
        with pytest.raises(VideoLoopError, match=r"does not have the model 'sd_xl_base_1\.0'") as missing:
            Engine(job(bikes, tmp_path / "b"), WorkersBackend([up.url], template=template)).run()
        assert up.url in str(missing.value)
        assert up.behaviour.requests == []
    # AUTOMATIC1111 names the loaded checkpoint by its title, Forge by its file name: both count.
    forge_like = {"title": "vl.safetensors [731bc134]", "model_name": "vl", "filename": "/models/vl.safetensors"}
    with WorkerServer(tiny_backend, Behaviour(model=forge_like)) as forge:
        for name in ("vl.safetensors", "vl.safetensors [731bc134]", "vl"):
            WorkersBackend([forge.url], template=cli_template("", name)).check(False, False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # no run folder made


def test_the_password_reaches_the_worker_and_no_file_or_log(bikes, tmp_path, tiny_backend, caplog) -> None:
    with WorkerServer(tiny_backend, Behaviour(auth=f"me:{PASSWORD}")) as guarded:
        with pytest.raises(VideoLoopError, match="HTTP 401"):
            Engine(job(bikes, tmp_path / "a", max_frames=2), WorkersBackend([guarded.url], auth="me:wrong")).run()
        with caplog.at_level(logging.DEBUG, logger="lib_videoloop"):
            s = job(bikes, tmp_path / "b", max_frames=2, loop_n=1, workers=guarded.url)
            result = Engine(s, WorkersBackend([guarded.url], auth=f"me:{PASSWORD}")).run()
        assert len(guarded.behaviour.requests) == 2
    for path in result.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".log"):
            assert PASSWORD not in path.read_text(encoding="utf-8", errors="replace"), path
    assert PASSWORD not in caplog.text
    assert json.loads((result.run_dir / "settings.json").read_text())["workers"] == guarded.url


def test_an_interrupt_stops_the_workers_current_jobs(bikes, tmp_path, tiny_backend) -> None:
    stop = threading.Event()
    with WorkerServer(tiny_backend, Behaviour(delay=30)) as slow:
        backend = WorkersBackend([slow.url], should_interrupt=stop.is_set)
        threading.Timer(1.0, stop.set).start()
        with pytest.raises(InterruptedRun):
            Engine(job(bikes, tmp_path, max_frames=2), backend).run()
        assert slow.behaviour.interrupts == 1 and slow.interrupted.is_set()


def test_skip_keeps_the_frame_being_made_and_the_run_goes_on(bikes, tmp_path, tiny_backend) -> None:
    with WorkerServer(tiny_backend, Behaviour(delay=30)) as slow:
        pressed = []

        def skip_pressed() -> bool:  # the Skip button, once, while the first frame is on the worker
            if slow.behaviour.requests and not pressed:
                pressed.append(True)
                return True
            return False

        backend = WorkersBackend([slow.url], skip_pressed=skip_pressed)
        s = job(bikes, tmp_path, max_frames=3, loop_n=1, temporal_superimpose_alpha_list="1")
        result = Engine(s, backend).run()
        assert slow.behaviour.interrupts == 1, "the skipped frame's job is stopped on the worker"
        assert len(slow.behaviour.requests) == 3, "the skipped frame is not sent again"
    store = FrameStore.open(result.run_dir)
    kept = [np.array_equal(store.read_frame("loop_001", i), store.read_frame("input", i)) for i in range(3)]
    assert kept == [True, False, False]
