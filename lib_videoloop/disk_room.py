"""Whether a run's folder fits on its disk, checked before any long work starts.

A run keeps every loop's frames as 16-bit PNG, its input (and reference frames) at the working
size, and the flows between neighbours, uncompressed. At 512x512, 24 frames of bikes.mp4 took
1.0 MB an input frame, 1.2 MB a frame of each loop and 2.2 MB a pair of flows: a five-minute
1080p clip over 10 loops needs about a terabyte. A disk that fills hours into a run stops it
(and leaves no room for what else writes there, the WebUI's own outputs among them); here it is
a clear error before the run folder exists.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib_videoloop.config import FILTER_METHOD, PATCH_BLEND, Settings
from lib_videoloop.denoise.loop_pass import denoised_folder
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.flows import FLOWS
from lib_videoloop.media.flows import file_size as flow_file_size
from lib_videoloop.media.store import INPUT, FrameStore, encode_png16, loop_dir_name
from lib_videoloop.patch_blend import FAST_SCRATCH_BYTES
from lib_videoloop.run_state import RunState
from lib_videoloop.temporal import FILTER_SCRATCH_BYTES

log = logging.getLogger(__name__)

LOOP_FRAME_BYTES = 0.85 * 6  # a pixel of a loop frame's 16-bit PNG: 85% of its raw 6 bytes
SAMPLE = 8  # frames whose mean size stands for those a stopped run still writes


@dataclass(frozen=True)
class RoomNeeded:
    frames: int  # frames still to write: the input's and the reference frames' copies, every loop's
    frame_bytes: int  # all of them together
    flow_pairs: int  # flow files still to write
    flow_bytes: int  # one pair's flow file

    @classmethod
    def for_new_run(cls, s: Settings, first: np.ndarray, frame_count: int, references: int) -> RoomNeeded:
        """first: the first input frame at the working size. The input and each reference clip
        are kept at what that frame's 16-bit PNG takes; every loop's folder and its pass's
        (_loop_folders) at LOOP_FRAME_BYTES; and the largest scratch (_scratch_bytes).

        A loop's frame is a blend of generations, whose 16-bit samples' low bytes are noise: its
        PNG takes 79-91% of its 6 bytes a pixel (bikes.mp4, bigbuckbunny.mp4 and
        carphone_pristine.mp4 at 512x512, the benches' stand-in; a gradient at 64x48 from a
        random-weight checkpoint), whatever the input's takes (a smooth gradient's: a third)."""
        h, w = first.shape[:2]
        copies, loops = 1 + references, len(_loop_folders(s))
        per_frame = copies * len(encode_png16(first)) + round((loops * LOOP_FRAME_BYTES + _scratch_bytes(s)) * h * w)
        return cls(frame_count * (copies + loops), frame_count * per_frame, frame_count - 1, flow_file_size(w, h))

    @classmethod
    def to_finish(cls, store: FrameStore, s: Settings, state: RunState) -> RoomNeeded | None:
        """What a stopped run still writes into its folders (input, references, loops and their
        passes), each frame at the mean size of the last ones written, and its scratch; None
        when no frame was written yet."""
        folders = [INPUT, *state.references, *_loop_folders(s)]
        recent = [p for folder in folders for p in sorted((store.root / folder).glob("*.png"))[-SAMPLE:]][-SAMPLE:]
        if not recent:
            return None
        pixels = state.width * state.height
        left = sum(store.frame_count - len(store.complete_frames(folder)) for folder in folders)
        flows = len(list((store.root / FLOWS).glob("*.flow")))
        total = left * sum(p.stat().st_size for p in recent) // len(recent)
        total += round(_scratch_bytes(s) * pixels) * store.frame_count if left else 0
        return cls(left, total, max(0, store.frame_count - 1 - flows), flow_file_size(state.width, state.height))

    @classmethod
    def for_frames(cls, width: int, height: int, frame_count: int, pixel_bytes: float, flows: int) -> RoomNeeded:
        """frame_count frames of pixel_bytes bytes a pixel, and `flows` folders of their flows."""
        pairs = (frame_count - 1) * flows
        return cls(frame_count, round(frame_count * pixel_bytes * width * height), pairs, flow_file_size(width, height))

    @property
    def total(self) -> int:
        return self.frame_bytes + self.flow_pairs * self.flow_bytes


def _loop_folders(s: Settings) -> list[str]:
    """The folders of a run's loops, each followed by its temporal pass's when one runs."""
    folders = []
    for k in range(1, s.loop_n + 1):
        folders.append(loop_dir_name(k))
        if s.denoises(k):
            folders.append(denoised_folder(loop_dir_name(k)))
    return folders


def _scratch_bytes(s: Settings) -> float:
    """A pixel and frame of the largest temporary files a run keeps in its folder: the temporal
    filter's while a loop runs, or the patch blend pass's (fast mode) while it runs, whose
    backward sweep is read back, and removed, frame by frame as the pass's own folder (counted
    with the loops') fills: at its peak it holds the sweep alone."""
    filtered = s.temporal_superimpose_method == FILTER_METHOD
    patch_blend = s.video_post_process_method == PATCH_BLEND and s.patch_blend_mode == "fast"
    return max(filtered * FILTER_SCRATCH_BYTES, patch_blend * (FAST_SCRATCH_BYTES - LOOP_FRAME_BYTES))


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds `folder`, or would hold it once made."""
    place = folder.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    return shutil.disk_usage(place).free


NEW_RUN_FIX = (
    "Free some space or choose another output_directory; fewer loops, fewer frames (max_frames, "
    "extract_nth_frame) or a smaller width and height need less"
)
RESUME_FIX = "Free some space on that disk, then resume"


def check_room(
    folder: Path, needed: RoomNeeded, setting: str = "output_directory", fix: str = NEW_RUN_FIX, what: str = "the run"
) -> None:
    """Refuses a run whose frames and flows would not fit on the disk of `folder` (the run's
    output_directory, or the folder of the run to resume); the estimate goes to the log."""
    free = free_bytes(folder)
    log.info("disk: %s writes about %s in %s (%s free)", what, size(needed.total), folder, size(free))
    if needed.total > free:
        raise VideoLoopError(
            setting,
            str(folder),
            f"{what} would write about {size(needed.total)} there ({needed.frames:,} frames, "
            f"{size(needed.frame_bytes)}, and {size(needed.flow_pairs * needed.flow_bytes)} of flows), "
            f"but its disk has {size(free)} free",
            fix,
        )


def size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
