"""Temporal consistency: warp error (Lai et al. 2018), tOF (TecoGAN), PSNR and SSIM.

Motion is always measured on the SOURCE frames (OpenCV DIS optical flow, both directions),
then used to warp the OUTPUT: a flickering output differs from its motion-compensated
neighbour even where the source is consistent. Pixels where the flow cannot be trusted
(forward-backward mismatch, motion boundaries, warped out of the frame) are masked out; a pair
across a scene cut is skipped and counted. A cut is what the engine takes for one (fewer than
CUT_SHARE of the pixels followed and alike, motion.matched_share), not only a pair with no
valid pixel left: at two of the three cuts in the bench's bikes.mp4 spans DIS still passes 1-3%
of the pixels as trusted, and along Farneback flow the pair across the cut was 43-72% of a
60-frame span's E_warp. Everything streams: two frames of each clip are held at a time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.motion import CUT_SHARE, FlowEstimator, PairFlow, matched_share, sample, valid_mask
from lib_videoloop.motion import grey as _grey


@dataclass
class FlickerResult:
    e_warp: float  # mean over pairs, in the units of the definition (O in [0, 1])
    e_warp_source: float
    tof: float
    per_frame: list[float] = field(default_factory=list)  # E_warp of each pair, NaN where skipped
    per_frame_source: list[float] = field(default_factory=list)
    skipped_pairs: int = 0
    pairs: int = 0
    psnr: float | None = None
    ssim: float | None = None


def _check_same_size(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise VideoLoopError(
            what, f"{b.shape[1]}x{b.shape[0]}", f"differs in size from the clip measured ({a.shape[1]}x{a.shape[0]})",
            "Compare clips of the same size (for a run, use its input/ folder as the source)",
        )  # fmt: skip


class FlickerMeter:
    """measure() one frame at a time, for a clip that is still being made (a run's loop): add()
    each output frame with its source frame, in order, then read result()."""

    def __init__(
        self,
        *,
        fidelity_to_source: bool = False,
        with_tof: bool = True,
        flows: Callable[[int], PairFlow] | None = None,
        source_errors: dict[int, float] | None = None,
        fidelity_pool: Executor | None = None,
    ) -> None:
        """source_errors: the source's warp error of each pair, shared by meters of the same source
        and motion (a run's loops are all measured against its input): each is worked out once.
        fidelity_pool: where each frame's fidelity to the source is measured, beside the warp
        error (SSIM is most of a frame's measure: 87 ms at 1920x1080 on one core, against 26 ms
        for the warp error), two frames at a time at most."""
        self.fidelity_to_source, self.with_tof, self.flows = fidelity_to_source, with_tof, flows
        self.source_errors = source_errors if source_errors is not None else {}
        self.flow = FlowEstimator() if flows is None else None
        self.per_frame: list[float] = []
        self.per_frame_source: list[float] = []
        self.tofs: list[float] = []
        self.psnrs: list[float] = []
        self.ssims: list[float] = []
        self._pool = fidelity_pool
        self._fidelity: deque[Future[tuple[float, float]]] = deque()  # in frame order
        self.skipped = 0
        self.frames = 0
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None

    def add(self, out: np.ndarray, src: np.ndarray, ref: np.ndarray | None = None) -> None:
        _check_same_size(out, src, "source")
        if ref is not None:
            _check_same_size(out, ref, "reference")
            self._settle(0)  # the values stay in the order one thread would give them
            self.psnrs.append(psnr(out, ref))
            self.ssims.append(ssim(out, ref))
        if self.fidelity_to_source and self._pool is not None:
            self._settle(1)
            self._fidelity.append(self._pool.submit(_fidelity, out, src))
        elif self.fidelity_to_source:
            self.psnrs.append(psnr(out, src))
            self.ssims.append(ssim(out, src))
        # Grey frames only for what uses them (5 ms a frame at 512x512): DIS and tOF.
        src_grey = _grey(src) if self.flows is None or self.with_tof else None
        current = out, src, src_grey, _grey(out) if self.with_tof else None
        if self._previous is not None:
            self._pair(self._previous, current)
        self._previous = current
        self.frames += 1

    def _pair(self, previous: tuple[np.ndarray | None, ...], current: tuple[np.ndarray | None, ...]) -> None:
        prev_out, prev_src, prev_grey, prev_out_grey = previous
        out, src, grey, out_grey = current
        if self.flows is not None:
            pair = self.flows(len(self.per_frame))  # its cut test and trusted pixels made once, with the flows
            forward, cut, mask = pair.forward, pair.cut, pair.measured
        else:
            assert self.flow is not None
            forward, backward = self.flow(prev_grey, grey), self.flow(grey, prev_grey)
            cut = matched_share(prev_grey, grey, forward, backward) < CUT_SHARE
            mask = valid_mask(forward, backward)
        if cut or not mask.any():
            self.skipped += 1
            self.per_frame.append(float("nan"))
            self.per_frame_source.append(float("nan"))
        else:
            pair_index = len(self.per_frame)
            if pair_index not in self.source_errors:
                self.source_errors[pair_index] = _warp_error(prev_src, src, forward, mask)
            self.per_frame.append(_warp_error(prev_out, out, forward, mask))
            self.per_frame_source.append(self.source_errors[pair_index])
        if self.with_tof:
            flow_out = cv2.calcOpticalFlowFarneback(prev_out_grey, out_grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            flow_src = cv2.calcOpticalFlowFarneback(prev_grey, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            self.tofs.append(float(np.sqrt(((flow_src - flow_out) ** 2).sum(axis=2)).mean()))

    def _settle(self, keep: int) -> None:
        """Takes in the fidelity of the frames measured on the pool until `keep` are left there."""
        while len(self._fidelity) > keep:
            value_psnr, value_ssim = self._fidelity.popleft().result()
            self.psnrs.append(value_psnr)
            self.ssims.append(value_ssim)

    def result(self) -> FlickerResult:
        self._settle(0)
        if self.frames == 0:
            raise VideoLoopError("output", "", "has no frames", "")
        valid = [v for v in self.per_frame if not math.isnan(v)]
        valid_src = [v for v in self.per_frame_source if not math.isnan(v)]
        return FlickerResult(
            e_warp=float(np.mean(valid)) if valid else float("nan"),
            e_warp_source=float(np.mean(valid_src)) if valid_src else float("nan"),
            tof=float(np.mean(self.tofs)) if self.tofs else float("nan"),
            per_frame=self.per_frame, per_frame_source=self.per_frame_source, skipped_pairs=self.skipped,
            pairs=len(self.per_frame), psnr=float(np.mean(self.psnrs)) if self.psnrs else None,
            ssim=float(np.mean(self.ssims)) if self.ssims else None,
        )  # fmt: skip


def measure(
    output: Iterable[np.ndarray],
    source: Iterable[np.ndarray],
    reference: Iterable[np.ndarray] | None = None,
    *,
    fidelity_to_source: bool = False,
    with_tof: bool = True,
    flows: Callable[[int], PairFlow] | None = None,
) -> FlickerResult:
    """Warp error of `output` and of `source` (flow from the source), tOF, and fidelity
    (PSNR/SSIM) against `reference`, or against the source itself with fidelity_to_source.

    flows(k): the DIS flows between source frames k and k+1, with the engine's cut test, when
    they are known already (a run keeps them in its flows/ folder); else they are computed here."""
    meter = FlickerMeter(fidelity_to_source=fidelity_to_source, with_tof=with_tof, flows=flows)
    ref_iter: Iterator[np.ndarray] | None = iter(reference) if reference is not None else None
    for out, src in _zip_strict(output, source):
        ref = None
        if ref_iter is not None:
            ref = next(ref_iter, None)
            if ref is None:
                raise VideoLoopError(
                    "reference", "", "has fewer frames than the clip measured", "Give a reference with as many frames"
                )
        meter.add(out, src, ref)
    return meter.result()


def _warp_error(prev: np.ndarray, cur: np.ndarray, forward: np.ndarray, mask: np.ndarray) -> float:
    """The mean over the mask's pixels and the 3 channels of (prev - cur pulled back along the
    forward flow)^2. OpenCV's masked mean, summed in double: 3.2 ms for a pair of bikes.mp4 at
    512x512 on one core, against 7.4 ms for numpy's sum over the channels, then over the mask
    (the same value to 7 digits)."""
    warped = sample(np.ascontiguousarray(cur, dtype=np.float32), forward)
    diff = cv2.subtract(np.ascontiguousarray(prev, dtype=np.float32), warped)
    means = cv2.mean(cv2.multiply(diff, diff), mask=mask.view(np.uint8))
    return float(sum(means[:3]) / 3)


def _zip_strict(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    ia, ib = iter(a), iter(b)
    n = 0
    while True:
        x, y = next(ia, None), next(ib, None)
        if x is None and y is None:
            return
        if x is None or y is None:
            raise VideoLoopError(
                "source",
                "",
                f"the clips differ in length (one ended after {n} frames)",
                "Measure clips with the same frames",
            )
        n += 1
        yield x, y


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    # OpenCV sums the squares in double, as numpy did on float64 copies: 0.25 ms at 512x512
    # instead of 1.6 ms, the same value.
    mse = cv2.norm(np.asarray(a, np.float32), np.asarray(b, np.float32), cv2.NORM_L2SQR) / a.size
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over the RGB channels.

    Worked out in place: the report takes one per frame of every loop, and with a
    temporary array per operation one took 34-39 ms at 512x512 on one core, in place 21 ms
    (the same value). Only var_a + var_b is used, so a² + b² is blurred once (the blur is
    linear): 12.0-14.5 ms against 15.4-17.5 ms, alternating, the same value to 6 digits."""
    c1, c2 = 0.01**2, 0.03**2
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    mu_a, mu_b = _gaussian(a), _gaussian(b)
    var = np.square(a)
    var += np.square(b)
    cov, var = _gaussian(a * b, out=True), _gaussian(var, out=True)  # E[ab], E[a²] + E[b²]
    mu_ab = mu_a * mu_b
    cov -= mu_ab  # the covariance
    mu_a *= mu_a
    mu_b *= mu_b
    mu_a += mu_b  # mu_a² + mu_b²
    var -= mu_a  # var_a + var_b
    var += c2
    mu_a += c1
    mu_a *= var  # the denominator
    mu_ab *= 2
    mu_ab += c1
    cov *= 2
    cov += c2
    mu_ab *= cov  # the numerator
    mu_ab /= mu_a
    return float(mu_ab.mean())


def _fidelity(out: np.ndarray, src: np.ndarray) -> tuple[float, float]:
    return psnr(out, src), ssim(out, src)


def _gaussian(x: np.ndarray, out: bool = False) -> np.ndarray:
    """SSIM's window; out: into x itself (a temporary of the caller's)."""
    return cv2.GaussianBlur(x, (11, 11), 1.5, dst=x if out else None)


def clip_frames(path: str | Path, setting: str) -> Iterator[np.ndarray]:
    from lib_videoloop.media.sources import open_source

    for frame in open_source(path, setting=setting):
        yield frame.image


def measure_clips(output: str | Path, source: str | Path, reference: str | Path | None = None) -> dict[str, Any]:
    """The `metrics` command: the numbers as a JSON-ready dict."""
    from lib_videoloop.media.sources import open_source

    count = open_source(output, setting="output").info.frame_count
    if count < 2:
        raise VideoLoopError(
            "output", str(output), f"has {count} frame; flicker is measured between frames", "Give a clip of 2 or more"
        )
    result = measure(
        clip_frames(output, "output"),
        clip_frames(source, "--source"),
        clip_frames(reference, "--reference") if reference else None,
    )
    return result_dict(result)


def result_dict(result: FlickerResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "e_warp": result.e_warp,
        "e_warp_source": result.e_warp_source,
        "tof": result.tof,
        "pairs": result.pairs,
        "skipped_pairs": result.skipped_pairs,
    }
    if result.psnr is not None:
        data["psnr"] = result.psnr
        data["ssim"] = result.ssim
    data["per_frame"] = [None if math.isnan(v) else v for v in result.per_frame]
    data["per_frame_source"] = [None if math.isnan(v) else v for v in result.per_frame_source]
    return data
