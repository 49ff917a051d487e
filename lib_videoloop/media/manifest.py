"""A run folder's list of finished frames (manifest.jsonl), and the frames it holds.

One line per finished frame, {"dir": "loop_001", "frame": i}, appended only after the frame's
file is whole: after a crash, a frame in the manifest is always on disk.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


class Manifest:
    def __init__(self, root: Path, masks: str) -> None:
        self.path = root / MANIFEST
        self.masks = masks  # the masks' folder: its files are not frames
        self._complete: dict[str, set[int]] = {}
        self._lock = threading.Lock()  # writers append whole lines, one at a time

    def read(self, frame_path: Callable[[str, int], Path], *, tidy: bool) -> None:
        """What is complete: the frames the manifest lists whose PNG is whole (a zero-byte or cut
        file, e.g. from a full disk or a copy, is not). Without a manifest, the whole frames on
        disk count: they were renamed into place only once written. tidy: damaged frames are
        deleted (they are made again) and a lost manifest is written anew."""
        root = self.path.parent
        if self.path.is_file():
            listed = _entries(self.path)
        else:
            log.warning("%s is missing; rebuilt from the frames on disk", self.path)
            listed = [
                (p.parent.name, int(p.stem) - 1)
                for p in sorted(root.glob("*/[0-9]*.png"))
                if p.stem.isdigit() and p.parent.name != self.masks
            ]
        for folder, frame in listed:
            path = frame_path(folder, frame)
            if _whole_png(path):
                self._complete.setdefault(folder, set()).add(frame)
            elif path.exists() and tidy:
                log.warning("%s is damaged; that frame is made again", path)
                path.unlink()
        if tidy and not self.path.is_file():
            for folder, frames in self._complete.items():
                for frame in sorted(frames):
                    self._append(folder, frame)

    def add(self, folder: str, index: int) -> None:
        """Frame `index` of `folder` is whole on disk: listed, then counted complete."""
        self._append(folder, index)
        self._complete.setdefault(folder, set()).add(index)

    def _append(self, folder: str, index: int) -> None:
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"dir": folder, "frame": index}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def is_complete(self, folder: str, index: int) -> bool:
        return index in self._complete.get(folder, ())

    def complete_frames(self, folder: str) -> set[int]:
        return set(self._complete.get(folder, ()))


def _entries(manifest: Path) -> list[tuple[str, int]]:
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
