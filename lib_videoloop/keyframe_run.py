"""Keyframe mode in a run: the chosen keyframes (keyframes.json), the in-between frames of each
loop, and what they leave in the run folder for a resumed run and the report to read back:
the masks frames were repaired with (repair/loop_NNN/NNNNNN.png), the pixels of each frame
that nothing explained and that still hold a guess (guessed/loop_NNN/NNNNNN.png), and those
that hold a repaint, made there or carried from the frame before (painted/loop_NNN/NNNNNN.png);
the last two only where there are any."""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lib_videoloop.blend import inside_mask
from lib_videoloop.config import PATCH_MATCH, Settings
from lib_videoloop.keyframes import KeyframePlan, Propagation, choose, repair_mask
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.media.images import write_atomic
from lib_videoloop.media.store import INPUT, FrameStore, as_stored, frame_file_name, loop_dir_name
from lib_videoloop.run_state import RunFolder, RunState

log = logging.getLogger(__name__)

KEYFRAMES_FILE = "keyframes.json"
REPAIR = "repair"
GUESSED = "guessed"
PAINTED = "painted"


def keyframe_plan(store: FrameStore, settings: Settings, state: RunState) -> KeyframePlan | None:
    """The run's keyframes: chosen once from the (first) reference frames and kept, so a resumed
    run makes the same frames the same way; None when keyframe_mode is off."""
    if settings.keyframe_mode == "off":
        return None
    path = store.root / KEYFRAMES_FILE
    if path.is_file():
        return KeyframePlan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    reference = state.references[0] if state.references else INPUT
    plan = choose(settings, store.frames(reference), state.frame_count)
    write_atomic(path, json.dumps(plan.to_dict()).encode("utf-8"))
    cuts = len(plan.scene_starts) - 1
    log.info("keyframes: %d of %d frames (%d scene cuts): %s", len(plan.keyframes), plan.frame_count, cuts,
             ", ".join(map(str, plan.keyframes)))  # fmt: skip
    return plan


def preview_plan(settings: Settings) -> KeyframePlan:
    """The keyframes a run with these settings would choose, read straight from the source (or
    the first reference folder) the way the run copies it: the panel's preview."""
    from lib_videoloop.media.resize import resize_frame
    from lib_videoloop.run_setup import open_input, reference_sources, target_size

    source = open_input(settings)
    count = source.info.frame_count
    references = reference_sources(settings, count)
    measured = references[0] if references else source
    w, h = target_size(settings, source.info)
    frames = (as_stored(resize_frame(f.image, w, h, settings.resize_mode)) for f in measured)
    return choose(settings, itertools.islice(frames, count), count)


class InBetweens:
    """The in-between frames of one loop, made in frame order after the loop's keyframes.

    Each is propagated from its keyframes (keyframes.Propagation) and from the frame before it
    where that one was right; what is still unexplained is repainted (keyframe_repair) once it
    covers repair_min_share of the frame. Masks are written before the frame they belong to, so
    a finished frame always has them, and a resumed run reads them back to go on the same way.
    """

    def __init__(self, run: RunFolder, loop: int, base_folder: str, plan: KeyframePlan, flows: FlowFolder) -> None:
        """flows: the run's, of the (first) reference frames the propagation follows."""
        store = self.store = run.store
        settings = self.settings = run.settings
        self.loop = loop
        self.folder = loop_dir_name(loop)
        self.base_folder = base_folder  # the previous loop's frames (the input for loop 1)
        self.plan = plan
        patches = None
        chain, reference = flows.chain(), flows.reference
        if settings.keyframe_propagation == PATCH_MATCH:
            from lib_videoloop.patch_blend import PatchBlender

            patches = PatchBlender(chain, reference)
        keyframe = functools.partial(store.read_frame, self.folder)
        self.propagation = Propagation(plan, chain, reference, keyframe, patches)
        self._last: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def make(
        self,
        i: int,
        mask: np.ndarray | None,
        repaint: Callable[[np.ndarray, np.ndarray], np.ndarray | None],
    ) -> np.ndarray | None:
        """Frame i (as it will be stored), or None when no keyframe reaches it: it is then
        generated whole. mask: the user's; repaint(init, repair mask): the generation."""
        s, root = self.settings, self.store.root
        made = self.propagation.frame(i, self._previous(i))
        if made is None:
            _write_mask(_mask_path(root / REPAIR, self.loop, i), np.ones((1, 1)))  # all white: generated whole
            self._last = None
            return None
        out, unknown, painted = made
        if mask is not None:
            unknown &= mask > 0.5
            painted &= mask > 0.5
        repair = repair_mask(unknown, mask, s.repair_min_share) if s.keyframe_repair else None
        # The previous loop's frame, only where something keeps or starts from it.
        base = self.store.read_frame(self.base_folder, i) if mask is not None or repair is not None else None
        if mask is not None:
            out = inside_mask(base, out, mask)
        if repair is not None:
            assert base is not None
            # New content starts from the previous loop's pixels (the input's in the first loop),
            # not from the smear the warps leave there.
            init = out + repair[..., None] * (base - out)
            _write_mask(_mask_path(root / REPAIR, self.loop, i), repair)
            generated = repaint(init, repair)
            if generated is not None:
                out = init + repair[..., None] * (generated - init)
                unknown &= repair < 0.5
                painted |= repair >= 0.5
        out = as_stored(out)
        for folder, pixels in ((GUESSED, unknown), (PAINTED, painted)):
            path = _mask_path(root / folder, self.loop, i)
            if pixels.any():
                _write_mask(path, pixels)
            else:
                path.unlink(missing_ok=True)  # one a stopped run may have left
        self._last = (i, out, unknown, painted)
        return out

    def _previous(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Frame i-1, its guessed pixels and its repainted ones, when it is an in-between of the
        same scene."""
        if i == 0 or i in self.plan.scene_starts or self.plan.sides(i - 1) == [(i - 1, 1.0)]:
            return None
        if self._last is not None and self._last[0] == i - 1:
            return self._last[1:]
        self.store.flush()  # a resumed run, or a frame generated whole just before
        made = self.store.read_frame(self.folder, i - 1)
        return made, self._read_mask(GUESSED, i - 1, made.shape[:2]), self._read_mask(PAINTED, i - 1, made.shape[:2])

    def _read_mask(self, folder: str, i: int, shape: tuple[int, ...]) -> np.ndarray:
        path = _mask_path(self.store.root / folder, self.loop, i)
        if not path.is_file():
            return np.zeros(shape, bool)
        with Image.open(path) as img:
            return np.asarray(img) > 127


def _mask_path(folder: Path, loop: int, index: int) -> Path:
    return folder / loop_dir_name(loop) / frame_file_name(index)


def _write_mask(path: Path, mask: np.ndarray) -> None:
    """An in-between frame's mask (0-1, or bool) as an 8-bit PNG, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(mask.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def loop_stats(root: Path, loop: int, plan: KeyframePlan) -> dict[str, Any]:
    """What keyframe mode did in one loop: generations, and how much of the clip was repainted."""
    folder = root / REPAIR / loop_dir_name(loop)
    repaired = sorted(folder.glob("[0-9]*.png")) if folder.is_dir() else []
    share = 0.0
    for path in repaired:
        with Image.open(path) as img:
            share += float((np.asarray(img) > 127).mean())
    return {
        "keyframes": len(plan.keyframes),
        "repaired_frames": len(repaired),
        "generations": len(plan.keyframes) + len(repaired),
        "repaired_share": share / plan.frame_count,
    }
