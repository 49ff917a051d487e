"""How a loop's frames are made: every frame generated in order, or keyframes first.

The engine asks its frame order rather than checking for keyframe mode: which frames go in
one call, which are propagated instead of generated, and whether the frames come in frame
order (then the next call is prepared while this one generates, and the loop is measured and
encoded as it is made).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lib_videoloop.config import Settings
from lib_videoloop.keyframe_run import InBetweens, keyframe_plan, loop_stats
from lib_videoloop.keyframes import KeyframePlan
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.store import FrameStore
from lib_videoloop.planning import FramePlan
from lib_videoloop.run_state import RunFolder, RunState


class EveryFrame:
    """Every frame is generated, in frame order; neighbours share a call."""

    in_frame_order = True

    def calls(self, plans: list[FramePlan], limit: int) -> Iterator[list[FramePlan]]:
        """The loop's plans in groups that go through one generation call each: up to `limit`
        neighbours whose call_key agrees; a propagated frame goes alone (the next one reads it)."""
        call: list[FramePlan] = []
        for plan in self._ordered(plans):
            alone = self.propagated(plan)
            if call and (alone or len(call) >= limit or plan.call_key() != call[0].call_key()):
                yield call
                call = []
            call.append(plan)
            if alone:
                yield call
                call = []
        if call:
            yield call

    def _ordered(self, plans: list[FramePlan]) -> list[FramePlan]:
        return plans

    def propagated(self, plan: FramePlan) -> bool:  # noqa: ARG002 -- every frame is generated here
        """Whether the frame is made from its keyframes instead of generated."""
        return False

    def inbetweens(self, *_: object) -> InBetweens:
        """The loop's propagated frames, made after its generated ones are written (Keyframes)."""
        raise TypeError(f"{type(self).__name__} propagates no frame")

    def report_extra(self, root: Path, loop: int) -> dict[str, Any] | None:  # noqa: ARG002 -- nothing to add
        """What the loop's report adds for this order."""
        return None


class Keyframes(EveryFrame):
    """The keyframes are generated first; the frames between them are propagated from them
    (keyframe_run.InBetweens) one at a time, in frame order."""

    in_frame_order = False

    def __init__(self, plan: KeyframePlan) -> None:
        self.plan = plan
        self.keys = set(plan.keyframes)

    def _ordered(self, plans: list[FramePlan]) -> list[FramePlan]:
        return [p for p in plans if p.frame in self.keys] + [p for p in plans if p.frame not in self.keys]

    def propagated(self, plan: FramePlan) -> bool:
        return plan.frame not in self.keys

    def inbetweens(self, run: RunFolder, loop: int, base_folder: str, flows: FlowFolder) -> InBetweens:
        return InBetweens(run, loop, base_folder, self.plan, flows)

    def report_extra(self, root: Path, loop: int) -> dict[str, Any] | None:
        return loop_stats(root, loop, self.plan)


def frame_order(store: FrameStore, settings: Settings, state: RunState) -> EveryFrame:
    """The run's frame order; keyframes are chosen once and kept in the run folder."""
    plan = keyframe_plan(store, settings, state)
    return EveryFrame() if plan is None else Keyframes(plan)
