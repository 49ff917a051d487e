"""The loopback engine: every frame of loop k is made from loop k-1, then superimposed.

    for loop in 1..loop_n:
        for frame i:
            base = frame i of the previous loop (the input frames for loop 1)
            init = weighted blend of the previous loop's frames i-h..i+h (inside the mask)
            gen  = mean of the backend's batch_size x n_iter images
            out  = base + alpha * (gen - base), inside the mask only; then post-processing
        optional temporal denoise pass; optional video of the loop
    final video of the last loop, with the source's sound

Everything the run needs is checked, and every schedule evaluated, before the first
generation. All state lives in the run folder, so a stopped run resumes to the same frames.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lib_videoloop.backends import Backend, GenerationRequest
from lib_videoloop.blend import (
    batch_blend,
    difference_superimpose,
    inside_mask,
    superimpose,
    temporal_superimpose,
    window_weights,
)
from lib_videoloop.config import Settings
from lib_videoloop.errors import InterruptedRun, VideoLoopError
from lib_videoloop.masks import MaskSource, fit_mask, missing_masks_error
from lib_videoloop.media.images import from_pil, to_pil
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import FolderSource, FrameSource, SourceInfo, open_source
from lib_videoloop.media.store import FrameStore, loop_dir_name
from lib_videoloop.media.writer import AudioSpan, output_fps, write_video
from lib_videoloop.planning import FramePlan, Planner, read_txt_prompts

log = logging.getLogger(__name__)

INPUT = "input"
DIFFERENCE_METHOD = "with difference mask from reference"


@dataclass
class Progress:
    loop: int
    loop_n: int
    frame: int  # 1-based
    frame_count: int
    done: int  # frames finished, all loops together
    total: int
    latest: np.ndarray | None = None

    @property
    def text(self) -> str:
        return f"Loop {self.loop}/{self.loop_n}, frame {self.frame}/{self.frame_count}"


@dataclass
class RunResult:
    run_dir: Path
    settings: Settings
    frame_count: int
    video: Path | None = None
    loop_videos: list[Path] = field(default_factory=list)
    report: dict[str, Any] | None = None
    frames_folder: str = ""  # the run-folder sub-folder holding the final frames
    seeds: list[int] = field(default_factory=list)  # seed of each generated frame, this session


class _Window:
    """Frames of one folder around the current index, read once each, kept only while needed.

    The frame the next index will add is decoded on a worker thread while the current frame is
    generated (PNG decoding releases the GIL), so reading the window costs the loop nothing.
    """

    def __init__(self, store: FrameStore, folder: str, reader: ThreadPoolExecutor) -> None:
        self.store = store
        self.folder = folder
        self.reader = reader
        self.cache: dict[int, np.ndarray | Future[np.ndarray]] = {}

    def _load(self, j: int) -> np.ndarray:
        value = self.cache.get(j)
        if value is None:
            value = self.cache[j] = self.store.read_frame(self.folder, j)
        elif isinstance(value, Future):
            value = self.cache[j] = value.result()
        return value

    def get(self, indices: list[int]) -> dict[int, np.ndarray]:
        frames = {j: self._load(j) for j in indices}
        lowest = min(indices)
        for j in [j for j in self.cache if j < lowest]:
            del self.cache[j]
        upcoming = max(indices) + 1
        if upcoming < self.store.frame_count and upcoming not in self.cache:
            self.cache[upcoming] = self.reader.submit(self.store.read_frame, self.folder, upcoming)
        return frames


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


class Engine:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        should_skip: Callable[[], bool] | None = None,
        store: FrameStore | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.on_progress = on_progress or (lambda progress: None)
        self.should_stop = should_stop or (lambda: False)
        self.should_skip = should_skip or (lambda: False)
        self.store = store
        self.run_info: dict[str, Any] = {}

    # -- resume ------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, backend: Backend, **kwargs: Any) -> "Engine":
        store = FrameStore.open(run_dir)
        data = store.read_settings()
        settings = Settings.from_dict(data)
        engine = cls(settings, backend, store=store, **kwargs)
        engine.run_info = data.get("run", {})
        return engine

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> RunResult:
        s = self.settings
        if self.store is None:
            self._start()
        assert self.store is not None
        info = self.run_info
        frame_count = int(info["frame_count"])
        planner = Planner(s, frame_count, [tuple(x) for x in info["txt_prompts"]] if info.get("txt_prompts") else None)
        self.backend.check(planner.uses_subseed(), s.use_mask)
        if not self.store.folder_complete(INPUT):
            self._prepare_frames(self._open_source(), planner_frames=frame_count)
        total = frame_count * s.loop_n
        result = RunResult(self.store.root, s, frame_count)
        done = sum(len(self.store.complete_frames(loop_dir_name(k))) for k in range(1, s.loop_n + 1))
        self.on_progress(Progress(1, s.loop_n, 0, frame_count, done, total))  # before the first generation
        # Each loop's flicker report is measured on a worker while the next loop generates.
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloop-read") as reader,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloop-report") as self._reporter,
        ):
            self._reports: list[Future[dict[str, Any] | None]] = []
            previous = self._loops(planner, reader, result, done, total)
            for report in self._reports:
                result.report = report.result() or result.report
        result.frames_folder = previous
        result.settings = self.settings  # as they stand now: the model name is known only after a generation
        result.video = self._write_video(previous, self.store.root.name)
        return result

    def _loops(self, planner: Planner, reader: ThreadPoolExecutor, result: RunResult, done: int, total: int) -> str:
        """Generates every missing frame, loop by loop; returns the folder of the final frames."""
        assert self.store is not None
        s, info, frame_count = self.settings, self.run_info, result.frame_count
        previous = INPUT
        started = time.monotonic()
        made = False  # whether this session generated any frame of the current loop
        for plan in planner.plans(int(info["seed"]), int(info["subseed"])):
            folder = loop_dir_name(plan.loop)
            if plan.frame == 0:
                made = False
                window = _Window(self.store, previous, reader)
                references = [_Window(self.store, name, reader) for name in info.get("references", [])] or [
                    _Window(self.store, INPUT, reader)
                ]
            if not self.store.is_complete(folder, plan.frame):
                latest = self._frame(plan, window, references, frame_count)
                made = True
                result.seeds.append(plan.seed)
                done += 1
                self.on_progress(Progress(plan.loop, s.loop_n, plan.frame + 1, frame_count, done, total, latest))
                if self.should_stop():
                    raise InterruptedRun(str(self.store.root))
            if plan.frame == frame_count - 1:
                previous = self._finish_loop(plan.loop, result, resumed=not made)
                elapsed = time.monotonic() - started
                log.info("loop %d/%d done (%.1f s so far)", plan.loop, s.loop_n, elapsed)
        return previous

    # -- one frame -------------------------------------------------------------------------
    def _frame(self, plan: FramePlan, window: _Window, references: list[_Window], frame_count: int) -> np.ndarray:
        s = self.settings
        i = plan.frame
        pairs = window_weights(plan.temporal_weights, i, frame_count)
        needed = sorted({j for j, _ in pairs} | {i})
        frames = window.get(needed)
        base = frames[i]
        mask = self.store.read_mask(i) if s.use_mask else None
        difference = s.temporal_superimpose_method == DIFFERENCE_METHOD
        # Reference frames (the difference mask; ControlNet and colour correction in the WebUI)
        # are read only when something uses them, through windows that drop what is behind.
        wants = getattr(self.backend, "wants_input_frames", False)
        refs = [ref.get(needed) for ref in (references if wants else references[:1])] if wants or difference else []
        if difference:
            init = difference_superimpose(frames, refs[0], i, pairs, s.difference_threshold)
        else:
            init = temporal_superimpose(frames, pairs)
        init = inside_mask(base, init, mask)
        control = [r[i] for r in refs] if wants else []
        input_image = None
        if wants:
            input_image = control[0] if references[0].folder == INPUT else self.store.read_frame(INPUT, i)
        h, w = base.shape[:2]
        request = GenerationRequest(
            init_image=init,
            base_image=base,
            mask=mask,
            prompt=plan.prompt,
            negative_prompt=plan.negative_prompt,
            seed=plan.seed,
            subseed=plan.subseed,
            subseed_strength=plan.subseed_strength,
            denoising_strength=plan.denoising_strength,
            steps=plan.steps,
            cfg_scale=plan.cfg_scale,
            width=w,
            height=h,
            batch_size=plan.batch_size,
            n_iter=plan.n_iter,
            control_images=control,
            frame_index=i,
            loop=plan.loop,
            input_image=input_image,
        )
        images = self.backend.generate(request)
        if self.should_skip():
            out = base  # skipped: the frame keeps its previous-loop image
        else:
            if len(images) != request.image_count:
                raise RuntimeError(f"backend returned {len(images)} images, expected {request.image_count}")
            images = [img if img.shape[:2] == (h, w) else resize_frame(img, w, h) for img in images]
            out = superimpose(base, batch_blend(images), plan.superimpose_alpha, mask)
            if plan.post_process is not None:
                pil = to_pil(out)
                processed = plan.post_process(pil)
                if processed is not pil:  # an identity lambda leaves the float frame untouched
                    out = inside_mask(base, from_pil(processed.convert("RGB")), mask)
        self.store.write_frame(loop_dir_name(plan.loop), i, out)
        self._record_model_name()
        return out

    def _record_model_name(self) -> None:
        # The WebUI (Forge) knows the real model only after the first generation.
        name = getattr(self.backend, "model_name", None) or self.backend.name
        if name and name != self.settings.model_name:
            self.settings = replace(self.settings, model_name=name)
            self._write_settings()

    # -- after a loop ----------------------------------------------------------------------
    def _finish_loop(self, loop: int, result: RunResult, *, resumed: bool = False) -> str:
        """Runs the loop's denoise pass, video and report; returns the folder the next loop reads.

        resumed: every frame of the loop was made before this session; its video and report are
        then kept when they exist (a resume near the end of a long run redoes neither).
        """
        assert self.store is not None
        s = self.settings
        folder = loop_dir_name(loop)
        if s.video_post_process_method != "None" and (s.video_post_process_when == "every loop" or loop == s.loop_n):
            from lib_videoloop.denoise.loop_pass import run_denoise_pass

            folder = run_denoise_pass(self.store, folder, s, seed=int(self.run_info["seed"]) + loop)
        if s.save_every_loop and loop < s.loop_n:
            video = self.store.video_path(loop_dir_name(loop), s.output_format)
            result.loop_videos.append(
                video if resumed and video.is_file() else self._write_video(folder, loop_dir_name(loop))
            )
        if not (resumed and self._reported(loop)):
            self._after_loop(loop, folder, result)
        return folder

    def _reported(self, loop: int) -> bool:
        from lib_videoloop.report import RunReport

        assert self.store is not None
        return any(entry["loop"] == loop for entry in RunReport(self.store.root).data["loops"])

    def _after_loop(self, loop: int, folder: str, result: RunResult) -> None:
        """Queues the loop's flicker measurement (report.json, flicker.png)."""
        assert self.store is not None
        if self.store.frame_count >= 2:
            self._reports.append(self._reporter.submit(self._report, loop, folder))

    def _report(self, loop: int, folder: str) -> dict[str, Any] | None:
        from lib_videoloop.report import RunReport

        assert self.store is not None
        try:
            return RunReport(self.store.root).add_loop(loop, self.store.frames(folder), self.store.frames(INPUT))
        except Exception:  # a report must never cost the user the run
            log.exception("the flicker report of loop %d could not be made", loop)
            return None

    def _write_video(self, folder: str, name: str) -> Path:
        s = self.settings
        info = self.run_info
        src = info.get("source", {})
        fps_text = src.get("fps")
        source_fps = Fraction(fps_text) if fps_text else None
        fps = output_fps(source_fps, s.extract_nth_frame, s.output_frame_rate)
        natural = output_fps(source_fps, s.extract_nth_frame, None)
        audio = None
        if s.keep_audio and src.get("has_audio") and src.get("kind") == "video" and s.output_format != "gif":
            if fps != natural:
                log.info(
                    "sound left out: output_frame_rate %s changes the clip's speed (natural rate %s)", fps, natural
                )
            else:
                frames = int(info["frame_count"])
                audio = AudioSpan(
                    Path(src["path"]),
                    float(src["time_origin"]) + float(src["start_time"]),
                    frames * s.extract_nth_frame / float(source_fps),
                )
        path = self.store.video_path(name, s.output_format)
        return write_video(
            self.store.frames(folder),
            path,
            fps,
            video_format=s.output_format,
            crf=s.crf,
            lossless=s.lossless,
            audio=audio,
        )

    # -- starting a new run ----------------------------------------------------------------
    def _open_source(self) -> FrameSource:
        s = self.settings
        return open_source(
            s.input_directory, start_frame=s.start_frame, extract_nth_frame=s.extract_nth_frame, max_frames=s.max_frames
        )

    def _start(self) -> None:
        """Checks everything, creates the run folder and prepares the frames. No generation."""
        s = self.settings
        s.validate()
        source = self._open_source()
        info = source.info
        n = info.frame_count
        width, height = target_size(s, info)
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
        planner = Planner(s, n, txt_prompts)
        planner.check_all()
        self.backend.check(planner.uses_subseed(), s.use_mask)
        mask_source = self._check_masks(source) if s.use_mask else None
        reference_sources = self._reference_sources(n)
        if s.temporal_superimpose_method == DIFFERENCE_METHOD and not reference_sources:
            log.info("difference mask: the input frames are the reference")
        if s.video_post_process_method == "FastDVDNet":
            from lib_videoloop.denoise.weights import find_weights

            find_weights(s.fastdvdnet_weights)
        seed = s.seed if s.seed >= 0 else random.randrange(2**32)
        subseed = s.subseed if s.subseed >= 0 else random.randrange(2**32)
        self.store = FrameStore.create(s.output_directory, Path(str(s.input_directory)).stem, n, s.input_directory)
        self.run_info = {
            "frame_count": n,
            "width": width,
            "height": height,
            "seed": seed,
            "subseed": subseed,
            "seed_as_typed": s.seed,
            "subseed_as_typed": s.subseed,
            "txt_prompts": txt_prompts,
            "references": [f"reference_{k + 1}" for k in range(len(reference_sources))],
            "source": {
                "path": str(info.path),
                "kind": info.kind,
                "fps": str(info.fps) if info.fps else None,
                "width": info.width,
                "height": info.height,
                "frame_count": info.source_frame_count,
                "has_audio": info.has_audio,
                "start_time": info.start_time,
                "time_origin": info.time_origin,
                "rotation": info.rotation,
                "variable_frame_rate": info.variable_frame_rate,
                "names": info.names,
            },
        }
        # Seeds recorded as used, so that `--config settings.json` repeats the run exactly.
        self.settings = replace(
            s, seed=seed, subseed=subseed, model_name=getattr(self.backend, "model_name", None) or self.backend.name
        )
        self._write_settings()
        log.info("run folder %s: %d frames at %dx%d, %d loops", self.store.root, n, width, height, s.loop_n)
        self._prepare_frames(source, planner_frames=n, mask_source=mask_source, reference_sources=reference_sources)

    def _write_settings(self) -> None:
        assert self.store is not None
        data = self.settings.to_dict()
        data["run"] = self.run_info
        self.store.write_settings(data)

    def _prepare_frames(
        self,
        source: FrameSource,
        planner_frames: int,
        mask_source: MaskSource | None = None,
        reference_sources: list[FrameSource] | None = None,
    ) -> None:
        """Writes the input frames (and masks, references) at the working size into the run folder."""
        assert self.store is not None
        s = self.settings
        w, h = int(self.run_info["width"]), int(self.run_info["height"])
        if s.use_mask and mask_source is None:
            mask_source = MaskSource(s.mask_directory, s.mask_threshold, source.info.kind)
        if reference_sources is None:
            reference_sources = self._reference_sources(planner_frames)
        missing = []
        names = source.info.names
        for frame in source:
            if self.store.is_complete(INPUT, frame.index):
                continue
            self.store.write_frame(INPUT, frame.index, resize_frame(frame.image, w, h, s.resize_mode))
            if mask_source is not None:
                number = int(names[frame.index]) if source.info.kind == "video" else None
                mask = mask_source.mask_for(frame, number)
                if mask is None:
                    missing.append(frame.name)
                else:
                    self.store.write_mask(frame.index, fit_mask(mask, w, h, s.resize_mode))
        if missing:
            raise missing_masks_error(missing, s.mask_directory)
        for k, ref in enumerate(reference_sources):
            folder = f"reference_{k + 1}"
            for frame in ref:
                if frame.index < planner_frames and not self.store.is_complete(folder, frame.index):
                    self.store.write_frame(folder, frame.index, resize_frame(frame.image, w, h, s.resize_mode))

    def _reference_sources(self, frame_count: int) -> list[FrameSource]:
        s = self.settings
        sources = []
        for part in str(s.reference_frames_directory or "").split("!!!"):
            if not part.strip():
                continue
            ref = open_source(
                part.strip(),
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

    def _check_masks(self, source: FrameSource) -> MaskSource:
        """Resolves where each frame's mask comes from, refusing to start if any is missing."""
        s = self.settings
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
