"""Resuming a stopped run: what makes a resumed run end with the frames of an uninterrupted one.

- The run folder holds everything: settings.json (settings, seeds drawn, the run's record) and
  a manifest line per finished frame, written after the frame's file is whole (media/store.py).
  A frame that is listed but empty or cut short, or a lost manifest, is dealt with on reopening.
- Every frame's seed comes from the plan (planning.py), never from a counter of this session,
  and the WebUI backend seeds torch per frame, so a frame made today equals one made yesterday.
- A loop whose frames were all made before keeps its video and report; a finished denoise pass
  (its folder complete) is not run again.
- One process at a time holds the folder (FrameStore.lock).
- The settings are the run's own: a resume takes none from the command line or the panel. The
  model may change; each one that made frames is kept in the record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lib_videoloop.config import Settings
from lib_videoloop.errors import VideoLoopError, short
from lib_videoloop.media.store import SETTINGS, FrameStore, loop_dir_name, read_run_settings
from lib_videoloop.run_state import RunState

log = logging.getLogger(__name__)


def reopen(run_dir: str | Path) -> tuple[FrameStore, Settings, RunState]:
    """The run folder's store (locked for this process), settings and record; a damaged
    settings.json is named."""
    store = FrameStore.open(run_dir, to_continue=True)
    data = store.read_settings()
    try:
        settings = Settings.from_dict(data)
        state = RunState.from_dict(data["run"])
    except (VideoLoopError, TypeError, ValueError, KeyError) as exc:
        store.unlock()
        raise VideoLoopError(
            "resume",
            str(store.root / SETTINGS),
            f"holds a bad value ({short(exc, quote=False)})",
            "Fix it by hand, or start the run anew",
        ) from None
    return store, settings, state


def recorded_model(run_dir: str | Path, requested: str | None) -> tuple[str, dict[str, Any]]:
    """The diffusers model to resume with, and the recorded settings.

    Without --model, the one the run recorded; another one is allowed, with a warning."""
    recorded = read_run_settings(run_dir)
    models = (recorded.get("run") or {}).get("models") or [recorded.get("model_name", "")]  # older runs: model_name
    model = str(models[-1])
    if not requested:
        if not model.startswith("diffusers:"):
            raise VideoLoopError(
                "--model",
                None,
                f"is needed: the run was made with {model or 'an unrecorded model'}, not by the command line",
                "Give the model with --model",
            )
        return model.removeprefix("diffusers:"), recorded
    if model and f"diffusers:{requested}" != model:
        log.warning(
            "--model %s differs from the model the run was made with (%s): frames made from now on will not match "
            "what the first model would have made",
            requested,
            model,
        )
    return requested, recorded


def refuse_settings(given: dict[str, Any]) -> None:
    """A resumed run keeps its settings: any given alongside --resume would be ignored."""
    if given:
        flag, value = next(iter(given.items()))
        raise VideoLoopError(
            flag,
            value,
            "cannot be given with --resume: a resumed run keeps the settings in its settings.json",
            "Drop it; to change settings, start a new run with --config RUN_DIR/settings.json",
        )


def finished_video(run_dir: str | Path) -> Path | None:
    """The run's video when every frame of every loop is made and the video is there: such a run
    has nothing left to resume. A folder another process holds is refused as a resume would be."""
    store = FrameStore.open(run_dir, to_continue=True)
    try:
        data = store.read_settings()
        loops = int(data.get("loop_n", 0))
        if loops < 1 or any(
            len(store.complete_frames(loop_dir_name(k))) < store.frame_count for k in range(1, loops + 1)
        ):
            return None
        video = store.video_path(store.root.name, str(data.get("output_format", "mp4")))
        return video if video.is_file() else None
    finally:
        store.unlock()


def kept_loop_video(store: FrameStore, loop: int, video_format: str) -> Path | None:
    video = store.video_path(loop_dir_name(loop), video_format)
    return video if video.is_file() else None


def loop_reported(store: FrameStore, loop: int) -> bool:
    from lib_videoloop.report import RunReport

    return any(entry["loop"] == loop for entry in RunReport(store.root).data["loops"])
