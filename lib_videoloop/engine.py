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
import os
import time
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
from lib_videoloop.errors import InterruptedRun
from lib_videoloop.keyframe_run import InBetweens, keyframe_plan
from lib_videoloop.keyframes import KeyframePlan
from lib_videoloop.loop_end import LoopEnd
from lib_videoloop.media.flows import FLOWS, FlowFolder
from lib_videoloop.media.images import from_pil, to_pil
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.store import INPUT, MASKS, FrameStore, loop_dir_name
from lib_videoloop.planning import FramePlan, Planner, uses_mask, uses_subseed
from lib_videoloop.resume import reopen
from lib_videoloop.run_setup import PreparedRun, copy_input, open_input, prepare_run, write_record
from lib_videoloop.run_state import RunState
from lib_videoloop.temporal import FrameWindow, LoopBlend

log = logging.getLogger(__name__)

# Flows are computed this many pairs ahead, on as many threads (OpenCV's DIS uses one core each).
FLOW_THREADS = min(4, os.cpu_count() or 1)


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
        should_skip: Callable[[], bool] | None = None,
        weight_places: WeightPlaces = NOWHERE_ELSE,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.on_progress = on_progress or (lambda _progress: None)
        self.should_stop = should_stop or (lambda: False)
        self.should_skip = should_skip or (lambda: False)
        self.weight_places = weight_places  # where the host keeps model weights (FastDVDNet)
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
            store, settings, state = prepared.store, prepared.settings, prepared.state
        self.run_dir = store.root
        try:
            if prepared is None:
                self.backend.check(uses_subseed(settings), uses_mask(settings))
            return _Session(self, store, settings, state).run(prepared)
        finally:
            store.unlock()


class _Session:
    """One session of a run: its folder, settings and record, all known, and the loops."""

    def __init__(self, engine: Engine, store: FrameStore, settings: Settings, state: RunState) -> None:
        self.backend = engine.backend
        self.on_progress, self.should_stop, self.should_skip = (
            engine.on_progress,
            engine.should_stop,
            engine.should_skip,
        )
        self.weight_places = engine.weight_places
        self.store, self.settings, self.state = store, settings, state
        self.calls = _Calls(self)

    def run(self, prepared: PreparedRun | None) -> RunResult:
        store, state, s = self.store, self.state, self.settings
        planner = Planner(s, state.frame_count, state.txt_prompts, frame_pixels=state.frame_pixels)
        total = state.frame_count * s.loop_n
        result = RunResult(store.root, s, state.frame_count, store)
        done = sum(len(store.complete_frames(loop_dir_name(k))) for k in range(1, s.loop_n + 1))
        with (
            store.background_writes(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloop-read") as reader,
            ThreadPoolExecutor(max_workers=FLOW_THREADS, thread_name_prefix="videoloop-flow") as flow_reader,
            contextlib.ExitStack() as copying,  # left before the writes: the copy ends before they do
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoloop-prepare") as preparer,  # left first
        ):
            if prepared is not None:
                along = (MASKS, *state.references)
                copying.enter_context(store.filled_by(INPUT, prepared.copy_while_generating, along=along))
            elif not store.folder_complete(INPUT):  # stopped while the input was being copied
                copy_input(store, s, state, open_input(s))
            flows = FlowFolder(
                store.root / FLOWS,
                lambda i: store.read_frame(state.references[0] if state.references else INPUT, i),
                state.frame_count,
                flow_reader,
                ahead=FLOW_THREADS,
            )  # the motion of the (first) reference frames, computed once for the whole run
            flows.read_ahead(0)  # while the keyframes are chosen and the first window is read
            keyplan = keyframe_plan(store, s, state)
            self.on_progress(Progress(1, s.loop_n, 0, state.frame_count, done, total))  # before the first generation
            with LoopEnd(store, s, state, self.weight_places, keyplan) as loop_end:
                tally = _Tally(result, done, total, loop_end)
                previous = self._loops(planner, reader, preparer, flows, loop_end, tally, keyplan)
                result.report = loop_end.last_report()
                result.loop_videos = loop_end.loop_videos
                result.frames_folder = previous
                result.video = loop_end.final_video(previous)
        return result

    def _loops(
        self,
        planner: Planner,
        reader: ThreadPoolExecutor,
        preparer: ThreadPoolExecutor,
        flows: FlowFolder,
        loop_end: LoopEnd,
        tally: _Tally,
        keyplan: KeyframePlan | None,
    ) -> str:
        """Generates every missing frame, loop by loop; returns the folder of the final frames."""
        store, state, s = self.store, self.state, self.settings
        previous = INPUT
        started = time.monotonic()
        keys = set(keyplan.keyframes) if keyplan is not None else set()
        next_window: FrameWindow | None = None  # the next loop's first frames, read ahead
        for loop, plans in itertools.groupby(planner.plans(state.seed, state.subseed), key=lambda p: p.loop):
            folder = loop_dir_name(loop)
            references = [FrameWindow(store, name, reader) for name in state.references or [INPUT]]
            masks = FrameWindow(store, MASKS, reader) if s.use_mask else None
            inbetweens: InBetweens | None = None
            made, todo = self._todo(list(plans), folder, len(references), keyplan)
            blend: LoopBlend | None = None
            if todo:
                strength = functools.partial(_filter_strength, planner, loop)
                window = next_window if next_window is not None and next_window.folder == previous else None
                window = window or FrameWindow(store, previous, reader)
                blend = LoopBlend(s, store, window, references[0], flows, strength)  # reads nothing yet
            prepare = functools.partial(self._prepare_call, blend, references, masks, folder)
            ahead: Future[list[_Pending]] | None = None  # the next call, prepared while this one generates
            for n, call in enumerate(todo):
                plan = call[0]
                if keyplan is not None and plan.frame not in keys:  # an in-between, alone
                    if inbetweens is None:
                        store.flush()  # the loop's keyframes on disk: they are read back from there
                        reference = functools.partial(store.read_frame, references[0].folder)
                        inbetweens = InBetweens(store, s, loop, previous, keyplan, flows.chain(), reference)
                    latest, repaired = self._inbetween(plan, inbetweens, references, masks)
                    if latest is not None:
                        self._done(plan, latest, repaired, tally)
                        continue  # else generated like a keyframe
                batch = ahead.result() if ahead is not None else prepare(call)
                ahead = None
                if keyplan is None and n + 1 < len(todo):
                    # The frames of a loop are made from the previous loop's alone, so the next
                    # call's init images (window, blend, mask) are made beside this generation.
                    # Keyframe mode goes one call at a time: an in-between reads this loop's frames.
                    ahead = preparer.submit(prepare, todo[n + 1])
                elif keyplan is None and loop < s.loop_n:
                    # While the loop's last call generates, the next loop's first window is read:
                    # those frames of this loop are written already (frames go in order here).
                    next_window = FrameWindow(store, folder, reader)
                    next_window.read_ahead(range(min(len(plan.temporal_weights) // 2 + 1, plan.frame)))
                self._finish(batch, tally)
            if blend is not None:
                blend.close()
            previous = loop_end.finish(loop, resumed=not made)
            log.info("loop %d/%d done (%.1f s so far)", loop, s.loop_n, time.monotonic() - started)
        return previous

    def _todo(
        self, plans: list[FramePlan], folder: str, references: int, keyplan: KeyframePlan | None
    ) -> tuple[bool, list[list[FramePlan]]]:
        """Whether the loop still makes frames, and its calls that miss a frame. Frames are
        grouped into calls the same way in every session (the same plans, the limit recorded):
        a resumed run makes a call again whole, keeping the frames it has."""
        store = self.store
        made = not all(store.is_complete(folder, plan.frame) for plan in plans)
        limit = self.calls.frames_per_call(plans[0], references) if made else 1
        keys = set(keyplan.keyframes) if keyplan is not None else None
        calls = _calls(_in_order(plans, keyplan) if made else [], limit, keys)
        return made, [call for call in calls if not all(store.is_complete(folder, p.frame) for p in call)]

    def _prepare_call(
        self,
        blend: LoopBlend | None,
        references: list[FrameWindow],
        masks: FrameWindow | None,
        folder: str,
        call: list[FramePlan],
    ) -> list[_Pending]:
        assert blend is not None and self.store is not None and self.state is not None
        keep = self.store.is_complete
        count = self.state.frame_count
        return [self._prepare(p, blend, references, masks, count, keep=keep(folder, p.frame)) for p in call]

    def _prepare(
        self,
        plan: FramePlan,
        blend: LoopBlend,
        references: list[FrameWindow],
        masks: FrameWindow | None,
        frame_count: int,
        keep: bool,
    ) -> _Pending:
        i = plan.frame
        base, init = blend.frame(plan, frame_count)
        mask = masks.get([i])[i] if masks is not None else None  # the next one is read ahead
        init = inside_mask(base, init, mask)
        return _Pending(plan, base, mask, self.calls.request(plan, init, mask, references), keep)

    def _finish(self, batch: list[_Pending], tally: _Tally) -> None:
        """Generates the batch's frames in one call, superimposes and writes each that is not
        kept from an earlier session (a call is made only when one of its frames is missing)."""
        for pending, generated in zip(batch, self.calls.generate([p.request for p in batch])):
            if not pending.keep:
                self._write(pending, generated, tally)

    def _write(self, pending: _Pending, generated: np.ndarray | None, tally: _Tally) -> None:
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
        self._done(plan, out, True, tally)

    def _done(self, plan: FramePlan, latest: np.ndarray, generated: bool, tally: _Tally) -> None:
        """Progress after a frame is written; stops the run here when asked to."""
        if generated:
            tally.result.seeds.append(plan.seed)
        tally.done += 1
        tally.loop_end.frame_written(plan.loop, plan.frame, latest)
        frames = self.state.frame_count
        self.on_progress(
            Progress(plan.loop, self.settings.loop_n, plan.frame + 1, frames, tally.done, tally.total, latest)
        )
        if self.should_stop():
            raise InterruptedRun(str(self.store.root))

    def _inbetween(
        self, plan: FramePlan, inbetweens: InBetweens, references: list[FrameWindow], masks: FrameWindow | None
    ) -> tuple[np.ndarray | None, bool]:
        """An in-between frame of keyframe mode (keyframe_run.InBetweens), None when it must be
        generated like a keyframe; and whether it was repaired (a generation)."""
        mask = masks.get([plan.frame])[plan.frame] if masks is not None else None
        repaired = []

        def repaint(init: np.ndarray, repair: np.ndarray) -> np.ndarray | None:
            repaired.append(plan.frame)
            sampling = dict(plan.sampling(), denoising_strength=self.settings.repair_denoising_strength)
            generated = self.calls.generate([self.calls.request(plan, init, repair, references, sampling)])[0]
            # Superimposed on what it started from, as every generation of the loop is: taken
            # whole, a repair brought a full-strength new texture among frames that hold only
            # superimpose_alpha of theirs (bikes 60-119: Farneback E_warp 3.65e-3 against 3.44e-3).
            return None if generated is None else superimpose(init, generated, plan.superimpose_alpha)

        out = inbetweens.make(plan.frame, mask, repaint)
        if out is not None:
            self.store.write_frame(loop_dir_name(plan.loop), plan.frame, out)
            self.calls.record_model_name()
        return out, bool(repaired)


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

    def generate(self, requests: list[GenerationRequest]) -> list[np.ndarray | None]:
        """Each request's batch blend of the backend's images, from one call; None for every
        frame of a call the user skipped."""
        per_frame = generate_frames(self.backend, requests)
        if self.should_skip():
            return [None] * len(requests)
        blended: list[np.ndarray | None] = []
        for request, images in zip(requests, per_frame):
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


@dataclass
class _Pending:
    """A frame ready for generation: its plan, the frame it is superimposed on, its mask and
    request; keep: made in an earlier session, in the call only so the call is the same."""

    plan: FramePlan
    base: np.ndarray
    mask: np.ndarray | None
    request: GenerationRequest
    keep: bool = False


def _calls(plans: list[FramePlan], limit: int, keyframes: set[int] | None) -> Iterator[list[FramePlan]]:
    """The plans in groups that go through one generation call each: up to `limit` neighbours
    whose call_key agrees. In keyframe mode (keyframes given) an in-between frame goes alone:
    the next one reads it."""
    call: list[FramePlan] = []
    for plan in plans:
        alone = keyframes is not None and plan.frame not in keyframes
        if call and (alone or len(call) >= limit or plan.call_key() != call[0].call_key()):
            yield call
            call = []
        call.append(plan)
        if alone:
            yield call
            call = []
    if call:
        yield call


def _in_order(plans: list[FramePlan], keyplan: KeyframePlan | None) -> list[FramePlan]:
    """A loop's frames in the order they are made: in keyframe mode, the keyframes first."""
    if keyplan is None:
        return plans
    keys = set(keyplan.keyframes)
    return [p for p in plans if p.frame in keys] + [p for p in plans if p.frame not in keys]


def _filter_strength(planner: Planner, loop: int, frame: int) -> float:
    return planner.filter_strength(frame, loop)
