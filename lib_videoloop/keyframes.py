"""Keyframe mode: generate some frames, carry them to the others along the motion, and repaint
only what no keyframe shows.

- Which frames are keyframes (`choose`) is decided once per run, from the reference frames
  scaled down to MEASURE_SIDE: flows there cost a few milliseconds a pair, and the panel's
  preview runs the very same computation on the same frames, so it shows what the run will do.
  Every scene (a cut starts one) begins with a keyframe; no propagation crosses a cut.
- An in-between frame (`Propagation`) is its previous and next keyframe of the same scene, each
  warped onto it along the reference's flow, weighted by temporal distance. Flows further apart
  are composed from the run's neighbour flows (flows/), not computed directly: DIS, a
  coarse-to-fine method, loses large displacements, eight frames of motion are often beyond it,
  and the neighbour flows are computed for the blends anyway. A keyframe's pixel counts only
  where the reference frames look alike along the composed flow (`unexplained`).
- Where neither keyframe counts (new content, occlusions), the frame before is followed one
  step, where it had that content right; `repair_mask` turns what is left into the mask of an
  inpainting generation (specks dropped, dilated and feathered) once it is worth one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from lib_videoloop.config import Settings, keyframe_numbers
from lib_videoloop.motion import FRAME_WARP, LOOKS_ALIKE, FlowChain, FlowEstimator, PairFlow, sample, targets

if TYPE_CHECKING:
    from lib_videoloop.patch_blend import PatchBlender

MEASURE_SIDE = 256  # pixels, longest side, where keyframes are chosen
# Repair: unexplained patches narrower than this (pixels at 512 px wide, scaled with the frame)
# are the flow's noise, or a moving object's outline where DIS smooths the flow across the edge;
# new content that thin stays guessed, and is repaired once it has grown wider.
SPECK = 13
# Patch match propagation: a keyframe's pixel counts where its patch matched with a weight above
# this (patch_blend's exp(-error / MATCH_SCALE): an error of three MATCH_SCALEs at most).
PATCH_TRUST = float(np.exp(-3.0))


@dataclass
class KeyframePlan:
    frame_count: int
    keyframes: list[int]
    scene_starts: list[int] = field(default_factory=lambda: [0])  # 0 and the first frame after each cut

    def to_dict(self) -> dict[str, Any]:
        return {"frame_count": self.frame_count, "keyframes": self.keyframes, "scene_starts": self.scene_starts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyframePlan:
        return cls(
            int(data["frame_count"]), [int(k) for k in data["keyframes"]], [int(s) for s in data["scene_starts"]]
        )

    def sides(self, i: int) -> list[tuple[int, float]]:
        """The keyframes frame i is made from, with their weights: itself, or the nearest
        before and after it in its scene, the nearer weighing more."""
        scene = self.scene_starts[bisect.bisect_right(self.scene_starts, i) - 1]
        following = bisect.bisect_right(self.scene_starts, i)
        scene_end = self.scene_starts[following] - 1 if following < len(self.scene_starts) else self.frame_count - 1
        at = bisect.bisect_left(self.keyframes, i)
        if at < len(self.keyframes) and self.keyframes[at] == i:
            return [(i, 1.0)]
        before = self.keyframes[at - 1] if at > 0 and self.keyframes[at - 1] >= scene else None
        after = self.keyframes[at] if at < len(self.keyframes) and self.keyframes[at] <= scene_end else None
        if before is not None and after is not None:
            return [(before, (after - i) / (after - before)), (after, (i - before) / (after - before))]
        return [(k, 1.0) for k in (before, after) if k is not None]


def choose(settings: Settings, frames: Iterable[np.ndarray], frame_count: int) -> KeyframePlan:
    """The keyframes of `frames` (the reference frames at the run's size) for keyframe_mode."""
    mode, interval = settings.keyframe_mode, settings.keyframe_interval
    listed = set(keyframe_numbers(settings.keyframe_frames))
    estimator = FlowEstimator()
    keys: list[int] = []
    starts: list[int] = []
    small: dict[int, np.ndarray] = {}
    pairs: dict[int, PairFlow] = {}
    chain = FlowChain(pairs.__getitem__)
    for i, frame in enumerate(frames):
        small[i] = _measure_size(frame)
        cut = i > 0 and _pair(pairs, estimator, small, i - 1).cut
        if i == 0 or cut:
            starts.append(i)
            keys.append(i)
        elif mode == "every n frames":
            if i - keys[-1] >= interval:
                keys.append(i)
        elif mode == "by motion":
            if (
                i - keys[-1] >= interval
                or unexplained(*chain.to(i, keys[-1]), small[i], small[keys[-1]]).mean() > settings.keyframe_motion
            ):
                keys.append(i)
        elif i in listed:
            keys.append(i)
        for j in [j for j in small if j < min(keys[-1], i - 1)]:  # only the last keyframe on is needed
            del small[j]
        chain.keep_only(keys[-1], i)
    return KeyframePlan(frame_count, keys, starts)


def _measure_size(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = MEASURE_SIDE / max(h, w)
    if scale >= 1:
        return frame
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _pair(pairs: dict[int, PairFlow], estimator: FlowEstimator, small: dict[int, np.ndarray], i: int) -> PairFlow:
    pairs[i] = PairFlow.estimate(estimator, small[i], small[i + 1])
    return pairs[i]


def unexplained(flow: np.ndarray, valid: np.ndarray, here: np.ndarray, there: np.ndarray) -> np.ndarray:
    """Pixels of reference frame `here` that reference frame `there`, warped along `flow` (from
    here to there, trusted at `valid`), cannot explain: the flow leaves the frame, or the two
    differ along it by more than LOOKS_ALIKE levels in some colour channel (content that is not
    in `there`), or by more than half that where the flow is not trusted.

    Distrust alone is not enough: on real footage (bikes.mp4, keyframes 8 apart) the forward-
    backward test fails on 5-25% of a frame where the warped picture matches to within a few
    levels. Likeness alone is not enough either: DIS carries a moving object's motion into what
    it uncovers, and what it lands on can look alike by chance, in grey levels more often than
    in colour.
    """
    difference = cv2.absdiff(_soft(here), sample(_soft(there), flow)).max(axis=2)
    return _leaves(flow) | (difference > LOOKS_ALIKE) | (~valid & (difference > LOOKS_ALIKE / 2))


def _leaves(flow: np.ndarray) -> np.ndarray:
    """Where the flow leads out of the frame."""
    h, w = flow.shape[:2]
    tx, ty = targets(flow)
    return (tx < -0.5) | (tx > w - 0.5) | (ty < -0.5) | (ty > h - 0.5)


def _soft(frame: np.ndarray) -> np.ndarray:
    """A frame in 0-255 levels after a 3x3 blur: pixel noise does not count as new content."""
    return cv2.blur(np.clip(frame, 0, 1) * np.float32(255), (3, 3))


class Propagation:
    """In-between frames from the keyframes of one loop (`keyframe(k)`), in any order."""

    def __init__(
        self,
        plan: KeyframePlan,
        chain: FlowChain,
        reference: Callable[[int], np.ndarray],
        keyframe: Callable[[int], np.ndarray],
        patches: PatchBlender | None = None,
    ) -> None:
        self.plan = plan
        self.chain = chain
        self.reference = reference
        self.keyframe = keyframe
        self.patches = patches  # keyframe_propagation 'patch match': keyframes rebuilt patch by patch
        self._references: dict[int, np.ndarray] = {}
        self._keyframes: dict[int, np.ndarray] = {}

    def frame(
        self, i: int, previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(the propagated frame, its pixels that nothing explains, its pixels that hold a
        repaint carried from frame i-1), or None when no keyframe of its scene reaches frame i (a
        cut the full-size flows see and the chooser did not).

        previous: frame i-1 as made (an in-between of the same scene), its pixels that nothing
        explained, and its pixels that hold a repaint (repaired there or carried). What no
        keyframe explains in frame i is taken from there, one step along the flow, where frame
        i-1 had it right (from a keyframe) or holds a repaint: new content is then repaired
        once, when it first needs it, and carried on unchanged like keyframe content.
        """
        sides = [(k, w) for k, w in self.plan.sides(i) if not self.chain.cut_between(i, k)]
        if not sides:
            return None
        needed = {i} | {k for k, _ in sides} | ({i - 1} if previous is not None else set())
        self._references = _kept(self._references, needed, self.reference)
        self._keyframes = _kept(self._keyframes, {k for k, _ in sides}, self.keyframe)
        total = sum(w for _, w in sides)
        guess = np.zeros_like(self._references[i])
        mixed = np.zeros_like(guess)
        weight = np.zeros(guess.shape[:2], np.float32)
        refs = self._references
        for k, w in sides:
            if self.patches is None:
                flow, valid = self.chain.to(i, k)
                warped = sample(self._keyframes[k], flow, interpolation=FRAME_WARP)
                explained = ~unexplained(flow, valid, refs[i], refs[k])
            else:
                warped, explained = self._rebuilt(k, i)
            counts = explained.astype(np.float32) * np.float32(w / total)
            cv2.scaleAdd(warped, float(w / total), guess, dst=guess)
            mixed += warped * counts[..., None]
            weight += counts
        reached = weight > 0
        # Where some keyframe counts, the mean of those that do; elsewhere the plain
        # distance-weighted mean of the warps, the best guess when nothing repairs it.
        out = np.where(reached[..., None], mixed / np.maximum(weight, 1e-6)[..., None], guess)
        unknown = ~reached
        painted = np.zeros_like(unknown)
        if previous is not None and unknown.any() and not self.chain.cut_between(i, i - 1):
            made, left, was_painted = previous
            flow, valid = self.chain.to(i, i - 1)
            carried = unknown & ~unexplained(flow, valid, refs[i], refs[i - 1])
            carried &= sample(left.astype(np.uint8), flow, interpolation=cv2.INTER_NEAREST) == 0
            # A repaint goes on wherever the flow leads into frame i-1, whether the reference
            # frames look alike there or not: on fast motion they often do not (motion blur), and
            # the same content was painted again and again, each time with a new texture. On
            # bikes.mp4 60-119 (second loop), carried only where they looked alike, up to 63% of
            # a repair fell on pixels repainted in the frame before, and repair raised E_warp by
            # 15%; carried wherever the flow leads, up to 14% (the mask's rim) and 8% (also 13-15%
            # when carried where they differ by at most 2 or 3 times LOOKS_ALIKE). Where a
            # keyframe explains a pixel again, its content takes over: the input may have changed.
            painted = unknown & ~_leaves(flow)
            painted &= sample(was_painted.astype(np.uint8), flow, interpolation=cv2.INTER_NEAREST) > 0
            carried |= painted
            out[carried] = sample(made, flow, interpolation=FRAME_WARP)[carried]
            unknown &= ~carried
        return np.clip(out, 0.0, 1.0).astype(np.float32), unknown, painted

    def _rebuilt(self, k: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Keyframe k rebuilt on frame i through the reference frames' patch matches (started
        from the composed flow), and where its patches matched well enough to count."""
        assert self.patches is not None
        moved = self.patches.rebuild(self.patches.premultiplied(self._keyframes[k]), k, i)[0]
        moved = moved.permute(1, 2, 0).cpu().numpy()
        weight = moved[..., 3]
        return moved[..., :3] / np.maximum(weight, 1e-6)[..., None], weight > PATCH_TRUST


def _kept(cache: dict[int, np.ndarray], needed: set[int], read: Callable[[int], np.ndarray]) -> dict[int, np.ndarray]:
    """The frames needed now, read once each while they stay needed."""
    return {j: cache[j] if j in cache else read(j) for j in needed}


def repair_mask(unreached: np.ndarray, within: np.ndarray | None = None, min_share: float = 0.02) -> np.ndarray | None:
    """The inpainting mask (float, 1 = repaint) over the unreached pixels: specks of the flow's
    noise removed, then dilated and feathered so the repaint blends in; None when less than
    min_share of the frame is left (not worth a generation). `within`: the user's mask, outside
    which nothing changes."""
    h, w = unreached.shape
    scale = max(h, w) / 512
    speck = max(3, round(SPECK * scale))
    radius = max(2, round(4 * scale))
    core = cv2.morphologyEx(
        unreached.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (speck, speck))
    )
    if within is not None:
        core &= (within > 0.5).astype(np.uint8)
    if not core.any() or core.mean() < min_share:
        return None
    grown = cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), radius / 2)
    mask = np.maximum(soft, core.astype(np.float32))
    if within is not None:
        mask *= within.astype(np.float32)
    return mask


def strip(plan: KeyframePlan, width: int = 800, height: int = 56) -> Image.Image:
    """The clip as a bar over frame numbers: a tick per keyframe, a red line at each cut."""
    image = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    n = max(plan.frame_count, 1)
    left, right, top, bottom = 8, width - 8, 6, height - 20

    def x(frame: float) -> float:
        return left + (right - left) * frame / max(n - 1, 1)

    draw.rectangle([left, top + 8, right, bottom - 8], fill=(210, 210, 210))
    for s in plan.scene_starts[1:]:
        draw.line([x(s - 0.5), top, x(s - 0.5), bottom], fill=(200, 40, 40), width=2)
    for k in plan.keyframes:
        draw.line([x(k), top, x(k), bottom], fill=(30, 90, 200), width=2)
    cuts = len(plan.scene_starts) - 1
    draw.text(
        (left, bottom + 4),
        f"{len(plan.keyframes)} keyframes of {plan.frame_count} frames, {cuts} cut{'s' if cuts != 1 else ''}"
        f"   (0 ... {plan.frame_count - 1})",
        fill=(40, 40, 40),
    )
    return image
