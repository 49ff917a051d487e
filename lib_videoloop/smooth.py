"""Temporal smoothing of an existing clip, without any model: the `smooth` command.

Streams the clip through a sliding window with any temporal_superimpose_method of the engine,
optionally along the motion of another clip (its clean source, --reference_frames_directory),
then optionally through the FastDVDNet pass or patch blending, into a video (with the clip's
sound) or a folder of PNG frames. The temporal filter runs backwards first, so its frames and
backward pass go through a temporary folder (float files, removed at the end) rather than memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from lib_videoloop.config import (
    FILTER_METHOD,
    VIDEO_FORMATS,
    Settings,
    reference_folders,
    temporal_weights,
)
from lib_videoloop.disk_room import LOOP_FRAME_BYTES, RoomNeeded, check_room
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.images import write_atomic
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import FrameSource, open_source
from lib_videoloop.media.store import encode_png16
from lib_videoloop.motion import FlowChain, FlowEstimator, PairFlow
from lib_videoloop.output_video import video_of
from lib_videoloop.patch_blend import FAST_SCRATCH_BYTES
from lib_videoloop.temporal import FILTER_SCRATCH_BYTES, NeighbourMix, filter_in_order

CLIP_BYTES = 12  # a pixel of the clip as the temporal filter keeps it on disk: float32, 3 channels


class _Lookahead:
    """Frames of a stream by index, read as far ahead as asked, forgotten once behind."""

    def __init__(self, frames: Iterable[np.ndarray], setting: str, shape: tuple[int, ...] | None = None) -> None:
        self.source = enumerate(frames)
        self.setting = setting
        self.shape = shape
        self.cache: dict[int, np.ndarray] = {}

    def get(self, j: int) -> np.ndarray:
        while j not in self.cache:
            item = next(self.source, None)
            if item is None:
                raise VideoLoopError(
                    self.setting, "", f"has only {j} frames, fewer than the clip", "Give a clip as long as the input"
                )
            k, frame = item
            if self.shape is not None and frame.shape != self.shape:
                frame = resize_frame(frame, self.shape[1], self.shape[0])  # flows need the clip's geometry only
            self.cache[k] = frame
        return self.cache[j]

    def forget_below(self, j: int) -> None:
        for k in [k for k in self.cache if k < j]:
            del self.cache[k]


def smooth_frames(
    frames: Iterable[np.ndarray], frame_count: int, s: Settings, references: Iterable[np.ndarray] | None = None
) -> Iterator[np.ndarray]:
    """Yields each frame mixed with its neighbours by s's temporal_superimpose_method, weights and
    options, as a run's loop mixes them (temporal.py); the motion (and the difference mask) come
    from `references`, or from the clip itself. Holds only a window of frames."""
    clip = _Lookahead(frames, "input")
    refs = clip if references is None else _Lookahead(references, "--reference_frames_directory", clip.get(0).shape)
    if s.temporal_superimpose_method == FILTER_METHOD:
        yield from _filtered(clip, refs, frame_count, s.temporal_filter_strength)
        return
    estimator = FlowEstimator()
    mixer = NeighbourMix(s, FlowChain(lambda k: PairFlow.estimate(estimator, refs.get(k), refs.get(k + 1))))
    weights = temporal_weights(s.temporal_superimpose_alpha_list)
    half = len(weights) // 2
    for i in range(frame_count):
        pairs, needed = mixer.window(weights, i, frame_count)
        yield mixer.mix({j: clip.get(j) for j in needed}, lambda js: {j: refs.get(j) for j in js}, i, pairs)
        clip.forget_below(i + 1 - half)
        refs.forget_below(i + 1 - half)


def _filtered(clip: _Lookahead, refs: _Lookahead, frame_count: int, strength: float) -> Iterator[np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="videoloop-smooth-") as tmp:
        folder = Path(tmp)
        flows = FlowFolder(folder / "flows", refs.get, frame_count)
        shape = clip.get(0).shape
        for i in range(frame_count):  # the clip to float files, the flows computed on the way
            clip.get(i).astype(np.float32).tofile(folder / f"{i:06d}.raw")  # CLIP_BYTES a pixel
            if i > 0:
                flows.pair(i - 1)
            clip.forget_below(i)  # frame i is the next pair's first
            refs.forget_below(i)

        def read(i: int) -> np.ndarray:
            return np.fromfile(folder / f"{i:06d}.raw", np.float32).reshape(shape)

        for _, _x, out in filter_in_order(frame_count, read, flows.chain(), lambda _i: strength, folder / "filter"):
            yield out


def smooth_clip(s: Settings, output: Path, *, denoise: str = "none") -> int:
    """The `smooth` command: the input clip smoothed by s's temporal method, then `denoise`, into
    `output` (a video by its suffix, else a folder of PNG frames). Returns the frame count."""
    from lib_videoloop.run_setup import open_input

    _check_output(output, Path(s.input_directory))
    source = open_input(s)
    info = source.info
    _check_room(s, info.width, info.height, info.frame_count, output, denoise=denoise)
    reference = _reference(s, info.frame_count)
    references = None if reference is None else (f.image for f in reference)
    frames = smooth_frames((f.image for f in source), info.frame_count, s, references)
    if denoise == "fastdvdnet":
        from lib_videoloop.denoise import denoise_pass_stream
        from lib_videoloop.denoise.weights import find_weights

        frames = denoise_pass_stream(frames, info.frame_count, find_weights(s.fastdvdnet_weights), s)
    elif denoise == "patch-blend":
        from lib_videoloop.patch_blend import patch_blend_clip

        # The guides: the reference clip, else the input itself (read once more).
        guides = _reference(s, info.frame_count) or open_input(s)
        frames = patch_blend_clip(
            frames, (f.image for f in guides), window=s.patch_blend_window, mode=s.patch_blend_mode,
            alpha=s.video_post_process_alpha,
        )  # fmt: skip
    suffix = output.suffix.lower().lstrip(".")
    if suffix in VIDEO_FORMATS:
        output.parent.mkdir(parents=True, exist_ok=True)
        video_of(frames, output, replace(s, output_format=suffix), info.clock, info.frame_count)
    else:
        output.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            write_atomic(output / f"{i + 1:06d}.png", encode_png16(frame))
    return info.frame_count


def _check_room(s: Settings, width: int, height: int, frame_count: int, output: Path, *, denoise: str) -> None:
    """What smooth keeps in the system's temporary folder at its peak, and a folder of frames'
    16-bit PNGs. The temporal filter keeps the clip (float32) and its own scratch files, with
    the flows; the patch blend pass the clip and its guides (float32), its flows and its
    backward sweep. The pass takes in the filtered clip while the filter's files are still
    there, and makes the rest once they are gone. Measured on 40 frames of bikes.mp4: a peak of
    224.0 MB with the filter (224.0 worked out), 386 MB with the pass (391), 384 MB with both."""
    filtered, patch_blend = s.temporal_superimpose_method == FILTER_METHOD, denoise == "patch-blend"
    while_filtering = filtered * (CLIP_BYTES + FILTER_SCRATCH_BYTES) + patch_blend * CLIP_BYTES
    while_blending = patch_blend * (2 * CLIP_BYTES + FAST_SCRATCH_BYTES)
    if filtered or patch_blend:
        needed = RoomNeeded.for_frames(width, height, frame_count, max(while_filtering, while_blending), flows=1)
        fix = "Set TMPDIR to a folder on a disk with more room, or smooth fewer frames (--max_frames)"
        check_room(Path(tempfile.gettempdir()), needed, "TMPDIR", fix, "smooth")
    if output.suffix.lower().lstrip(".") not in VIDEO_FORMATS:
        needed = RoomNeeded.for_frames(width, height, frame_count, LOOP_FRAME_BYTES, flows=0)
        fix = "Give a folder on a disk with more room, or a video file name (.mp4)"
        check_room(output, needed, "--output", fix, "smooth")


def _reference(s: Settings, frame_count: int) -> FrameSource | None:
    """The one reference clip smooth follows, read from its start (the clip smoothed is usually a
    run's video, already cut to the frames of its source that the run used)."""
    if not s.reference_frames_directory.strip():
        return None
    folders = reference_folders(s.reference_frames_directory)
    if len(folders) > 1:
        raise VideoLoopError(
            "reference_frames_directory", s.reference_frames_directory, "names several clips",
            "smooth follows one reference clip: give one video or folder",
        )  # fmt: skip
    reference = open_source(folders[0], setting="reference_frames_directory", max_frames=frame_count)
    if reference.info.frame_count < frame_count:
        raise VideoLoopError(
            "reference_frames_directory", folders[0],
            f"has {reference.info.frame_count} frames, fewer than the clip's {frame_count}",
            "Give the clip's source, with at least as many frames",
        )  # fmt: skip
    return reference


def _check_output(out: Path, inp: Path) -> None:
    """smooth never writes into (or over) what it reads, nor over earlier results."""
    out_resolved, inp_resolved = out.expanduser().resolve(), inp.expanduser().resolve()
    if out_resolved == inp_resolved or (inp_resolved.is_dir() and inp_resolved in out_resolved.parents):
        raise VideoLoopError(
            "--output", str(out), f"is inside the input {inp}", "Give a file or folder outside the input"
        )
    if out.suffix.lower().lstrip(".") in VIDEO_FORMATS:
        if out.exists():
            raise VideoLoopError(
                "--output", str(out), "already exists", "Give a new file name; earlier results are never overwritten"
            )
    elif out.exists() and any(out.iterdir()):
        raise VideoLoopError("--output", str(out), "is a folder that is not empty", "Give a new or empty folder")
