"""The run folder: never over an earlier run, never inside the input, whole files after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.store import FrameStore, as_stored


def test_frames_round_trip_in_16_bits(tmp_path: Path) -> None:
    store = FrameStore.create(tmp_path / "out", "clip", 2)
    # Values on the 16-bit grid come back exactly; any other value within half a step.
    levels = np.random.default_rng(0).integers(0, 65536, (17, 23, 3))
    on_grid = (levels / 65535.0).astype(np.float32)
    store.write_frame("loop_001", 0, on_grid)
    assert np.array_equal(np.round(store.read_frame("loop_001", 0) * 65535.0), levels)
    image = np.random.default_rng(1).random((17, 23, 3), dtype=np.float32)
    store.write_frame("loop_001", 0, image)
    back = store.read_frame("loop_001", 0)
    assert np.abs(back - image).max() <= 0.5 / 65535 + 1e-7  # far finer than 8 bits (1/510)
    assert np.array_equal(back, as_stored(image))  # what the engine assumes it will read back
    with Image.open(store.frame_path("loop_001", 0)) as png:
        assert png.size == (23, 17)
    umask = os.umask(0)
    os.umask(umask)
    assert store.frame_path("loop_001", 0).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_runs_never_share_a_folder(tmp_path: Path) -> None:
    roots = {FrameStore.create(tmp_path, "same name", 1).root for _ in range(3)}
    assert len(roots) == 3
    assert all(r.parent == tmp_path for r in roots)


def test_output_inside_input_and_unwritable_output_are_refused(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(VideoLoopError) as e:
        FrameStore.create(frames / "out", "x", 1, input_path=frames)
    assert "output_directory" in str(e.value) and "inside the input" in str(e.value)
    # A folder its owner made read-only; root writes there anyway, but not into /proc/sys.
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        locked = Path("/proc/sys")
    assert not os.access(locked, os.W_OK)
    with pytest.raises(VideoLoopError, match="writable"):
        FrameStore.create(locked, "x", 1)
    assert not any(p.name.startswith("20") for p in locked.iterdir()), "no run folder was made"
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(VideoLoopError, match="output_directory"):
        FrameStore.create(blocker / "sub", "x", 1)


def test_kill_9_mid_frame_leaves_only_whole_files(tmp_path: Path) -> None:
    """A writer process is killed while it writes large frames; every named file is whole and
    the reopened store reports exactly the frames that were finished."""
    root_file = tmp_path / "root.txt"
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from pathlib import Path
        from lib_videoloop.media.store import FrameStore
        store = FrameStore.create({str(tmp_path / "out")!r}, "kill", 500)
        store.write_settings({{"run": {{"frame_count": 500}}}})
        Path({str(root_file)!r}).write_text(str(store.root))
        rng = np.random.default_rng(0)
        for i in range(500):
            store.write_frame("loop_001", i, rng.random((720, 1280, 3), dtype=np.float32))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])

    def named_frames(root: Path) -> list[Path]:
        # pathlib's glob matches dot-names too: the .partial-* temporaries are not named frames
        return sorted(p for p in root.glob("loop_001/*.png") if not p.name.startswith("."))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if root_file.exists() and len(named_frames(Path(root_file.read_text()))) >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.13)  # land somewhere inside the next frame's write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    root = Path(root_file.read_text())
    named = named_frames(root)
    assert len(named) >= 3
    for path in named:
        with Image.open(path) as img:
            img.load()  # raises on a truncated file
    store = FrameStore.open(root)
    complete = store.complete_frames("loop_001")
    assert complete == set(range(len(complete)))  # a prefix, in order
    assert all(store.frame_path("loop_001", i).is_file() for i in complete)
    assert len(complete) >= len(named) - 1  # at most the frame renamed just before the kill
    FrameStore.open(root, to_continue=True).unlock()
    assert not list(root.rglob(".partial-*")), "reopening to continue removes half-written temporaries"


def test_reopen_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(VideoLoopError, match="not a Video Loopback run folder"):
        FrameStore.open(tmp_path)


def test_background_writes_keep_the_queue_short_and_readers_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import lib_videoloop.media.store as store_module

    real_encode = store_module.encode_png16

    def slow_encode(image: np.ndarray) -> bytes:
        time.sleep(0.05)  # a slow disk or a large frame: the queue fills up
        return real_encode(image)

    monkeypatch.setattr(store_module, "encode_png16", slow_encode)
    store = FrameStore.create(tmp_path, "queue", 12)
    store.write_settings({"run": {"frame_count": 12}})
    frames = [np.full((8, 8, 3), i / 12, np.float32) for i in range(12)]
    waiting = []  # frames handed over but not yet in their files, after each write_frame
    folder = store.root / "loop_001"
    with store.background_writes(depth=3):
        for i, frame in enumerate(frames):
            store.write_frame("loop_001", i, frame)
            waiting.append(i + 1 - len(list(folder.glob("[0-9]*.png"))))
            # Queued or written, it reads back as its file holds it: a reader never sees other values.
            assert np.array_equal(store.read_frame("loop_001", i), as_stored(frame))
    assert max(waiting) <= 3 and max(waiting) >= 2, waiting  # bounded, and it did queue
    reopened = FrameStore.open(store.root)
    assert reopened.complete_frames("loop_001") == set(range(12))
    assert all(np.array_equal(reopened.read_frame("loop_001", i), as_stored(frames[i])) for i in range(12))


def test_the_last_frames_written_read_back_from_memory_with_their_files_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In loop 1 the flows, the blend window and the report each read an input frame just after
    it is written: those reads cost no decode, and give the file's values."""
    import lib_videoloop.media.store as store_module

    monkeypatch.setattr(store_module, "RECENT_BYTES", 3 * 8 * 8 * 3 * 2)  # three 8x8 16-bit frames
    store = FrameStore.create(tmp_path, "recent", 6)
    store.write_settings({"run": {"frame_count": 6}})
    frames = [np.random.default_rng(i).random((8, 8, 3), dtype=np.float32) for i in range(6)]
    with store.background_writes(workers=1):  # one writer: the frames are written in order
        for i, frame in enumerate(frames):
            store.write_frame("loop_001", i, frame)
    decoded = []
    real_decode = store_module.decode_png
    monkeypatch.setattr(store_module, "decode_png", lambda data: decoded.append(1) or real_decode(data))
    for i, frame in enumerate(frames):
        assert np.array_equal(store.read_frame("loop_001", i), as_stored(frame))
    assert len(decoded) == 3  # the three oldest from their files, the three latest from memory
    on_disk = FrameStore.open(store.root)
    assert all(np.array_equal(on_disk.read_frame("loop_001", i), as_stored(frames[i])) for i in range(6))


def test_a_failed_background_write_stops_the_run_and_leaves_that_frame_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import lib_videoloop.media.store as store_module

    real_write = store_module.write_atomic

    def disk_full_at_frame_3(path: Path, data: bytes) -> None:
        if path.name == "000003.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "write_atomic", disk_full_at_frame_3)
    store = FrameStore.create(tmp_path, "full", 6)
    store.write_settings({"run": {"frame_count": 6}})
    with pytest.raises(OSError, match="No space"), store.background_writes(depth=2):
        for i in range(6):
            store.write_frame("loop_001", i, np.zeros((8, 8, 3), np.float32))
    done = FrameStore.open(store.root).complete_frames("loop_001")
    assert {0, 1} <= done and 2 not in done  # a resume makes frame 3 (and what followed) again


def test_only_the_process_that_continues_a_run_tidies_its_folder(tmp_path: Path) -> None:
    store = FrameStore.create(tmp_path, "tidy", 2)
    store.write_settings({"run": {"frame_count": 2}})
    store.write_frame("loop_001", 0, np.zeros((8, 8, 3), np.float32))
    store.write_frame("loop_001", 1, np.zeros((8, 8, 3), np.float32))
    in_flight = store.root / "loop_001" / ".partial-abc.png"  # another process is writing it
    in_flight.write_bytes(b"half a frame")
    damaged = store.frame_path("loop_001", 1)
    damaged.write_bytes(damaged.read_bytes()[:30])

    looked_at = FrameStore.open(store.root)
    assert looked_at.complete_frames("loop_001") == {0}
    assert in_flight.exists() and damaged.exists(), "a plain open changes nothing"

    taken = FrameStore.open(store.root, to_continue=True)
    try:
        assert not in_flight.exists() and not damaged.exists()
        with pytest.raises(VideoLoopError, match="in use"):
            FrameStore.open(store.root, to_continue=True)
    finally:
        taken.unlock()


def test_a_folder_filled_on_a_thread_is_read_as_its_frames_arrive(tmp_path: Path) -> None:
    """The input copied while loop 1 generates: a reader asks for frames before they are made,
    waits for each, and gets the values its file holds; the fill's error reaches both a reader
    left waiting for a frame it never made and the end of the block."""
    import threading

    store = FrameStore.create(tmp_path, "fill", 6)
    frames = [np.full((8, 8, 3), (i + 1) / 7, np.float32) for i in range(6)]
    released = threading.Semaphore(0)

    def fill(_stopped: object) -> None:
        for i, frame in enumerate(frames):
            released.acquire()  # the reader asks first: every frame is waited for
            store.write_frame("input", i, frame)
            if i == 3:
                raise VideoLoopError("input_directory", "clip.mp4", "could not be decoded past frame 4", "Re-export")

    got = []
    with (
        store.background_writes(),
        pytest.raises(VideoLoopError, match="past frame 4") as at_end,
        store.filled_by("input", fill),
    ):
        for i in range(6):
            released.release()
            try:
                got.append(store.read_frame("input", i))
            except VideoLoopError as exc:
                assert i == 4 and "past frame 4" in str(exc)  # the fill's own error, not a missing file
                break
    assert "past frame 4" in str(at_end.value)
    assert len(got) == 4 and all(np.array_equal(g, as_stored(f)) for g, f in zip(got, frames[:4], strict=True))
    assert store.complete_frames("input") == {0, 1, 2, 3}


def test_a_fill_keeps_a_few_frames_ahead_of_its_readers_and_stops_with_the_block(tmp_path: Path) -> None:
    """The input copy takes the machine only as far as loop 1 needs it, and a stop during loop
    1 stops it: the frames it made are whole and listed, a resume copies the rest."""
    from lib_videoloop.media.fills import FILL_AHEAD

    store = FrameStore.create(tmp_path, "fill", 1000)
    made = []

    def fill(may_make: Callable[[int], bool]) -> None:
        for i in range(1000):
            if not may_make(i):
                return
            store.write_frame("input", i, np.zeros((4, 4, 3), np.float32))
            made.append(i)

    with store.background_writes(), pytest.raises(RuntimeError, match="stopped"), store.filled_by("input", fill):
        store.read_frame("input", 2)
        time.sleep(0.3)  # a generation: the fill waits for the next read
        assert len(made) == 3 + FILL_AHEAD
        raise RuntimeError("stopped during loop 1")
    assert len(made) == 3 + FILL_AHEAD and store.complete_frames("input") == set(made)
