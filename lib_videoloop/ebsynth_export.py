"""A keyframe-mode run as a project for EbSynth, for those who finish there.

The layout is ebsynth_utility's project folder, which its stage 5 turns into .ebs projects and
which EbSynth itself opens directly (video: video_frame/[#####].png, keyframes:
img2img_key/[#####].png, mask: video_mask/[#####].png):

    video_frame/00001.png ...  every input frame, at the run's size (8-bit PNG)
    img2img_key/00001.png ...  the keyframes of the run's last loop, numbered as their frames
    video_mask/00001.png ...   the run's masks (white: where the style goes), when it used masks
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.keyframe_run import KEYFRAMES_FILE
from lib_videoloop.keyframes import KeyframePlan
from lib_videoloop.media.images import to_uint8, write_atomic
from lib_videoloop.media.store import INPUT, FrameStore, loop_dir_name, read_run_settings

VIDEO, KEYS, MASK = "video_frame", "img2img_key", "video_mask"


def export_ebsynth(run_dir: str | Path, out: str | Path) -> Path:
    """Writes the project into `out` (new or empty); returns it."""
    root = Path(run_dir).expanduser()
    settings = read_run_settings(root)
    keyframes = root / KEYFRAMES_FILE
    if not keyframes.is_file():
        raise VideoLoopError(
            "keyframe_mode", settings.get("keyframe_mode", "off"), "was off in this run: it has no keyframes",
            "Run with keyframe_mode set, then export that run",
        )  # fmt: skip
    plan = KeyframePlan.from_dict(json.loads(keyframes.read_text(encoding="utf-8")))
    store = FrameStore.open(root)
    last = loop_dir_name(int(settings["loop_n"]))
    missing = [k for k in plan.keyframes if not store.is_complete(last, k)]
    if missing:
        raise VideoLoopError(
            "run folder", str(root), f"has not made keyframe {missing[0]} of its last loop yet",
            "Finish the run first (run --resume RUN_DIR)",
        )  # fmt: skip
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise VideoLoopError("--output", str(target), "exists and is not an empty folder", "Give a new folder")
    for name in (VIDEO, KEYS) + ((MASK,) if settings.get("use_mask") else ()):
        (target / name).mkdir(parents=True, exist_ok=True)
    for i in range(store.frame_count):
        _write(target / VIDEO / _name(i), store.read_frame(INPUT, i))
        if settings.get("use_mask"):
            mask = store.read_mask(i)
            if mask is not None:
                _write(target / MASK / _name(i), mask)
    for k in plan.keyframes:
        _write(target / KEYS / _name(k), store.read_frame(last, k))
    return target


def _name(index: int) -> str:
    return f"{index + 1:05d}.png"


def _write(path: Path, image: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())
