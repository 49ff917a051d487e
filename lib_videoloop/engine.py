"""The loopback engine: every frame of loop k is made from loop k-1, then superimposed.

    for loop in 1..loop_n:
        for frame i:
            base = frame i of the previous loop (the input frames for loop 1)
            init = weighted blend of the previous loop's frames i-h..i+h (inside the mask)
            gen  = mean of the backend's batch_size x n_iter images
            out  = base + alpha * (gen - base), inside the mask only; then post-processing
        optional temporal denoise pass; optional video of the loop
    final video of the last loop, with the source's sound

The rooms around this loop: run_setup.py checks everything and prepares the run folder before
the first generation; loop_end.py does what follows each loop (denoise pass, video, report);
resume.py says how a stopped run continues to the same frames.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.backends import Backend, GenerationRequest, frames_per_call, generate_frames
from lib_videoloop.blend import batch_blend, inside_mask, superimpose
from lib_videoloop.config import Settings, deflicker_steps
from lib_videoloop.denoise.weights import NOWHERE_ELSE, WeightPlaces
from lib_videoloop.disk_room import RESUME_FIX, RoomNeeded, check_room
from lib_videoloop.errors import InterruptedRun
from lib_videoloop.frame_order import EveryFrame, frame_order
from lib_videoloop.keyframe_run import InBetweens
from lib_videoloop.loop_end import LoopEnd
from lib_videoloop.media.flows import FLOWS, FlowFolder
from lib_videoloop.media.images import from_pil, to_pil
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.store import INPUT, MASKS, FrameStore, loop_dir_name
from lib_videoloop.planning import FramePlan, Planner, uses_mask, uses_subseed
from lib_videoloop.resume import reopen
from lib_videoloop.run_setup import InputCopy, PreparedRun, copy_input, open_input, prepare_run, write_record
from lib_videoloop.run_state import RunFolder, RunState
from lib_videoloop.run_threads import FLOW_THREADS, RunThreads
from lib_videoloop.temporal import FrameWindow, LoopBlend

log = logging.getLogger(__name__)


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
    store: FrameStore  # the run folder, to read its frames back (unlocked once the run ends)
    video: Path | None = None
    loop_videos: list[Path] = field(default_factory=list)
    report: dict[str, Any] | None = None
    frames_folder: str = ""  # the run-folder sub-folder holding the final frames
    seeds: list[int] = field(default_factory=list)  # seed of each generated frame, this session


class Engine:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.on_progress = on_progress or (lambda _progress: None)
        self.should_stop = should_stop or (lambda: False)
        # A host's backend may say that the user skipped the frame being made, and where the
        # host keeps model weights (FastDVDNet); see backends.Backend.
        self.should_skip: Callable[[], bool] = getattr(backend, "take_skip", None) or (lambda: False)
        self.weight_places: WeightPlaces = getattr(backend, "weight_places", NOWHERE_ELSE)
        self._reopened: tuple[FrameStore, RunState] | None = None  # resume(): the run folder, held
        self.run_dir: Path | None = None  # the run folder, once prepared or reopened

    @classmethod
    def resume(cls, run_dir: str | Path, backend: Backend, **kwargs: Any) -> Engine:
        """An engine that continues the run in run_dir (see resume.py)."""
        store, settings, state = reopen(run_dir)
        engine = cls(settings, backend, **kwargs)
        engine._reopened = (store, state)
        engine.run_dir = store.root
        return engine

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> RunResult:
        prepared = None
        if self._reopened is not None:  # reopen() holds the folder already
            store, state = self._reopened
            settings = self.settings
        else:
            prepared = prepare_run(self.settings, self.backend, self.weight_places)  # checks the backend too
            store, settings, state = prepared.run.store, prepared.run.settings, prepared.run.state
        self.run_dir = store.root
        try:
            if prepared is None:
                self.backend.check(uses_subseed(settings), uses_mask(settings))
                if (needed := RoomNeeded.to_finish(store, settings, state)) is not None:
                    check_room(store.root, needed, "resume", RESUME_FIX)
            return _Session(self, store, settings, state).run(prepared)
        finally:
            store.unlock()


class _Session:
    """One session of a run: its folder, settings and record, all known, and the loops."""

    def __init__(self, engine: Engine, store: FrameStore, settings: Settings, state: RunState) -> None:
        self.backend = engine.backend
        self.on_progress, self.should_stop = engine.on_progress, engine.should_stop
        self.should_skip = engine.should_skip
        self.weight_places = engine.weight_places
        self.store, self.settings, self.state = store, settings, state
        self.folder = RunFolder(store, settings, state)
        self.calls = _Calls(self)

    def run(self, prepared: PreparedRun | None) -> RunResult:
        store, state, s = self.store, self.state, self.settings
        result = RunResult(store.root, s, state.frame_count, store)
        done = sum(len(store.complete_frames(loop_dir_name(k))) for k in range(1, s.loop_n + 1))
        total = state.frame_count * s.loop_n
        with store.background_writes(), RunThreads() as threads:
            if prepared is not None:
                along = (MASKS, *state.references)
                fill = functools.partial(copy_input, self.folder, prepared.inputs, threads.resize)
                threads.copying(store.filled_by(INPUT, fill, along=along))
            elif not store.folder_complete(INPUT):  # stopped while the input was being copied
                copy_input(self.folder, InputCopy.of(s, state.frame_count, open_input(s)), threads.resize)
            # The motion of the (first) reference frames: computed once for the whole run and
            # shared by the blends, the in-betweens, the denoise pass and the reports.
            guide = functools.partial(store.read_frame, state.references[0] if state.references else INPUT)
            flows = FlowFolder(store.root / FLOWS, guide, state.frame_count, threads.flow, ahead=FLOW_THREADS)
            flows.read_ahead(0)  # while the keyframes are chosen and the first window is read
            order = frame_order(store, s, state)
            self.on_progress(Progress(1, s.loop_n, 0, state.frame_count, done, total))  # before the first generation
            with LoopEnd(self.folder, self.weight_places, threads, flows, order) as loop_end:
                tally = _Tally(result, done, total, loop_end)
                previous = _Loops(self, _LoopTools(threads, flows, order), tally).run()
                result.report = loop_end.last_report()
                result.loop_videos = loop_end.loop_videos
                result.frames_folder = previous
                result.video = loop_end.final_video(previous)
        return result


@dataclass(frozen=True)
class _LoopTools:
    threads: RunThreads
    flows: FlowFolder  # the run's flows of its (first) reference frames
    order: EveryFrame


class _Loops:
    """The session's loops: every missing frame made, loop by loop, in the run's frame order.

    Calls are written in the order they start, and a loop ends (loop_end.finish) once its last
    frames are written. With a backend that takes calls at once, the next loop's first calls
    start while the last ones of a loop still generate, as soon as the frames their init images
    read are written; a loop whose denoise pass changes its frames, and keyframe mode, end
    before the next loop starts."""

    def __init__(self, session: _Session, tools: _LoopTools, tally: _Tally) -> None:
        self.session, self.calls = session, session.calls
        self.store, self.settings, self.state = session.store, session.settings, session.state
        self.threads, self.flows, self.order = tools.threads, tools.flows, tools.order
        self.tally = tally
        self.planner = Planner(self.settings, self.state.frame_count, self.state.txt_prompts,
                               frame_pixels=self.state.frame_pixels)  # fmt: skip
        self.next_window: FrameWindow | None = None  # the next loop's first frames, read ahead
        self.underway: deque[_Underway] = deque()  # calls started and not written, and loop ends; oldest first
        self.previous = INPUT  # the folder the next loop reads, as the last loop end gave it
        self.started = time.monotonic()
        self.stack = contextlib.ExitStack()  # holds the calls' starter, once opened
        self.starter: Callable[[list[GenerationRequest]], Callable[[], list[np.ndarray | None]]] | None = None
        self.at_once = 1

    def run(self) -> str:
        """Generates every missing frame, loop by loop; returns the folder of the final frames."""
        with self.stack:
            for loop, plans in itertools.groupby(
                self.planner.plans(self.state.seed, self.state.subseed), lambda p: p.loop
            ):
                self._loop(loop, list(plans))
            self._write_through(self.settings.loop_n + 1, 0)
        return self.previous

    def _start(self, loop: int, batch: list[_Pending]) -> None:
        """Starts a call (_Calls.starter, opened by the first: the run's frames per call are
        known by then)."""
        if self.starter is None:
            self.at_once = self.calls.at_once(self.state.frames_per_call) if self.order.in_frame_order else 1
            self.starter = self.stack.enter_context(self.calls.starter(self.at_once))
        made = self.starter([p.request for p in batch])
        self.underway.append(_Underway(loop, batch[0].plan.frame, functools.partial(self._finish, batch, made)))

    def _loop(self, loop: int, plans: list[FramePlan]) -> None:
        """Starts the loop's missing calls, made from the previous loop's frames, and queues its
        end after them."""
        if loop > 1 and self._overlaps(loop - 1):
            previous = loop_dir_name(loop - 1)  # what its end will give: nothing changes its frames
        else:
            self._write_through(loop, 0)  # every earlier loop ended
            previous = self.previous
        store, reader, folder = self.store, self.threads.read, loop_dir_name(loop)
        references = [FrameWindow(store, name, reader) for name in self.state.references or [INPUT]]
        masks = FrameWindow(store, MASKS, reader) if self.settings.use_mask else None
        made, todo = self._todo(plans, folder, len(references))
        blend: LoopBlend | None = None
        if todo:
            strength = functools.partial(_filter_strength, self.planner, loop)
            window = self.next_window if self.next_window is not None and self.next_window.folder == previous else None
            window = window or FrameWindow(store, previous, reader)
            blend = LoopBlend(self.settings, store, (window, references[0]), self.flows, strength)  # reads nothing yet
        inputs = _Inputs(references, masks)
        prepare = functools.partial(self._prepare_call, blend, inputs, folder)
        inbetweens: InBetweens | None = None
        ahead: Future[list[_Pending]] | None = None  # the next call, prepared while this one generates
        for n, call in enumerate(todo):
            assert blend is not None
            plan = call[0]
            if self.order.propagated(plan):  # an in-between, alone
                if inbetweens is None:
                    store.flush()  # the loop's keyframes on disk: they are read back from there
                    inbetweens = self.order.inbetweens(self.session.folder, loop, previous, self.flows)
                if self._inbetween(plan, inbetweens, inputs):
                    continue  # else generated like a keyframe
            if ahead is None:
                self._write_through(loop - 1, blend.last_read(call) + 1)
            batch = ahead.result() if ahead is not None else prepare(call)
            self._start(loop, batch)
            upcoming = todo[n + 1] if n + 1 < len(todo) else None
            ahead = self._ahead(loop, folder, plan, upcoming, blend=blend, prepare=prepare)
            while sum(entry.is_call for entry in self.underway) >= self.at_once:
                self._finish_oldest()
        if blend is not None:
            blend.close()
        self.underway.append(_Underway(loop, _LOOP_END, functools.partial(self._end, loop, resumed=not made)))
        self._end_loops()

    def _overlaps(self, loop: int) -> bool:
        """Whether the next loop may start before `loop` ends: its frames come in frame order and
        stay as they are written (no denoise pass after it)."""
        return self.order.in_frame_order and not self.settings.denoises(loop)

    def _end(self, loop: int, *, resumed: bool) -> None:
        self.previous = self.tally.loop_end.finish(loop, resumed=resumed)
        log.info("loop %d/%d done (%.1f s so far)", loop, self.settings.loop_n, time.monotonic() - self.started)

    def _finish_oldest(self) -> None:
        """Writes the oldest call's frames once they are made, and ends the loops it completes."""
        self.underway.popleft().done()
        self._end_loops()

    def _end_loops(self) -> None:
        while self.underway and not self.underway[0].is_call:
            self.underway.popleft().done()

    def _unwritten(self, loop: int) -> int:
        """The first frame of `loop` that may not be written yet: its oldest call's under way (0
        while a call of an earlier loop is), or the frame count."""
        call = next((entry for entry in self.underway if entry.is_call), None)
        if call is None or call.loop > loop:
            return self.state.frame_count
        return call.first if call.loop == loop else 0

    def _write_through(self, loop: int, frame: int) -> None:
        """Waits until every frame before (loop, frame) is written, and the loops they complete
        have ended."""
        while self.underway and (self.underway[0].loop, self.underway[0].first) < (loop, frame):
            self._finish_oldest()

    def _ahead(
        self, loop: int, folder: str, plan: FramePlan, upcoming: list[FramePlan] | None, *,
        blend: LoopBlend, prepare: Callable[[list[FramePlan]], list[_Pending]],
    ) -> Future[list[_Pending]] | None:  # fmt: skip
        """When frames come in order, what can be made beside the calls generating: the next
        call's init images, when the previous loop's frames they read are written, or after
        the loop's last call the first frames of the next loop's window that are written
        already. Keyframe mode goes one call at a time: an in-between reads this loop's frames."""
        if not self.order.in_frame_order:
            return None
        if upcoming is not None:
            if blend.last_read(upcoming) < self._unwritten(loop - 1):
                return self.threads.prepare.submit(prepare, upcoming)
            return None
        if loop < self.settings.loop_n:
            self.next_window = FrameWindow(self.store, folder, self.threads.read)
            self.next_window.read_ahead(range(min(len(plan.temporal_weights) // 2 + 1, self._unwritten(loop))))
        return None

    def _todo(self, plans: list[FramePlan], folder: str, references: int) -> tuple[bool, list[list[FramePlan]]]:
        """Whether the loop still makes frames, and its calls that miss a frame. Frames are
        grouped into calls the same way in every session (the same plans, the limit recorded):
        a resumed run makes a call again whole, keeping the frames it has."""
        store = self.store
        made = not all(store.is_complete(folder, plan.frame) for plan in plans)
        limit = self.calls.frames_per_call(plans[0], references) if made else 1
        calls = self.order.calls(plans if made else [], limit)
        return made, [call for call in calls if not all(store.is_complete(folder, p.frame) for p in call)]

    def _prepare_call(
        self, blend: LoopBlend | None, inputs: _Inputs, folder: str, call: list[FramePlan]
    ) -> list[_Pending]:
        assert blend is not None
        count = self.state.frame_count
        return [self._prepare(p, blend, inputs, count, keep=self.store.is_complete(folder, p.frame)) for p in call]

    def _prepare(self, plan: FramePlan, blend: LoopBlend, inputs: _Inputs, frame_count: int, keep: bool) -> _Pending:
        i = plan.frame
        base, init = blend.frame(plan, frame_count)
        mask = inputs.mask(i)  # the next one is read ahead
        init = inside_mask(base, init, mask)
        return _Pending(plan, base, mask, self.calls.request(plan, init, mask, inputs.references), keep)

    def _finish(self, batch: list[_Pending], made: Callable[[], list[np.ndarray | None]]) -> None:
        """Superimposes and writes each of the call's frames that is not kept from an earlier
        session (a call is made only when one of its frames is missing), once they are made."""
        for pending, generated in zip(batch, made(), strict=True):
            if not pending.keep:
                self._write(pending, generated)

    def _write(self, pending: _Pending, generated: np.ndarray | None) -> None:
        plan, base, mask = pending.plan, pending.base, pending.mask
        if generated is None:
            out = base  # skipped: the frame keeps its previous-loop image
        else:
            out = superimpose(base, generated, plan.superimpose_alpha, mask)
            if plan.post_process is not None:
                pil = to_pil(out)
                processed = plan.post_process(pil)
                if processed is not pil:  # an identity lambda leaves the float frame untouched
                    out = inside_mask(base, from_pil(processed.convert("RGB")), mask)
        self.store.write_frame(loop_dir_name(plan.loop), plan.frame, out)
        self.calls.record_model_name()
        self._done(plan, out, True)

    def _done(self, plan: FramePlan, latest: np.ndarray, generated: bool) -> None:
        """Progress after a frame is written; stops the run here when asked to."""
        tally, session = self.tally, self.session
        if generated:
            tally.result.seeds.append(plan.seed)
        tally.done += 1
        tally.loop_end.frame_written(plan.loop, plan.frame, latest)
        frames = self.state.frame_count
        session.on_progress(
            Progress(plan.loop, self.settings.loop_n, plan.frame + 1, frames, tally.done, tally.total, latest)
        )
        if session.should_stop():
            raise InterruptedRun(str(self.store.root))

    def _inbetween(self, plan: FramePlan, inbetweens: InBetweens, inputs: _Inputs) -> bool:
        """Makes an in-between frame of keyframe mode (keyframe_run.InBetweens); False when it
        must be generated like a keyframe."""
        repaired = []

        def repaint(init: np.ndarray, repair: np.ndarray) -> np.ndarray | None:
            repaired.append(plan.frame)
            sampling = dict(plan.sampling(), denoising_strength=self.settings.repair_denoising_strength)
            generated = self.calls.generate([self.calls.request(plan, init, repair, inputs.references, sampling)])[0]
            # Superimposed on what it started from, as every generation of the loop is: taken
            # whole, a repair brought a full-strength new texture among frames that hold only
            # superimpose_alpha of theirs (bikes 60-119: Farneback E_warp 3.65e-3 against 3.44e-3).
            return None if generated is None else superimpose(init, generated, plan.superimpose_alpha)

        out = inbetweens.make(plan.frame, inputs.mask(plan.frame), repaint)
        if out is None:
            return False
        self.store.write_frame(loop_dir_name(plan.loop), plan.frame, out)
        self.calls.record_model_name()
        self._done(plan, out, bool(repaired))
        return True


@dataclass(frozen=True)
class _Inputs:
    """A loop's reference frames and masks, read through windows that drop what is behind."""

    references: list[FrameWindow]
    masks: FrameWindow | None

    def mask(self, i: int) -> np.ndarray | None:
        return self.masks.get([i])[i] if self.masks is not None else None


class _Calls:
    """The backend's side of a session: how many frames go in one call, each frame's request,
    the call itself with its batch blend, and which models made the frames."""

    def __init__(self, session: _Session) -> None:
        self.backend, self.should_skip = session.backend, session.should_skip
        self.store, self.settings, self.state = session.store, session.settings, session.state
        self.deflicker_steps = deflicker_steps(self.settings.latent_deflicker_steps)

    def frames_per_call(self, plan: FramePlan, references: int) -> int:
        """The run's frames per generation call: chosen once (the setting, or the backend's pick
        for a frame like the run's), then kept in the run record."""
        state = self.state
        if not state.frames_per_call:
            h, w = state.height, state.width
            wants = getattr(self.backend, "wants_input_frames", False)
            like = GenerationRequest(
                init_image=np.zeros((h, w, 3), np.float32),
                mask=np.zeros((h, w), np.float32) if self.settings.use_mask else None,
                width=w,
                height=h,
                control_images=[np.zeros((h, w, 3), np.float32)] * references if wants else [],
                **plan.sampling(),
            )
            state.frames_per_call = frames_per_call(self.backend, like, self.settings.frames_per_call)
            write_record(self.store, self.settings, state)
            if state.frames_per_call < 2 and self.deflicker_steps:
                log.warning(
                    "latent_deflicker_steps has no effect in this run: %s generates its frames one by one"
                    " (in the WebUI a frame with its own mask or ControlNet image goes alone)",
                    self.backend.name,
                )
        return state.frames_per_call

    def request(
        self,
        plan: FramePlan,
        init: np.ndarray,
        mask: np.ndarray | None,
        references: list[FrameWindow],
        sampling: dict[str, Any] | None = None,
    ) -> GenerationRequest:
        i = plan.frame
        # Reference frames for ControlNet and colour correction in the WebUI are read only when
        # the backend uses them, through windows that drop what is behind.
        wants = getattr(self.backend, "wants_input_frames", False)
        keep_from = i - len(plan.temporal_weights) // 2  # the first reference is also the difference mask's
        control = [ref.get([i], keep_from)[i] for ref in references] if wants else []
        input_image = None
        if wants:
            input_image = control[0] if references[0].folder == INPUT else self.store.read_frame(INPUT, i)
        h, w = init.shape[:2]
        return GenerationRequest(
            init_image=init,
            mask=mask,
            width=w,
            height=h,
            control_images=control,
            input_image=input_image,
            deflicker_steps=self.deflicker_steps,
            **(sampling or plan.sampling()),
        )

    def at_once(self, frames_per_call: int) -> int:
        """Calls under way at once: 1, unless the backend makes its frames elsewhere and says
        more (WorkersBackend)."""
        many = getattr(self.backend, "calls_at_once", None)
        return many(frames_per_call) if many is not None else 1

    @contextlib.contextmanager
    def starter(
        self, at_once: int
    ) -> Iterator[Callable[[list[GenerationRequest]], Callable[[], list[np.ndarray | None]]]]:
        """start(requests) -> a function giving the call's frames (generate()'s). One at a time,
        the call is made when they are asked for, on this thread (a host's generation may need
        its own thread). Several at once, it starts on a thread of its own; when the block ends
        with an error, the calls still running are abandoned and waited for."""
        if at_once == 1:
            yield lambda requests: functools.partial(self.generate, requests)
            return
        pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="videoloop-call")
        try:
            yield lambda requests: pool.submit(self.generate, requests).result
        except BaseException:
            self.backend.abandon_calls()  # type: ignore[attr-defined]
            pool.shutdown(wait=True)
            self.backend.abandon_calls(False)  # type: ignore[attr-defined]
            raise
        pool.shutdown(wait=True)

    def generate(self, requests: list[GenerationRequest]) -> list[np.ndarray | None]:
        """Each request's batch blend of the backend's images, from one call; None for every
        frame of a call the user skipped."""
        per_frame = generate_frames(self.backend, requests)
        if self.should_skip():
            return [None] * len(requests)
        blended: list[np.ndarray | None] = []
        for request, images in zip(requests, per_frame, strict=True):
            if len(images) != request.image_count:
                raise RuntimeError(f"backend returned {len(images)} images, expected {request.image_count}")
            h, w = request.height, request.width
            blended.append(batch_blend([img if img.shape[:2] == (h, w) else resize_frame(img, w, h) for img in images]))
        return blended

    def record_model_name(self) -> None:
        # The WebUI (Forge) knows the real model only after the first generation. Every model
        # that made frames is kept in order: a resume with another model does not erase the first.
        name = getattr(self.backend, "model_name", None) or self.backend.name
        models = self.state.models
        if name and (not models or models[-1] != name):
            if models:
                log.warning("this run's frames so far were made with %s; it goes on with %s", models[-1], name)
            models.append(name)
            write_record(self.store, self.settings, self.state)


@dataclass
class _Tally:
    result: RunResult
    done: int  # frames finished, all loops together
    total: int
    loop_end: LoopEnd  # measures each frame for the report as it is written


_LOOP_END = sys.maxsize  # a loop's end comes after every frame of the loop


@dataclass(frozen=True)
class _Underway:
    """A call started and not yet written, or a loop's end; done() writes the call's frames once
    they are made, or ends the loop."""

    loop: int
    first: int  # a call's first frame, or _LOOP_END
    done: Callable[[], None]

    @property
    def is_call(self) -> bool:
        return self.first != _LOOP_END


@dataclass
class _Pending:
    """A frame ready for generation: its plan, the frame it is superimposed on, its mask and
    request; keep: made in an earlier session, in the call only so the call is the same."""

    plan: FramePlan
    base: np.ndarray
    mask: np.ndarray | None
    request: GenerationRequest
    keep: bool = False


def _filter_strength(planner: Planner, loop: int, frame: int) -> float:
    return planner.filter_strength(frame, loop)
