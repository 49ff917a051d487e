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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lib_videoloop.errors import VideoLoopError, short
from lib_videoloop.media.fills import Fills
from lib_videoloop.media.images import write_atomic
from lib_videoloop.media.manifest import MANIFEST, Manifest
from lib_videoloop.media.png_codec import encode_png, read_own_png
from lib_videoloop.media.run_lock import RunLock
from lib_videoloop.media.write_behind import RecentFrames, WriteBehind

log = logging.getLogger(__name__)

SETTINGS = "settings.json"
RECENT_BYTES = 96 << 20  # the frames last written, kept in memory (RecentFrames)
INPUT = "input"  # the input frames at the working size: loop 0
MASKS = "masks"  # one binarised mask per input frame, when masks are used


def loop_dir_name(loop: int) -> str:
    return INPUT if loop == 0 else f"loop_{loop:03d}"


def frame_file_name(index: int) -> str:
    return f"{index + 1:06d}.png"


def encode_png16(image: np.ndarray) -> bytes:
    """HxWx3 float32 [0, 1] (or HxW), or its quantize16, to 16-bit PNG bytes (png_codec.py)."""
    return encode_png(image if image.dtype == np.uint16 else quantize16(image))


def decode_png(data: bytes) -> np.ndarray:
    """A run folder file as float32 [0, 1], HxWx3 RGB or HxW: read by png_codec when it wrote
    the file, else (a folder from an older version) by OpenCV, as decode_any_png."""
    own = read_own_png(data)
    if own is None:
        return decode_any_png(data)
    return _as_float(own[:, :, :3] if own.ndim == 3 else own)


def decode_any_png(data: bytes) -> np.ndarray:
    """PNG bytes from any program (8 or 16 bits, grey, RGB or RGBA) as float32 [0, 1], HxWx3 RGB
    or HxW, read by OpenCV."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError("not a PNG image")
    return _as_float(arr[:, :, 2::-1] if arr.ndim == 3 else arr)  # OpenCV reads BGR(A)


def _as_float(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float32) / np.float32(65535.0 if arr.dtype.itemsize == 2 else 255.0)


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
    """One run folder. Create it with :meth:`create` or reopen it with :meth:`open`.

    Its parts: the manifest of finished frames (manifest.py), the writes done behind the
    generation and the frames kept in memory after them (write_behind.py), the folders a
    thread is filling while others read them (fills.py), and the lock (run_lock.py)."""

    def __init__(self, root: Path, frame_count: int) -> None:
        self.root = root
        self.frame_count = frame_count
        self._manifest = Manifest(root, MASKS)
        self._fills = Fills(self._has)
        self._writes = WriteBehind(self._write_now, self._fills.announce)
        self._recent = RecentFrames(RECENT_BYTES)
        self._lock = RunLock(root)

    # -- creating and reopening --------------------------------------------------------------
    @classmethod
    def create(
        cls, output_directory: str | Path, name: str, frame_count: int, input_path: str | Path | None = None
    ) -> FrameStore:
        root = new_run_folder(output_directory, name, input_path)
        (root / MANIFEST).touch()
        return cls(root, frame_count)

    @classmethod
    def open(cls, root: str | Path, *, to_continue: bool = False) -> FrameStore:
        """Opens a run folder and reports what is complete (Manifest.read).

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
        store._manifest.read(store.frame_path, tidy=to_continue)
        return store

    def lock(self) -> None:
        """Holds the run folder for this process, so that two cannot write the same frames."""
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

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
        if self._writes.active:
            self._writes.put(folder, index, image)
        else:
            self._write_now(folder, index, image)
        return self.frame_path(folder, index)

    def _write_now(self, folder: str, index: int, image: np.ndarray) -> None:
        path = self.frame_path(folder, index)
        path.parent.mkdir(exist_ok=True)
        q = quantize16(image)
        write_atomic(path, encode_png16(q))
        self._recent.keep((folder, index), q)
        self._manifest.add(folder, index)  # after the frame's rename: a listed frame is on disk
        self._fills.announce()

    def background_writes(self, depth: int = 8, workers: int | None = None) -> contextlib.AbstractContextManager[None]:
        """While the block runs, frames are written on `workers` threads (write_behind.py); at
        most `depth` wait in memory, served to readers from there."""
        return self._writes.running(depth, workers)

    def flush(self) -> None:
        """Waits until every queued frame is on disk; raises the first write that failed."""
        self._writes.flush()

    def filled_by(
        self, folder: str, fill: Callable[[Callable[[int], bool]], None], along: tuple[str, ...] = ()
    ) -> contextlib.AbstractContextManager[None]:
        """Runs fill(may_make) on its own thread while the block runs. Meanwhile read_frame(folder,
        i) waits until frame i is queued or written, so the block can use the folder's first
        frames while the last ones are still being made. The fill asks may_make(i) before it
        makes frame i: that waits until a reader has asked for a frame at most FILL_AHEAD (fills.py)
        before it, so the fill takes no more of the machine than the readers need, and says
        False once the block has ended. The block's end waits for the fill and raises its error;
        a reader waiting for a frame the fill did not make gets that error too. `along`: folders
        the fill writes frame i of (whole, e.g. the masks) before it queues the folder's frame i:
        reading one of them waits for the folder's frame i."""
        return self._fills.filled_by(folder, fill, along)

    def _has(self, folder: str, index: int) -> bool:
        # A frame leaves the queue only after it is marked complete: it is always one or the other.
        return (folder, index) in self._writes.pending or self.is_complete(folder, index)

    def read_frame(self, folder: str, index: int) -> np.ndarray:
        self._fills.wait_if_filling(folder, index)
        queued = self._writes.pending.get((folder, index))
        if queued is not None:
            return as_stored(queued)  # the very values its file will hold
        recent = self._recent.get((folder, index))
        if recent is not None:
            return _unquantize(recent)
        path = self.frame_path(folder, index)
        try:
            return decode_png(path.read_bytes())
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
        self._recent.keep((MASKS, index), q)

    def read_mask(self, index: int) -> np.ndarray | None:
        self._fills.wait_if_filling(MASKS, index)
        recent = self._recent.get((MASKS, index))
        if recent is not None:
            return _unquantize(recent)
        path = self.mask_path(index)
        if not path.is_file():
            return None
        return decode_png(path.read_bytes())

    def is_complete(self, folder: str, index: int) -> bool:
        return self._manifest.is_complete(folder, index)

    def complete_frames(self, folder: str) -> set[int]:
        return self._manifest.complete_frames(folder)

    def folder_complete(self, folder: str) -> bool:
        return len(self._manifest.complete_frames(folder)) >= self.frame_count > 0

    def video_path(self, name: str, extension: str) -> Path:
        return self.root / f"{name}.{extension}"


def new_run_folder(output_directory: str | Path, name: str, input_path: str | Path | None) -> Path:
    """A new, empty run folder in output_directory, named <timestamp>-<name> (never an existing one)."""
    out = Path(str(output_directory)).expanduser()
    if not str(output_directory).strip():
        raise VideoLoopError(
            "output_directory", str(output_directory), "is empty", "Give a folder where the run folder can be created"
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
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(name)}"
    for attempt in range(1000):
        root = out / (base if attempt == 0 else f"{base}-{attempt + 1}")
        try:
            root.mkdir()  # never reuse an existing folder: earlier runs stay untouched
            return root
        except FileExistsError:
            continue
        except OSError as exc:
            raise VideoLoopError(
                "output_directory", str(out), f"is not writable ({exc.strerror})", "Choose a folder you can write to"
            ) from None
    raise VideoLoopError("output_directory", str(out), "has too many runs with this name this second", "Try again")


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
