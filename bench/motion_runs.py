"""Real runs, one per temporal method, side by side: the run report's E_warp per loop.

Two backends, on the first 24 frames of bikes.mp4, 3 loops, a new seed per frame:
- the tiny-random model through the command line (a real, randomly initialised diffusers
  pipeline, 128x56, denoising 0.5, superimpose_alpha 0.5). Its random VAE does not give back
  its init image, so what it paints does not depend on the init, and no temporal method can
  change much: the run shows the plumbing, not the smoothing;
- a stand-in that behaves like img2img at low denoising (320x136, superimpose_alpha 0.5): it
  gives back its init image with a fresh smooth random texture of amplitude 0.06 drawn from the
  frame's seed, the bench's texture flicker. There the methods differ as they would with a model.
Each run's report.json is read back; PSNR is against the input frames.

    .venv/bin/python bench/motion_runs.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import ROOT
from flicker import clip_path

from lib_videoloop.backends import GenerationRequest

METHODS = [
    ("simple", "1,2,3,2,1", "simple 1,2,3,2,1"),
    ("with difference mask from reference", "1,2,3,2,1", "difference 1,2,3,2,1"),
    ("along optical flow of reference", "1,2,3,2,1", "flow 1,2,3,2,1"),
    ("temporal filter along optical flow", "1", "filter a=0.7"),
]


def run(method: str, weights: str, out: Path) -> dict:
    args = [sys.executable, "-m", "lib_videoloop", "run", str(clip_path("bikes.mp4")), "-o", str(out)]
    args += ["--model", "tiny-random", "--max_frames", "24", "--loop_n", "3", "--width", "128", "--height", "56"]
    args += [
        "--steps",
        "4",
        "--seed",
        "7",
        "--no-fix_seed",
        "--denoising_strength",
        "0.5",
        "--superimpose_alpha",
        "0.5",
    ]
    args += ["--temporal_superimpose_method", method, "--temporal_superimpose_alpha_list", weights]
    args += ["--no-save_every_loop"]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
    return json.loads(next(out.iterdir()).joinpath("report.json").read_text())


class TextureFlicker:
    """img2img's flicker without a model: the init image plus a seeded smooth texture."""

    name = "texture-flicker"

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        pass

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        import cv2

        rng = np.random.default_rng(request.seed)
        pattern = cv2.GaussianBlur(rng.standard_normal(request.init_image.shape).astype(np.float32), (0, 0), 4)
        image = request.init_image + 0.06 * pattern / (pattern.std() + 1e-6)
        return [np.clip(image, 0, 1).astype(np.float32)] * request.image_count


def run_stand_in(method: str, weights: str, out: Path) -> dict:
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    settings = Settings(input_directory=str(clip_path("bikes.mp4")), output_directory=str(out), max_frames=24,
                        loop_n=3, width=320, height=136, seed=7, fix_seed=False, superimpose_alpha=0.5,
                        temporal_superimpose_method=method, temporal_superimpose_alpha_list=weights,
                        save_every_loop=False)  # fmt: skip
    return Engine(settings, TextureFlicker()).run().report


def table(reports: dict[str, dict]) -> None:
    source = next(iter(reports.values()))["e_warp_source"]
    print(f"E_warp of the input frames: {source:.2e}\n")
    print("| loop | " + " | ".join(f"{label}: E_warp (PSNR vs input)" for label in reports) + " |")
    print("|---" * (len(reports) + 1) + "|")
    for loop in range(3):
        cells = [f"{r['loops'][loop]['e_warp']:.2e} ({r['loops'][loop]['psnr']:.1f} dB)" for r in reports.values()]
        print(f"| {loop + 1} | " + " | ".join(cells) + " |")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-motion-runs-"))
    print("tiny-random (command line):")
    table({label: run(method, weights, tmp / str(k)) for k, (method, weights, label) in enumerate(METHODS)})
    print("\nimg2img-like stand-in (texture flicker):")
    table({label: run_stand_in(m, w, tmp / f"s{k}") for k, (m, w, label) in enumerate(METHODS)})


if __name__ == "__main__":
    main()
