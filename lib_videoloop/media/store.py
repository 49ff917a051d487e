"""The run folder: settings, per-loop PNG frames, a manifest of finished frames, the videos.

Layout of output_directory/<timestamp>-<name>/:

    settings.json        every setting, schedules as typed, model and seeds actually used
    manifest.jsonl       one line per finished frame: {"dir": "loop_001", "frame": i}
    .lock                held by the process making the run (two cannot resume one folder)
    input/000001.png     the input frames at the working size (loop 0)
    masks/000001.png     the binarised masks, when masks are used
    reference_1/...      reference frames, when reference_frames_directory is set
    loop_001/000001.png  frames of loop 1, ...
    loop_001.mp4 ...     a video per loop (save_every_loop) and the final video

Frames are 16-bit PNG: the blend of one loop is carried to the next without rounding to
8 bits. Every file is written under a temporary name and renamed, so after a crash every file
with its final name is whole; a frame counts as finished only once it is in the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lib_videoloop.errors import VideoLoopError, short
from lib_videoloop.media.images import write_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SETTINGS = "settings.json"
LOCK = ".lock"
FILL_AHEAD = 4  # frames a folder's fill makes beyond the highest one asked for (filled_by)
# The frames last written stay in memory (16-bit, as in their files) up to this size: in loop 1
# each input frame is read by the flows, the window and the report just after it is written, and
# a 16-bit PNG decode costs 8 ms at 512x512 and 29 ms at 1024x576.
RECENT_BYTES = 96 << 20
INPUT = "input"  # the input frames at the working size: loop 0
MASKS = "masks"  # one binarised mask per input frame, when masks are used


def loop_dir_name(loop: int) -> str:
    return INPUT if loop == 0 else f"loop_{loop:03d}"


def frame_file_name(index: int) -> str:
    return f"{index + 1:06d}.png"


# zlib's run-length strategy after the "up" filter: at 512x512 a blended 16-bit frame encodes
# in 21 ms instead of 48 ms (zlib level 1 with adaptive filters) and decodes in 13 ms instead
# of 22, at the same size (the low bytes are noise either way); a frame from an 8-bit source
# (v * 257) is even smaller. OpenCV before 4.12 has no filter choice and keeps its adaptive
# one: still RLE, and 40% faster. Measured by bench/png_speed.py.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]


def encode_png16(image: np.ndarray) -> bytes:
    """HxWx3 float32 [0, 1] (or HxW), or its quantize16, to 16-bit PNG bytes, fast compression."""
    q = image if image.dtype == np.uint16 else quantize16(image)
    if q.ndim == 3:
        q = q[:, :, ::-1]  # OpenCV writes BGR
    ok, buf = cv2.imencode(".png", q, PNG_PARAMS)
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes | np.ndarray) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError("not a PNG image")
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    if arr.ndim == 3:
        arr = arr[:, :, 2::-1]
    return arr.astype(np.float32) / np.float32(scale)


def quantize16(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def as_stored(image: np.ndarray) -> np.ndarray:
    """The exact float values a frame has after a round trip through its 16-bit PNG."""
    return _unquantize(quantize16(image))


def _unquantize(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / np.float32(65535.0)  # what decode_png makes of the file


def safe_name(text: str, limit: int = 40) -> str:
    stem = re.sub(r"[^\w\-]+", "_", text, flags=re.UNICODE).strip("_")
    return (stem or "run")[:limit]


class FrameStore:
    """One run folder. Create it with :meth:`create` or reopen it with :meth:`open`."""

    def __init__(self, root: Path, frame_count: int) -> None:
        self.root = root
        self.frame_count = frame_count
        self._complete: dict[str, set[int]] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[str, int], np.ndarray] = {}  # queued frames, served to readers
        self._failure: BaseException | None = None
        self._manifest_lock = threading.Lock()  # writers append whole lines, one at a time
        self._filling: set[str] = set()  # folders a thread is still writing (filled_by)
        self._asked: dict[str, int] = {}  # the highest frame of each such folder a reader asked for
        self._along: dict[str, str] = {}  # a folder written with a filling one: its frame i comes first
        self._fill_errors: dict[str, BaseException] = {}
        self._arrived = threading.Condition()  # a frame of a filling folder was queued
        self._recent: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()  # RECENT_BYTES, oldest first
        self._recent_bytes = 0
        self._recent_lock = threading.Lock()

    # -- creating and reopening --------------------------------------------------------------
    @classmethod
    def create(
        cls, output_directory: str | Path, name: str, frame_count: int, input_path: str | Path | None = None
    ) -> "FrameStore":
        out = Path(str(output_directory)).expanduser()
        if not str(output_directory).strip():
            raise VideoLoopError(
                "output_directory",
                str(output_directory),
                "is empty",
                "Give a folder where the run folder can be created",
            )
        check_output_directory(out, input_path)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoLoopError(
                "output_directory", str(out), f"cannot be created ({exc.strerror})", "Choose a folder you can write to"
            ) from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise VideoLoopError("output_directory", str(out), "is not writable", "Choose a folder you can write to")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{safe_name(name)}"
        for attempt in range(1000):
            root = out / (base if attempt == 0 else f"{base}-{attempt + 1}")
            try:
                root.mkdir()  # never reuse an existing folder: earlier runs stay untouched
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise VideoLoopError(
                    "output_directory",
                    str(out),
                    f"is not writable ({exc.strerror})",
                    "Choose a folder you can write to",
                ) from None
        else:
            raise VideoLoopError(
                "output_directory", str(out), "has too many runs with this name this second", "Try again"
            )
        store = cls(root, frame_count)
        (root / MANIFEST).touch()
        return store

    @classmethod
    def open(cls, root: str | Path, *, to_continue: bool = False) -> "FrameStore":
        """Opens a run folder and reports what is complete.

        A frame counts as finished when the manifest lists it and its PNG is whole (a zero-byte
        or cut file, e.g. from a full disk or a copy, is not). If the manifest itself is gone,
        the whole frames on disk count: they were renamed into place only once written.

        to_continue: this process takes the folder over to go on with the run. The folder is
        locked first, and only then tidied: leftover temporary files and damaged frames are
        deleted (they are made again) and a lost manifest is written anew. A plain open reads
        and changes nothing, so it is safe beside a run in progress."""
        root = Path(str(root)).expanduser()
        settings = read_run_settings(root)
        store = cls(root, int(settings["run"].get("frame_count", 0)))
        if to_continue:
            store.lock()
            for leftover in root.rglob(".partial-*"):
                leftover.unlink(missing_ok=True)
        manifest = root / MANIFEST
        if manifest.is_file():
            listed = _manifest_entries(manifest)
        else:
            log.warning("%s is missing; rebuilt from the frames on disk", manifest)
            listed = [
                (p.parent.name, int(p.stem) - 1)
                for p in sorted(root.glob("*/[0-9]*.png"))
                if p.stem.isdigit() and p.parent.name != MASKS
            ]
        for folder, frame in listed:
            path = store.frame_path(folder, frame)
            if _whole_png(path):
                store._complete.setdefault(folder, set()).add(frame)
            elif path.exists() and to_continue:
                log.warning("%s is damaged; that frame is made again", path)
                path.unlink()
        if to_continue and not manifest.is_file():
            for folder, frames in store._complete.items():
                for frame in sorted(frames):
                    store._append_manifest(folder, frame)
        return store

    def lock(self) -> None:
        """Holds the run folder for this process, so that two cannot write the same frames.

        The .lock file exists only while a process holds the folder: unlock() removes it. A
        process that locked the file just as the holder removed it holds a file no one else
        can see, so it checks that its file is still the one at the path and else tries again."""
        path = self.root / LOCK
        for _ in range(10):
            handle = open(path, "a+")
            try:
                if os.name == "nt":
                    import msvcrt

                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                else:
                    import fcntl

                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise VideoLoopError(
                    "resume",
                    str(self.root),
                    "is in use by another run right now",
                    "Wait for that run to finish or stop it; one run folder is made by one process at a time",
                ) from None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if os.name == "nt" or current == os.fstat(handle.fileno()).st_ino:
                self._lock = handle
                return
            handle.close()
        raise VideoLoopError("resume", str(self.root), "its lock file keeps changing", "Try again")

    def unlock(self) -> None:
        handle = getattr(self, "_lock", None)
        if handle is not None:
            if os.name != "nt":  # removed while still held (see lock()); Windows keeps an open file
                (self.root / LOCK).unlink(missing_ok=True)
            handle.close()  # closing releases the lock; an exit or a kill does too
            self._lock = None

    # -- settings ----------------------------------------------------------------------------
    def write_settings(self, data: dict[str, Any]) -> None:
        write_atomic(self.root / SETTINGS, json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))

    def read_settings(self) -> dict[str, Any]:
        return read_run_settings(self.root)

    # -- frames ------------------------------------------------------------------------------
    def frame_path(self, folder: str, index: int) -> Path:
        return self.root / folder / frame_file_name(index)

    def mask_path(self, index: int) -> Path:
        return self.frame_path(MASKS, index)

    def write_frame(self, folder: str, index: int, image: np.ndarray) -> Path:
        """Writes one frame: at once, or queued while background_writes() is on."""
        path = self.frame_path(folder, index)
        if self._writer is None:
            self._write_now(folder, index, image)
            return path
        self._raise_failure()
        self._slots.acquire()  # back-pressure: at most `depth` frames wait in memory
        key = (folder, index)
        self._pending[key] = image
        self._announce()
        self._writer.submit(self._write_now, folder, index, image).add_done_callback(
            lambda future: self._written(key, future)
        )
        return path

    def _write_now(self, folder: str, index: int, image: np.ndarray) -> None:
        path = self.frame_path(folder, index)
        path.parent.mkdir(exist_ok=True)
        q = quantize16(image)
        write_atomic(path, encode_png16(q))
        self._keep_recent((folder, index), q)
        self._mark_complete(folder, index)

    def _keep_recent(self, key: tuple[str, int], q: np.ndarray) -> None:
        """Keeps a frame just written (its file whole) to be read back without a decode."""
        with self._recent_lock:
            old = self._recent.pop(key, None)
            self._recent_bytes += q.nbytes - (old.nbytes if old is not None else 0)
            self._recent[key] = q
            while self._recent_bytes > RECENT_BYTES:
                _, dropped = self._recent.popitem(last=False)
                self._recent_bytes -= dropped.nbytes

    def _read_recent(self, key: tuple[str, int]) -> np.ndarray | None:
        with self._recent_lock:
            q = self._recent.get(key)
        return None if q is None else _unquantize(q)

    def _written(self, key: tuple[str, int], future: Future[None]) -> None:
        if future.exception() is not None and self._failure is None:
            self._failure = future.exception()
        self._pending.pop(key, None)
        self._slots.release()

    @contextlib.contextmanager
    def background_writes(self, depth: int = 8, workers: int | None = None) -> Iterator[None]:
        """Frame files are encoded and written on workers while the next frames generate.

        The 16-bit PNG encode (~20 ms at 512x512 on one core) thus leaves the generation's path;
        several workers keep up with a GPU that makes a frame in less (the encoder releases the
        GIL). The crash rules stay: a manifest line is written only after its file is whole, so
        after a kill -9 the queued frames are simply made again. Until then a queued frame is
        served from memory, so readers never miss it. At most `depth` frames wait in memory."""
        workers = workers or min(4, os.cpu_count() or 1)
        self._writer = ThreadPoolExecutor(max_workers=min(workers, depth), thread_name_prefix="videoloop-write")
        self._depth = depth
        self._slots = threading.BoundedSemaphore(depth)
        try:
            yield
            self.flush()
        finally:
            self._writer.shutdown(wait=True)  # a stop (Ctrl-C, Interrupt) still keeps what was queued
            self._writer = None

    def flush(self) -> None:
        """Waits until every queued frame is on disk; raises the first write that failed."""
        if self._writer is not None:
            # Each queued frame holds a slot until it is written: holding them all means none is left.
            for _ in range(self._depth):
                self._slots.acquire()
            for _ in range(self._depth):
                self._slots.release()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    @contextlib.contextmanager
    def filled_by(
        self, folder: str, fill: Callable[[Callable[[int], bool]], None], along: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """Runs fill(may_make) on its own thread while the block runs. Meanwhile read_frame(folder,
        i) waits until frame i is queued or written, so the block can use the folder's first
        frames while the last ones are still being made. The fill asks may_make(i) before it
        makes frame i: that waits until a reader has asked for a frame at most FILL_AHEAD
        before it, so the fill takes no more of the machine than the readers need, and says
        False once the block has ended. The block's end waits for the fill and raises its error;
        a reader waiting for a frame the fill did not make gets that error too. `along`: folders
        the fill writes frame i of (whole, e.g. the masks) before it queues the folder's frame i:
        reading one of them waits for the folder's frame i."""
        done = threading.Event()
        self._asked[folder] = -1
        self._along.update(dict.fromkeys(along, folder))

        def may_make(index: int) -> bool:
            with self._arrived:
                while not done.is_set() and index > self._asked[folder] + FILL_AHEAD:
                    self._arrived.wait()
            return not done.is_set()

        def run() -> None:
            try:
                fill(may_make)
            except BaseException as exc:  # handed to the readers and to the block's end
                self._fill_errors[folder] = exc
            finally:
                with self._arrived:
                    self._filling.discard(folder)
                    self._arrived.notify_all()

        self._filling.add(folder)
        self._fill_errors.pop(folder, None)
        thread = threading.Thread(target=run, name=f"videoloop-fill-{folder}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            with self._arrived:
                done.set()
                self._arrived.notify_all()
            thread.join()
            for name in along:
                self._along.pop(name, None)
        error = self._fill_errors.pop(folder, None)
        if error is not None:
            raise error

    def _wait_for(self, folder: str, index: int) -> None:
        with self._arrived:
            if index > self._asked.get(folder, index):
                self._asked[folder] = index
                self._arrived.notify_all()  # the fill may go on
            while folder in self._filling and not self._has(folder, index):
                self._arrived.wait()
        error = self._fill_errors.get(folder)
        if error is not None and not self._has(folder, index):
            raise error

    def _has(self, folder: str, index: int) -> bool:
        # A frame leaves the queue only after it is marked complete: it is always one or the other.
        return (folder, index) in self._pending or self.is_complete(folder, index)

    def _wait_if_filling(self, folder: str, index: int) -> None:
        leader = self._along.get(folder, folder)
        if leader in self._filling or leader in self._fill_errors:
            self._wait_for(leader, index)

    def read_frame(self, folder: str, index: int) -> np.ndarray:
        self._wait_if_filling(folder, index)
        queued = self._pending.get((folder, index))
        if queued is not None:
            return as_stored(queued)  # the very values its file will hold
        recent = self._read_recent((folder, index))
        if recent is not None:
            return recent
        path = self.frame_path(folder, index)
        try:
            return decode_png(np.fromfile(path, dtype=np.uint8))
        except OSError as exc:
            raise VideoLoopError(
                "resume", str(path), f"cannot be read ({exc})", "Delete it and resume: the frame is made again"
            ) from None

    def frames(self, folder: str) -> Iterator[np.ndarray]:
        for index in range(self.frame_count):
            yield self.read_frame(folder, index)

    def write_mask(self, index: int, mask: np.ndarray) -> None:
        path = self.mask_path(index)
        path.parent.mkdir(exist_ok=True)
        q = quantize16(mask)
        write_atomic(path, encode_png16(q))
        self._keep_recent((MASKS, index), q)

    def read_mask(self, index: int) -> np.ndarray | None:
        self._wait_if_filling(MASKS, index)
        recent = self._read_recent((MASKS, index))
        if recent is not None:
            return recent
        path = self.mask_path(index)
        if not path.is_file():
            return None
        return decode_png(np.fromfile(path, dtype=np.uint8))

    def _mark_complete(self, folder: str, index: int) -> None:
        # Appended after the frame's rename: a frame in the manifest is always on disk.
        self._append_manifest(folder, index)
        self._complete.setdefault(folder, set()).add(index)
        self._announce()

    def _announce(self) -> None:
        """A frame was queued or finished: a reader of a folder being filled may be waiting for it."""
        if self._filling:
            with self._arrived:
                self._arrived.notify_all()

    def _append_manifest(self, folder: str, index: int) -> None:
        with self._manifest_lock, open(self.root / MANIFEST, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"dir": folder, "frame": index}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def is_complete(self, folder: str, index: int) -> bool:
        return index in self._complete.get(folder, ())

    def complete_frames(self, folder: str) -> set[int]:
        return set(self._complete.get(folder, ()))

    def folder_complete(self, folder: str) -> bool:
        return len(self._complete.get(folder, ())) >= self.frame_count > 0

    def video_path(self, name: str, extension: str) -> Path:
        return self.root / f"{name}.{extension}"


def read_run_settings(root: str | Path) -> dict[str, Any]:
    """A run folder's settings.json (with its "run" record); a missing or damaged one is named."""
    root = Path(str(root)).expanduser()
    path = root / SETTINGS
    if not path.is_file():
        raise VideoLoopError(
            "resume",
            str(root),
            "is not a Video Loopback run folder (it has no settings.json)",
            "Give the folder a run created",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("run"), dict):
            raise ValueError("no run record")
        return data
    except (ValueError, UnicodeDecodeError) as exc:
        raise VideoLoopError(
            "resume",
            str(path),
            f"is damaged ({short(exc, quote=False)})",
            "Restore settings.json from a copy; without it the run cannot be resumed",
        ) from None


def _manifest_entries(manifest: Path) -> list[tuple[str, int]]:
    entries = []
    for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            entries.append((str(entry["dir"]), int(entry["frame"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: that frame is simply redone
    return entries


def _whole_png(path: Path) -> bool:
    """The file starts with PNG's signature and ends with its IEND chunk (cheap: 20 bytes read)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < 20:
                return False
            handle.seek(-12, os.SEEK_END)
            tail = handle.read(12)
    except OSError:
        return False
    return head == b"\x89PNG\r\n\x1a\n" and tail[4:8] == b"IEND"


def check_output_directory(out: Path, input_path: str | Path | None) -> None:
    """Refuses an output folder inside a run folder (a new run would be nested among another
    run's files) or inside the input folder (the next run would read its own output)."""
    absolute = out.absolute()
    for folder in (absolute, *absolute.parents):
        if (folder / MANIFEST).is_file() and (folder / SETTINGS).is_file():
            raise VideoLoopError(
                "output_directory",
                str(out),
                f"is inside the run folder {folder}",
                f"Give the folder that holds it ({folder.parent}) to start a new run beside it,"
                " or resume it (--resume / resume_run_folder)",
            )
    if not input_path:
        return
    inp = Path(str(input_path)).expanduser()
    if not inp.is_dir():
        return
    try:
        out_resolved = out.resolve()
        inp_resolved = inp.resolve()
    except OSError:
        return
    if out_resolved == inp_resolved or inp_resolved in out_resolved.parents:
        raise VideoLoopError(
            "output_directory",
            str(out),
            f"is inside the input folder {inp}",
            "Choose an output folder outside the input, so that runs never mix with the frames they read",
        )
