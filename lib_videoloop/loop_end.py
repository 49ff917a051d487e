"""After a loop: the temporal denoise pass, the loop's video (with the source's sound), and its
flicker report. The report is measured on a worker while the loop is made, frame by frame from
memory, so that only the last pair is left when the loop ends; where that cannot be (frames
out of order or from an earlier session, a denoise pass that changes them) it is measured
after the loop, while the next one generates."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.denoise.weights import WeightPlaces
from lib_videoloop.frame_order import EveryFrame
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.store import INPUT, as_stored, loop_dir_name
from lib_videoloop.metrics import FlickerMeter, FlickerResult
from lib_videoloop.motion import PairFlow
from lib_videoloop.output_video import video_of
from lib_videoloop.report import RunReport, report_meter
from lib_videoloop.resume import kept_loop_video, loop_reported
from lib_videoloop.run_state import RunFolder
from lib_videoloop.run_threads import RunThreads

log = logging.getLogger(__name__)


class LoopEnd:
    """Use as a context manager: leaving it early (a stop, an error) drops the loop's video
    being encoded as it is made. Its work runs on the run's threads (run_threads.py):
    reports on `report`, loop videos on `video`, the last loop's on `final`. A loop's video is
    encoded as the loop is made, from the frames as they are written, when they come in order
    and no denoise pass changes them after the loop; else from its files after the loop: on a
    clip longer than the frames the store keeps in memory, that read every frame's PNG back."""

    def __init__(
        self, run: RunFolder, places: WeightPlaces, threads: RunThreads, flows: FlowFolder, order: EveryFrame
    ) -> None:
        self.run = run
        self.store, self.settings, self.state = run.store, run.settings, run.state
        self.places = places
        self.flows = flows  # the run's flows of its (first) reference frames
        self.order = order
        self._reporter, self._encoder, self._final = threads.report, threads.video, threads.final
        self._fidelity = threads.fidelity  # each frame's PSNR and SSIM, beside the report's warp error
        self._loop_videos: list[Future[Path]] = []
        self._reports: list[Future[dict[str, Any] | None]] = []
        self._source_errors: dict[int, float] = {}  # the input's own warp error per pair: the same every loop
        self._stream: _LoopMeter | None = None  # the loop being measured as it is made
        self._video: _StreamedVideo | None = None  # the loop's video, encoded as it is made

    def frame_written(self, loop: int, index: int, frame: np.ndarray) -> None:
        """The loop's frame `index` as written: measured now, and encoded into the loop's video
        now, when the frames come in order."""
        self._feed_video(loop, index, frame)
        stream = self._stream
        if index == 0 and self.store.frame_count >= 2 and not self._denoised(loop) and self.order.in_frame_order:
            meter = report_meter(self._input_flows(), self._source_errors, self._fidelity)
            stream = self._stream = _LoopMeter(loop, meter, self._reader(loop))
        if stream is None or stream.loop != loop:
            return
        if index != stream.next or stream.broken:
            stream.broken = True  # measured after the loop instead
            return
        stream.next += 1
        self._reporter.submit(self._measure_frame, stream, index, stream.frames.hold(frame))

    def _measure_frame(self, stream: _LoopMeter, index: int, held: np.ndarray | None) -> None:
        started = time.monotonic()
        try:
            if not stream.broken:  # its values as its file holds them, as a report from the files reads them
                stream.meter.add(stream.frames.take(index, held), self.store.read_frame(INPUT, index))
        except Exception:  # measured after the loop instead
            log.exception("frame %d of loop %d could not be measured", index + 1, stream.loop)
            stream.broken = True
        finally:
            stream.seconds += time.monotonic() - started

    def _feed_video(self, loop: int, index: int, frame: np.ndarray) -> None:
        last = loop == self.settings.loop_n
        if not (last or self.settings.save_every_loop) or self._denoised(loop) or not self.order.in_frame_order:
            return
        if index == 0 and (self._video is None or self._video.loop != loop):
            video = self._video = _StreamedVideo(loop, self.store.frame_count, self._reader(loop))
            pool, name = (self._final, self.store.root.name) if last else (self._encoder, loop_dir_name(loop))
            video.future = pool.submit(self.write_video, "", name, video.frames())
        if self._video is not None and self._video.loop == loop:
            self._video.add(index, frame)

    def _streamed(self, loop: int) -> Future[Path] | None:
        """The loop's video encoded as it was made, when every frame went to it in order; else
        None, once the partial file is gone."""
        video = self._video
        if video is None or video.loop != loop:
            return None
        self._video = None
        if video.whole() and video.future is not None:
            return video.future
        video.abort()
        if video.future is not None:
            video.future.exception()  # waits until the partial file is gone
        return None

    def final_video(self, folder: str) -> Path:
        """The run's video of `folder`: the one encoded while the last loop was made, when every
        frame went to it in order; else encoded now."""
        streamed = self._streamed(self.settings.loop_n)
        return streamed.result() if streamed is not None else self.write_video(folder, self.store.root.name)

    def _denoised(self, loop: int) -> bool:
        return self.settings.denoises(loop)

    def __enter__(self) -> LoopEnd:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._video is not None:  # a stopped run: its video is made when it is finished
            self._video.abort()
        if self._stream is not None:  # and its report: frames still waiting for it do not hold up the stop
            self._stream.broken = True

    def finish(self, loop: int, *, resumed: bool) -> str:
        """Runs the loop's denoise pass, video and report; returns the folder the next loop reads.

        resumed: every frame of the loop was made before this session; its video and report are
        then kept when they exist (a resume near the end of a long run redoes neither)."""
        s = self.settings
        folder = loop_dir_name(loop)
        # No wait here for the loop's last files: the video, the report and the next loop read
        # the frames still queued from memory, with the values their files will hold.
        if self._denoised(loop):
            from lib_videoloop.denoise.loop_pass import run_denoise_pass

            self.store.flush()  # the pass reads the loop's files
            folder = run_denoise_pass(
                self.run, folder, seed=self.state.seed + loop, places=self.places, flows=self.flows
            )
            self.store.flush()
        if s.save_every_loop and loop < s.loop_n:
            kept = kept_loop_video(self.store, loop, s.output_format) if resumed else None
            if kept is not None:
                self._loop_videos.append(_ready(kept))
            elif (streamed := self._streamed(loop)) is not None:
                self._loop_videos.append(streamed)
            else:  # encoded while the next loop generates; its frames are on disk and stay as they are
                self._loop_videos.append(self._encoder.submit(self.write_video, folder, loop_dir_name(loop)))
        stream, self._stream = self._stream, None
        if self.store.frame_count >= 2 and not (resumed and loop_reported(self.store, loop)):
            if stream is not None and stream.loop == loop and stream.next == self.store.frame_count:
                self._reports.append(self._reporter.submit(self._report_streamed, stream, folder))
            else:
                self._reports.append(self._reporter.submit(self._report, loop, folder))
        return folder

    @property
    def loop_videos(self) -> list[Path]:
        """The videos of the loops before the last, once they are written."""
        return [future.result() for future in self._loop_videos]

    def last_report(self) -> dict[str, Any] | None:
        """Waits for the queued reports; the newest one holds every loop."""
        report = None
        for future in self._reports:
            report = future.result() or report
        return report

    def _report(self, loop: int, folder: str) -> dict[str, Any] | None:
        try:
            started = time.monotonic()
            meter = report_meter(self._input_flows(), self._source_errors, self._fidelity)
            for index in range(self.store.frame_count):
                meter.add(self.store.read_frame(folder, index), self.store.read_frame(INPUT, index))
            result = meter.result()
            return self._add(loop, result, time.monotonic() - started)
        except Exception:  # a report must never cost the user the run
            log.exception("the flicker report of loop %d could not be made", loop)
            return None

    def _report_streamed(self, stream: _LoopMeter, folder: str) -> dict[str, Any] | None:
        result = None
        if not stream.broken:
            try:
                result = stream.meter.result()  # the last frames' fidelity may still be measured
            except Exception:
                log.exception("loop %d could not be measured as it was made", stream.loop)
        if result is None:  # a frame failed after the loop ended: measured from the files
            return self._report(stream.loop, folder)
        return self._add(stream.loop, result, stream.seconds)

    def _add(self, loop: int, result: FlickerResult, seconds: float) -> dict[str, Any]:
        extra = self.order.report_extra(self.store.root, loop)
        return RunReport(self.store.root).add_loop(loop, result, seconds, extra)

    def _reader(self, loop: int) -> Callable[[int], np.ndarray]:
        """Reads a frame of the loop back, as its file holds it."""
        folder = loop_dir_name(loop)
        return lambda index: self.store.read_frame(folder, index)

    def _input_flows(self) -> Callable[[int], PairFlow] | None:
        """The input's flows, when the run's flows are the input's (no other reference frames):
        computed once for the whole run, by whichever needs a pair first."""
        return None if self.state.references else self.flows.pair

    def write_video(self, folder: str, name: str, frames: Iterable[np.ndarray] | None = None) -> Path:
        """The video of `folder`'s frames (or of `frames`), with the source's sound."""
        s = self.settings
        frames = self.store.frames(folder) if frames is None else frames
        path = self.store.video_path(name, s.output_format)
        return video_of(frames, path, s, self.state.source.clock, self.state.frame_count)


def _ready(path: Path) -> Future[Path]:
    future: Future[Path] = Future()
    future.set_result(path)
    return future


class _HeldFrames:
    """A loop's frames on their way to a worker, in order: up to `size` of them held in memory,
    the others read back from the store when their turn comes (from its queued writes while they
    last). A full queue never holds up a generation, nor sends the whole loop to be measured or
    encoded again from its files after it: with 8 workers, whose frames come 8 at a time, the
    report's queue of 8 overflowed at the 9th frame of every loop, and reading the loop back cost
    2 PNG decodes a frame more."""

    def __init__(self, size: int, read: Callable[[int], np.ndarray]) -> None:
        self.slots = threading.BoundedSemaphore(size)
        self.read = read  # a frame of the loop, as its file holds it

    def hold(self, frame: np.ndarray) -> np.ndarray | None:
        """What to hand the worker: the frame while a slot is free, else None (read back later)."""
        return frame if self.slots.acquire(blocking=False) else None

    def take(self, index: int, held: np.ndarray | None) -> np.ndarray:
        """Frame `index` with the values its file holds; its slot is free again."""
        if held is None:
            return self.read(index)
        self.slots.release()
        return as_stored(held)


class _LoopMeter:
    """One loop's report, measured on the report worker as the loop's frames are written."""

    QUEUE = 8  # frames held in memory for the worker (_HeldFrames)

    def __init__(self, loop: int, meter: FlickerMeter, read: Callable[[int], np.ndarray]) -> None:
        self.loop = loop
        self.meter = meter
        self.frames = _HeldFrames(self.QUEUE, read)
        self.next = 0  # the frame expected next
        self.broken = False  # out of order, or a failure: measured after the loop
        self.seconds = 0.0


class _StreamAborted(Exception):
    """The loop's frames stopped coming in order: its video is encoded from the files."""


class _StreamedVideo:
    """A loop's video, encoded on its own thread while the loop is made."""

    QUEUE = 8  # frames held in memory for the encoder (_HeldFrames)

    def __init__(self, loop: int, count: int, read: Callable[[int], np.ndarray]) -> None:
        self.loop = loop
        self.count = count
        self.held = _HeldFrames(self.QUEUE, read)
        self.next = 0  # the frame expected next
        self.broken = False
        self.queue: queue.Queue[tuple[int, np.ndarray | None]] = queue.Queue()
        self.future: Future[Path] | None = None

    def add(self, index: int, frame: np.ndarray) -> None:
        if self.broken:
            return
        if index != self.next:
            self.abort()
            return
        self.queue.put((index, self.held.hold(frame)))
        self.next += 1

    def whole(self) -> bool:
        return not self.broken and self.next == self.count

    def abort(self) -> None:
        self.broken = True

    def frames(self) -> Iterator[np.ndarray]:
        for _ in range(self.count):
            while True:
                if self.broken:
                    raise _StreamAborted
                try:
                    index, frame = self.queue.get(timeout=0.1)
                    break
                except queue.Empty:
                    continue
            yield self.held.take(index, frame)
