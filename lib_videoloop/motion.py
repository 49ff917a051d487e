"""Optical flow between neighbouring reference frames, and blending along it.

Flow is estimated with OpenCV's DIS (medium preset) on the reference frames (the input, unless
reference_frames_directory names others), once per pair of neighbours, forwards and backwards.
It is rounded to float16 before anything uses it, so flows kept on disk and flows computed now
give the same bits. A pixel's flow is trusted only where the forward and backward flows agree,
away from motion boundaries and inside the frame (the definition of DESIGN.md, shared with the
flicker metric). Flows between frames further apart are composed from the neighbours' flows, so
any window, scheduled or not, is served by one pair of flows per neighbour.

Two blends use them:
- flow_superimpose: the temporal superimpose's weighted mean, each neighbour first warped onto
  the frame along the flow; where the warp is not trusted the neighbour's weight goes to the
  frame's own pixel.
- filter_along_motion: a recursive low-pass along the motion, out_i = (1-a) x_i + a warp(out_i-1),
  run forwards and backwards and combined into a symmetric filter with weights a^|k|.
A scene cut (few trusted pixels between two neighbours) stops every blend from crossing it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# Share of trusted, alike pixels under which two neighbours are taken to be on either side of a
# cut. Measured: 0.81-0.99 between neighbours of the bench clips (fast motion included), 0.00
# at bikes.mp4's cut, 0.27 between two unrelated random textures.
CUT_SHARE = 0.4
LOOKS_ALIKE = 24.0  # grey levels (0-255, after a 3x3 blur) between a pixel and where its flow lands
# Frames are warped bicubically: the filter warps its own output again and again, and bilinear
# warps blurred it by 0.5-2.5 dB on the bench clips; flows and masks stay bilinear/nearest.
FRAME_WARP = cv2.INTER_CUBIC


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx, gy


def targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _grid(*flow.shape[:2])
    return gx + flow[..., 0], gy + flow[..., 1]


def sample(
    image: np.ndarray,
    flow: np.ndarray,
    at: tuple[np.ndarray, np.ndarray] | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """image(x + flow(x)): pulls image onto the frame the flow starts from."""
    if at is None:  # OpenCV adds the pixel grid itself: no map of targets to build
        return cv2.remap(image, flow, None, interpolation | cv2.WARP_RELATIVE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return cv2.remap(image, at[0], at[1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def _gradient_sq(channel: np.ndarray) -> np.ndarray:
    """|grad|^2 with central differences (one-sided at the border), as numpy.gradient."""
    dx = cv2.Sobel(channel, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.Sobel(channel, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE)
    return dx * dx + dy * dy


# Inside the frame, |forward|^2, |backward there|^2, |forward + backward there|^2 (_round_trip).
RoundTrip = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _round_trip(forward: np.ndarray, backward: np.ndarray) -> RoundTrip:
    """Following the forward flow, then the backward flow from where it lands: whether it lands
    inside the frame, |forward|^2, |backward there|^2 and |forward + backward there|^2.

    The two channels are split first: numpy sums over a last axis of 2 about three times slower
    than it adds two planes, and the sums are the same float32 additions, so the same bits.
    """
    h, w = forward.shape[:2]
    tx, ty = targets(forward)
    fx, fy = cv2.split(forward)
    bx, by = cv2.split(sample(backward, forward, (tx, ty)))
    mx, my = fx + bx, fy + by
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return inside, fx * fx + fy * fy, bx * bx + by * by, mx * mx + my * my


def valid_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels whose forward flow is trustworthy (the definition in DESIGN.md)."""
    return _valid(forward, _round_trip(forward, backward))


def _valid(forward: np.ndarray, trip: RoundTrip) -> np.ndarray:
    inside, fwd_sq, back_sq, mismatch_sq = trip
    consistent = mismatch_sq <= 0.01 * (fwd_sq + back_sq) + 0.5
    boundary = _gradient_sq(forward[..., 0]) + _gradient_sq(forward[..., 1]) > 0.01 * fwd_sq + 0.002
    return consistent & ~boundary & inside


def blend_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels a blend may follow the forward flow at: forward and backward agree (within 1 px, or
    5% of the motion) and the target is inside the frame.

    Looser than valid_mask, which also drops motion boundaries: on the bench clips that rule
    left 15-30% of each frame unblended, so the noise stayed there and flickered; occlusions,
    where ghosting would come from, already fail the forward-backward test.
    """
    return _blend(_round_trip(forward, backward))


def _blend(trip: RoundTrip) -> np.ndarray:
    inside, fwd_sq, back_sq, mismatch_sq = trip
    return (mismatch_sq <= 0.05 * (fwd_sq + back_sq) + 1.0) & inside


class FlowEstimator:
    """DIS optical flow on grey frames; one instance per thread (it keeps buffers)."""

    def __init__(self) -> None:
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from grey frame a to b: a(x) ~ b(x + flow(x))."""
        return self.dis.calc(a, b, None)


def matched_share(
    grey_a: np.ndarray,
    grey_b: np.ndarray,
    forward: np.ndarray,
    backward: np.ndarray,
    *,
    valid_forward: np.ndarray | None = None,
    valid_backward: np.ndarray | None = None,
) -> float:
    """Share of pixels, in the weaker direction, that the flows between two grey frames may be
    trusted at (blend_mask, unless given) and that look alike along them; under CUT_SHARE the
    frames lie on either side of a cut."""
    if valid_forward is None or valid_backward is None:
        valid_forward, valid_backward = blend_mask(forward, backward), blend_mask(backward, forward)
    # Where DIS finds no match it tends to answer "no motion" both ways, which agrees with
    # itself: to tell a cut from a pan, the frames must also look alike along the flow.
    soft_a, soft_b = (cv2.blur(g.astype(np.float32), (3, 3)) for g in (grey_a, grey_b))
    fits_forward = np.abs(sample(soft_b, forward) - soft_a) <= LOOKS_ALIKE
    fits_backward = np.abs(sample(soft_a, backward) - soft_b) <= LOOKS_ALIKE
    return min(float((valid_forward & fits_forward).mean()), float((valid_backward & fits_backward).mean()))


@dataclass(frozen=True)
class PairFlow:
    """Flows between frames i and i+1, with the pixels each may be trusted at."""

    forward: np.ndarray  # HxWx2 float32 (float16 values): frame i's pixels in frame i+1
    backward: np.ndarray  # frame i+1's pixels in frame i
    valid_forward: np.ndarray  # HxW bool: where a blend may follow the forward flow (blend_mask)
    valid_backward: np.ndarray
    matched: float  # share of pixels, in the weaker direction, that are trusted and look alike
    # HxW bool: where the warp error counts along the forward flow (valid_mask, stricter): the
    # same for every loop's report, so it is worked out once with the flows (10 ms at 512x512)
    measured: np.ndarray

    @classmethod
    def estimate(cls, estimator: FlowEstimator, a: np.ndarray, b: np.ndarray) -> PairFlow:
        ga, gb = grey(a), grey(b)
        forward = estimator(ga, gb).astype(np.float16).astype(np.float32)
        backward = estimator(gb, ga).astype(np.float16).astype(np.float32)
        trip = _round_trip(forward, backward)  # both masks of the forward flow start from it
        valid_forward, valid_backward = _blend(trip), blend_mask(backward, forward)
        matched = matched_share(ga, gb, forward, backward, valid_forward=valid_forward, valid_backward=valid_backward)
        return cls(forward, backward, valid_forward, valid_backward, matched, _valid(forward, trip))

    @property
    def cut(self) -> bool:
        return self.matched < CUT_SHARE


class FlowChain:
    """Flows from any frame to any other, composed from the pairs of neighbours.

    `pair(i)` gives the flows between frames i and i+1 (computed, or read from the run folder).
    Pairs are kept while frames that may still need them are being blended; `keep_only`
    drops the rest, so memory stays flat with the clip's length.
    """

    def __init__(self, pair: Callable[[int], PairFlow]) -> None:
        self._pair_source = pair
        self._pairs: dict[int, PairFlow] = {}

    def pair(self, i: int) -> PairFlow:
        if i not in self._pairs:
            self._pairs[i] = self._pair_source(i)
        return self._pairs[i]

    def keep_only(self, low: int, high: int) -> None:
        """Drops the pairs outside frames low..high (those no window will reach again)."""
        for k in [k for k in self._pairs if not low <= k < high]:
            del self._pairs[k]

    def cut_between(self, i: int, j: int) -> bool:
        return any(self.pair(k).cut for k in range(min(i, j), max(i, j)))

    def reachable(self, pairs: list[tuple[int, float]], i: int) -> list[tuple[int, float]]:
        """The (frame, weight) pairs of a window that lie on frame i's side of every cut,
        weights renormalised (as at the clip's ends)."""
        kept = [(j, w) for j, w in pairs if not self.cut_between(i, j)]
        total = sum(w for _, w in kept)
        return [(j, w / total) for j, w in kept] if total > 0 else [(i, 1.0)]

    def to(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Flow from frame i to frame j (i's pixels in j) and where it is trusted."""
        step = 1 if j > i else -1
        flow: np.ndarray | None = None
        valid: np.ndarray | None = None
        for k in range(i, j, step):
            pf = self.pair(k) if step == 1 else self.pair(k - 1)
            hop, hop_valid = (pf.forward, pf.valid_forward) if step == 1 else (pf.backward, pf.valid_backward)
            if flow is None:
                flow, valid = hop, hop_valid
                continue
            reached = cv2.remap(hop_valid.view(np.uint8), flow, None, cv2.INTER_NEAREST | cv2.WARP_RELATIVE_MAP)
            flow = flow + sample(hop, flow)
            valid = valid & (reached > 0)
        assert flow is not None and valid is not None
        return flow, valid


def flow_superimpose(
    frames: dict[int, np.ndarray], index: int, pairs: list[tuple[int, float]], chain: FlowChain
) -> np.ndarray:
    """The temporal superimpose with each neighbour warped onto frame `index` along the flow;
    where the warp is not trusted, the neighbour's weight goes to the frame's own pixel."""
    current = frames[index]
    if len(pairs) == 1:
        return frames[pairs[0][0]]
    out = np.zeros_like(current)
    for j, w in pairs:
        if j == index:
            cv2.scaleAdd(current, float(w), out, dst=out)
            continue
        flow, valid = chain.to(index, j)
        warped = sample(frames[j], flow, interpolation=FRAME_WARP)
        cv2.copyTo(current, np.logical_not(valid).view(np.uint8), warped)  # untrusted: the frame's own pixel
        cv2.scaleAdd(warped, float(w), out, dst=out)
    return out


def _recursive(
    frames: Iterable[tuple[int, np.ndarray]], strengths: Callable[[int], float], chain: FlowChain, forward: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """One direction of the filter: y_i = x_i + a v (warp(y_prev) - x_i), v the trusted pixels."""
    previous: np.ndarray | None = None
    for i, x in frames:
        a = strengths(i)
        if previous is None or a <= 0 or chain.cut_between(i, i - 1 if forward else i + 1):
            y = x
        else:
            pf = chain.pair(i - 1) if forward else chain.pair(i)
            flow, valid = (pf.backward, pf.valid_backward) if forward else (pf.forward, pf.valid_forward)
            y = cv2.addWeighted(x, 1.0 - a, sample(previous, flow, interpolation=FRAME_WARP), a, 0.0)
            cv2.copyTo(x, np.logical_not(valid).view(np.uint8), y)  # untrusted: the frame as it is
        previous = y
        yield i, y


def filter_backward(
    frames: Iterable[tuple[int, np.ndarray]], strengths: Callable[[int], float], chain: FlowChain
) -> Iterator[tuple[int, np.ndarray]]:
    """The backward half of filter_along_motion; give it the frames from the last to the first."""
    return _recursive(frames, strengths, chain, forward=False)


def filter_forward_and_combine(
    frames: Iterable[tuple[int, np.ndarray]],
    backward: Callable[[int], np.ndarray],
    strengths: Callable[[int], float],
    chain: FlowChain,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The forward half, combined with the backward half frame by frame: (i, x_i, out_i) with
    out_i = (f_i + b_i - (1-a) x_i) / (1+a), a filter with weights a^|k| on both sides."""
    pending = dict[int, np.ndarray]()
    for i, f in _recursive(_remember(frames, pending), strengths, chain, forward=True):
        x = pending.pop(i)
        a = strengths(i)
        if a <= 0:
            yield i, x, x
            continue
        out = cv2.addWeighted(f, 1.0, backward(i), 1.0, 0.0)
        cv2.scaleAdd(x, -(1.0 - a), out, dst=out)
        out *= np.float32(1.0 / (1.0 + a))
        yield i, x, out


def _remember(
    frames: Iterable[tuple[int, np.ndarray]], into: dict[int, np.ndarray]
) -> Iterator[tuple[int, np.ndarray]]:
    for i, x in frames:
        into[i] = x
        yield i, x
