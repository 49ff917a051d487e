"""Preparing a run: every check that needs no model, then the run folder and its input frames.

Nothing here generates. A run that is refused leaves nothing behind: the checks come before the
run folder exists, and so does one decode of every input frame, mask and reference frame, so
that a file damaged past its header refuses the run too. The engine then copies them into the
run folder while loop 1 generates (copy_input, FrameStore.filled_by).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from lib_videoloop.backends import Backend
from lib_videoloop.config import (
    DIFFERENCE_METHOD,
    MAX_FRAME_LOOPS,
    MAX_GIF_FPS,
    MAX_SIDE,
    MIN_SIDE,
    Settings,
    keyframe_numbers,
    reference_folders,
)
from lib_videoloop.denoise.weights import WeightPlaces, find_weights
from lib_videoloop.disk_room import RoomNeeded, check_room
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.masks import MaskSource, fit_mask, missing_masks_error
from lib_videoloop.media.images import MAX_PIXELS
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import FolderSource, Frame, FrameSource, SourceInfo, open_source
from lib_videoloop.media.store import INPUT, FrameStore
from lib_videoloop.media.writer import output_fps
from lib_videoloop.planning import read_txt_prompts, uses_mask, uses_subseed
from lib_videoloop.run_state import RunFolder, RunState, SourceRecord
from lib_videoloop.schedule_isolation import check_plan_isolated

log = logging.getLogger(__name__)

RESIZE_AHEAD = 3  # frames resized ahead of the one written: memory stays flat with the clip


@dataclass(frozen=True)
class InputCopy:
    """What a run copies into its folder before the frames are made: the input, its masks and
    the reference frames, each opened (and checked) once."""

    source: FrameSource
    mask_source: MaskSource | None
    references: list[FrameSource]

    @classmethod
    def of(cls, s: Settings, frame_count: int, source: FrameSource) -> InputCopy:
        mask_source = MaskSource(s.mask_directory, s.mask_threshold, source.info.kind) if s.use_mask else None
        return cls(source, mask_source, reference_sources(s, frame_count))


@dataclass(frozen=True)
class PreparedRun:
    run: RunFolder  # created and locked for this process; the seeds drawn
    inputs: InputCopy


def prepare_run(settings: Settings, backend: Backend, places: WeightPlaces) -> PreparedRun:
    s = settings
    s.validate()
    source = open_input(s)
    info = source.info
    n = info.frame_count
    width, height = target_size(s, info)
    _check_job(s, n, width, height, info)
    txt_prompts = None
    if s.read_prompt_from_txt:
        if not isinstance(source, FolderSource):
            raise VideoLoopError(
                "read_prompt_from_txt",
                True,
                "needs a folder of frames with a .txt beside each",
                "Turn it off for video input, or use prompt_schedule",
            )
        txt_prompts = read_txt_prompts(source.files)
    mask_source = _check_masks(s, source) if s.use_mask else None
    references = reference_sources(s, n)
    if s.temporal_superimpose_method == DIFFERENCE_METHOD and not references:
        log.info("difference mask: the input frames are the reference")
    if s.video_post_process_method == "FastDVDNet":
        find_weights(s.fastdvdnet_weights, places)
    images = check_plan_isolated(s, n, txt_prompts, width * height)
    first = resize_frame(_first_image(source), width, height, s.resize_mode)
    check_room(Path(s.output_directory), RoomNeeded.for_new_run(s, first, n, len(references)))
    backend.check(uses_subseed(s), uses_mask(s))
    log.info("plan: %d frames x %d loops = %d generations (%d images) at %dx%d%s", n, s.loop_n, n * s.loop_n,
             images, width, height, "; keyframe mode makes only keyframes and repairs" if s.keyframe_mode != "off" else "")  # fmt: skip
    state = RunState(
        frame_count=n,
        width=width,
        height=height,
        seed=s.seed if s.seed >= 0 else random.randrange(2**32),
        subseed=s.subseed if s.subseed >= 0 else random.randrange(2**32),
        seed_as_typed=s.seed,
        subseed_as_typed=s.subseed,
        source=SourceRecord.of(info),
        txt_prompts=txt_prompts,
        references=[f"reference_{k + 1}" for k in range(len(references))],
        # A model known before any generation (diffusers); the WebUI's is read after its first.
        models=[model] if (model := getattr(backend, "model_name", None)) else [],
    )
    # Seeds recorded as used, so that `--config settings.json` repeats the run exactly.
    settings = replace(s, seed=state.seed, subseed=state.subseed)
    # Copied while generating: a frame damaged past its header is found here instead.
    source.verify()
    if mask_source is not None:
        mask_source.verify(source.info.names)
    for reference in references:
        reference.verify()
    store = FrameStore.create(s.output_directory, Path(str(s.input_directory)).stem, n, s.input_directory)
    store.lock()
    write_record(store, settings, state)
    log.info("run folder %s: %d frames at %dx%d, %d loops", store.root, n, width, height, s.loop_n)
    return PreparedRun(RunFolder(store, settings, state), InputCopy(source, mask_source, references))


def write_record(store: FrameStore, settings: Settings, state: RunState) -> None:
    """settings.json: the settings, with the run's own record under "run"."""
    data = settings.to_dict()
    data["run"] = state.to_dict()
    store.write_settings(data)


def open_input(s: Settings) -> FrameSource:
    return open_source(
        s.input_directory, start_frame=s.start_frame, extract_nth_frame=s.extract_nth_frame, max_frames=s.max_frames
    )


def target_size(settings: Settings, info: SourceInfo) -> tuple[int, int]:
    """The working size: the settings', or the source's; one given keeps the aspect ratio."""
    w, h = settings.width, settings.height
    if w and not h:
        h = max(1, round(info.height * w / info.width))
    elif h and not w:
        w = max(1, round(info.width * h / info.height))
    elif not w and not h:
        w, h = info.width, info.height
    return w, h


def copy_input(
    run: RunFolder, inputs: InputCopy, resize: ThreadPoolExecutor, may_copy: Callable[[int], bool] = lambda _i: True
) -> None:
    """Writes the input frames (and masks, references) missing from the run folder, at the
    working size, each once may_copy(index) allows it (False: stop), a few frames resized ahead
    on `resize`. A new run copies while loop 1 generates (FrameStore.filled_by: loop 1 reads
    each frame as soon as it is queued); a resume calls it too, when the input was not all
    copied. A frame's mask and reference frames are queued before the frame itself. With the
    store's background writes on, the next frame is decoded while the last ones are encoded."""
    store, s, state = run.store, run.settings, run.state
    source, mask_source = inputs.source, inputs.mask_source
    w, h = state.width, state.height
    missing = []
    names = source.info.names
    frames = (frame for frame in source if not store.is_complete(INPUT, frame.index))
    allowed = itertools.takewhile(lambda frame: may_copy(frame.index), frames)  # asked before the resize
    pending_references = [(f"reference_{k + 1}", iter(ref)) for k, ref in enumerate(inputs.references)]

    def copy_references(upto: int) -> None:
        # Reference frames up to `upto`, each queued before the input frame of its index: a read
        # of one waits for that input frame (FrameStore.filled_by's `along`).
        for folder, ref_frames in pending_references:
            for frame in ref_frames:  # goes on where the last call stopped
                if frame.index < state.frame_count and not store.is_complete(folder, frame.index):
                    store.write_frame(folder, frame.index, resize_frame(frame.image, w, h, s.resize_mode))
                if frame.index >= upto:
                    break

    for frame, resized in _resized(allowed, w, h, s.resize_mode, resize):
        copy_references(frame.index)
        if mask_source is not None:
            # The mask first: an input frame in the manifest then always has its mask.
            number = int(names[frame.index]) if source.info.kind == "video" else None
            mask = mask_source.mask_for(frame, number)
            if mask is None:
                missing.append(frame.name)
                continue
            store.write_mask(frame.index, fit_mask(mask, w, h, s.resize_mode))
        store.write_frame(INPUT, frame.index, resized)
    if missing:
        raise missing_masks_error(missing, s.mask_directory)


def _resized(
    frames: Iterable[Frame], width: int, height: int, mode: int, pool: ThreadPoolExecutor
) -> Iterator[tuple[Frame, np.ndarray]]:
    """Each frame with its image at the working size, in order. The resizes run on the pool a
    few frames ahead of the one written (Pillow lets go of the GIL while it resamples): at
    1024x576 a resize takes longer than the frame's decode and encode together."""
    ahead: deque[tuple[Frame, Future[np.ndarray]]] = deque()
    for frame in frames:
        ahead.append((frame, pool.submit(resize_frame, frame.image, width, height, mode)))
        if len(ahead) > RESIZE_AHEAD:
            done, future = ahead.popleft()
            yield done, future.result()
    while ahead:
        done, future = ahead.popleft()
        yield done, future.result()


def reference_sources(s: Settings, frame_count: int) -> list[FrameSource]:
    sources = []
    for part in reference_folders(s.reference_frames_directory):
        ref = open_source(
            part,
            start_frame=s.start_frame,
            extract_nth_frame=s.extract_nth_frame,
            max_frames=s.max_frames,
            setting="reference_frames_directory",
        )
        if ref.info.frame_count < frame_count:
            raise VideoLoopError(
                "reference_frames_directory",
                part,
                f"has {ref.info.frame_count} frames after selection, the input has {frame_count}",
                "Give as many reference frames as input frames",
            )
        sources.append(ref)
    return sources


def check_generations(s: Settings, frame_count: int) -> None:
    """frames x loops within what one run may hold (the run and the panel's schedule check)."""
    if frame_count * s.loop_n > MAX_FRAME_LOOPS:
        raise VideoLoopError(
            "loop_n",
            s.loop_n,
            f"with {frame_count:,} frames makes {frame_count * s.loop_n:,} generations, more than the "
            f"{MAX_FRAME_LOOPS:,} one run may hold",
            "Use fewer loops, or split the clip with start_frame and max_frames",
        )


def _check_job(s: Settings, frame_count: int, width: int, height: int, info: SourceInfo) -> None:
    """Bounds of the whole job, known once the input is opened."""
    check_generations(s, frame_count)
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise VideoLoopError(
                name,
                value,
                f"the frames would be {width}x{height}; each side must be from {MIN_SIDE} to {MAX_SIDE} pixels",
                "Set width and height (0 keeps the input's size)",
            )
    if s.keyframe_mode == "listed frames":
        beyond = [k for k in keyframe_numbers(s.keyframe_frames) if k >= frame_count]
        if beyond:
            raise VideoLoopError(
                "keyframe_frames",
                s.keyframe_frames,
                f"frame {beyond[0]} is past the clip's last frame, {frame_count - 1}",
                "Frame numbers count from 0, as image_i does",
            )
    if width * height > MAX_PIXELS:
        raise VideoLoopError(
            "width", width, f"{width}x{height} is more than {MAX_PIXELS:,} pixels", "Use a smaller size"
        )
    if s.output_format == "gif":
        fps = output_fps(info.fps, s.extract_nth_frame, s.output_frame_rate)
        if fps > MAX_GIF_FPS:
            raise VideoLoopError(
                "output_frame_rate",
                s.output_frame_rate,
                f"the GIF would play at {float(fps):g} fps; GIFs store at most {MAX_GIF_FPS}",
                "Set output_frame_rate to 50 or less, or use mp4 or webm",
            )


def _first_image(source: FrameSource) -> np.ndarray:
    frames = iter(source)
    try:
        return next(frames).image
    finally:
        if isinstance(frames, Generator):  # the decoder and its threads now, not when collected
            frames.close()


def _check_masks(s: Settings, source: FrameSource) -> MaskSource:
    """Resolves where each frame's mask comes from, refusing to start if any is missing."""
    masks = MaskSource(s.mask_directory, s.mask_threshold, source.info.kind)
    missing: list[str] = []
    if masks.folder is not None:
        for name in source.info.names:
            number = int(name) if source.info.kind == "video" else None
            if name not in masks.folder and (number is None or number not in masks.by_number):
                missing.append(name)
    elif masks.single is None:
        if source.info.kind == "video":
            missing = list(source.info.names)
        else:
            files = source.files if isinstance(source, FolderSource) else [source.path]  # type: ignore[attr-defined]
            missing = [p.stem for p in files if not _has_alpha(p)]
    if missing:
        raise missing_masks_error(missing, s.mask_directory)
    return masks


def _has_alpha(path: Path) -> bool:
    with Image.open(path) as img:  # reads the header only
        return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
