"""After a loop: the temporal denoise pass, the loop's video (with the source's sound), and its
flicker report, measured on a worker while the next loop generates."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.config import Settings
from lib_videoloop.denoise.weights import WeightPlaces
from lib_videoloop.keyframe_run import loop_stats
from lib_videoloop.keyframes import KeyframePlan
from lib_videoloop.media.flows import FLOWS, FlowFolder
from lib_videoloop.media.store import INPUT, FrameStore, loop_dir_name
from lib_videoloop.media.writer import AudioSpan, output_fps, write_video
from lib_videoloop.resume import kept_loop_video, loop_reported
from lib_videoloop.run_state import RunState

log = logging.getLogger(__name__)


class LoopEnd:
    """Use as a context manager: the report worker lives as long as the run's loops."""

    def __init__(
        self,
        store: FrameStore,
        settings: Settings,
        state: RunState,
        places: WeightPlaces,
        keyplan: KeyframePlan | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.state = state
        self.places = places
        self.loop_videos: list[Path] = []
        self._reports: list[Future[dict[str, Any] | None]] = []
        self.keyplan = keyplan  # keyframe mode's keyframes, for the report

    def __enter__(self) -> LoopEnd:
        self._reporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloop-report")
        return self

    def __exit__(self, *exc: object) -> None:
        self._reporter.shutdown(wait=True)

    def finish(self, loop: int, *, resumed: bool) -> str:
        """Runs the loop's denoise pass, video and report; returns the folder the next loop reads.

        resumed: every frame of the loop was made before this session; its video and report are
        then kept when they exist (a resume near the end of a long run redoes neither)."""
        s = self.settings
        folder = loop_dir_name(loop)
        self.store.flush()  # the loop's frames on disk before anything reads them as a clip
        if s.video_post_process_method != "None" and (s.video_post_process_when == "every loop" or loop == s.loop_n):
            from lib_videoloop.denoise.loop_pass import run_denoise_pass

            folder = run_denoise_pass(self.store, folder, s, seed=self.state.seed + loop, places=self.places)
            self.store.flush()
        if s.save_every_loop and loop < s.loop_n:
            kept = kept_loop_video(self.store, loop, s.output_format) if resumed else None
            self.loop_videos.append(kept or self.write_video(folder, loop_dir_name(loop)))
        if self.store.frame_count >= 2 and not (resumed and loop_reported(self.store, loop)):
            self._reports.append(self._reporter.submit(self._report, loop, folder))
        return folder

    def last_report(self) -> dict[str, Any] | None:
        """Waits for the queued reports; the newest one holds every loop."""
        report = None
        for future in self._reports:
            report = future.result() or report
        return report

    def _report(self, loop: int, folder: str) -> dict[str, Any] | None:
        from lib_videoloop.report import RunReport

        try:
            frames, inputs = self.store.frames(folder), self.store.frames(INPUT)
            extra = loop_stats(self.store.root, loop, self.keyplan) if self.keyplan is not None else None
            return RunReport(self.store.root).add_loop(loop, frames, inputs, self._input_flows(), extra)
        except Exception:  # a report must never cost the user the run
            log.exception("the flicker report of loop %d could not be made", loop)
            return None

    def _input_flows(self) -> Callable[[int], tuple[np.ndarray, np.ndarray]] | None:
        """The input's flows from the run's flows/ folder, when they are the input's (no other
        reference frames): computed once for the whole run, by whichever needs a pair first,
        and shared by the blends and every loop's report."""
        if self.state.references:
            return None
        store = self.store
        return FlowFolder(
            store.root / FLOWS, functools.partial(store.read_frame, INPUT), store.frame_count
        ).forward_backward

    def write_video(self, folder: str, name: str) -> Path:
        s, src = self.settings, self.state.source
        fps = output_fps(src.rate, s.extract_nth_frame, s.output_frame_rate)
        natural = output_fps(src.rate, s.extract_nth_frame, None)
        audio = None
        if s.keep_audio and src.has_audio and src.kind == "video" and s.output_format != "gif":
            if fps != natural:
                log.info(
                    "sound left out: output_frame_rate %s changes the clip's speed (natural rate %s)", fps, natural
                )
            else:
                audio = AudioSpan(
                    Path(src.path),
                    src.time_origin + src.start_time,
                    self.state.frame_count * s.extract_nth_frame / float(src.rate),  # type: ignore[arg-type]
                )
        return write_video(
            self.store.frames(folder),
            self.store.video_path(name, s.output_format),
            fps,
            video_format=s.output_format,
            crf=s.crf,
            lossless=s.lossless,
            audio=audio,
        )
