"""Frames per call: throughput of the diffusers backend with several frames in one call, and
the extension's share of the wall time, through the real engine.

    .venv/bin/python bench/frames_per_call.py                 # tiny-random on the CPU, 128x128
    python bench/frames_per_call.py --sd15 --size 512         # a GPU: an SD1.5-shaped random model, fp16

--sd15 builds a randomly initialised model of SD1.5's shapes (UNet 320-640-1280-1280 with 768-wide
cross-attention, the 4-level VAE, a 12-layer 768-wide text encoder over a byte tokenizer), saves it
as a diffusers folder and loads it through the backend as a user's model is loaded (CUDA, fp16).
Weights are random, so the images are noise, but every operation has SD1.5's size.

Each configuration runs the engine over a synthetic clip: 2 loops, window 1,2,3,2,1, 20 steps at
denoising 0.5 (10 sampled steps, as the WebUI counts), batch_size 1, a seed per frame, report and
video on. Reported: frames per second over both loops (setup and model loading excluded: a warm-up
run comes first), the backend's time, and the extension's share: (wall - backend) / wall.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, synthetic_clip

sys.path.insert(0, str(ROOT))


def sd15_shaped_model(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lib_videoloop.backends.tiny import byte_tokenizer

    tokenizer = byte_tokenizer()
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=512,
        )  # fmt: skip
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
            )
        )  # fmt: skip
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.to(torch.float16).save_pretrained(folder)
    return folder


class Timed:
    """The backend, with the time spent inside it and the frames per call it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.seconds, self.calls = inner, inner.name, 0.0, []

    def check(self, uses_subseed: bool, uses_mask: bool) -> None:
        self.inner.check(uses_subseed, uses_mask)

    def frames_per_call(self, request, setting: int) -> int:
        return self.inner.frames_per_call(request, setting)

    def _timed(self, fn, arg, frames: int):
        import torch

        started = time.perf_counter()
        out = fn(arg)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - started
        self.calls.append(frames)
        return out

    def generate(self, request):
        return self._timed(self.inner.generate, request, 1)

    def generate_frames(self, requests):
        return self._timed(self.inner.generate_frames, requests, len(requests))


def run(backend: Timed, clip: Path, out: Path, size: int, *, frames: int, frames_per_call: int) -> dict:
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    backend.seconds, backend.calls = 0.0, []
    settings = Settings(
        input_directory=str(clip), output_directory=str(out), width=size, height=size, max_frames=frames, loop_n=2,
        temporal_superimpose_alpha_list="1,2,3,2,1", steps=20, denoising_strength=0.5, fix_seed=False,
        prompt="a watercolour street", frames_per_call=frames_per_call,
    )  # fmt: skip
    started = time.perf_counter()
    Engine(settings, backend).run()
    wall = time.perf_counter() - started
    return {"wall": wall, "backend": backend.seconds, "fps": 2 * frames / wall, "calls": len(backend.calls)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sd15", action="store_true", help="an SD1.5-shaped random model (for a GPU)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--per-call", default="1,4,8")
    args = parser.parse_args()
    import torch

    from lib_videoloop.backends.diffusers_backend import DiffusersBackend

    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    model = str(sd15_shaped_model(tmp / "sd15-random")) if args.sd15 else "tiny-random"
    backend = Timed(DiffusersBackend(model))
    clip = synthetic_clip(tmp / "clip.mp4", args.frames, size=args.size)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{model if not args.sd15 else 'SD1.5-shaped random model'} on {device}, {args.size}x{args.size}, "
          f"{args.frames} frames x 2 loops")  # fmt: skip
    for n in (8, 1):  # warm-up: model loading, kernels chosen for both batch shapes
        run(backend, clip, tmp / f"warm{n}", args.size, frames=8, frames_per_call=n)
    print("| frames per call | calls | frames/s | backend s | wall s | extension's share | peak GPU memory |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for n in (int(x) for x in args.per_call.split(",")):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        row = run(backend, clip, tmp / f"fpc{n}", args.size, frames=args.frames, frames_per_call=n)
        base = base or row["fps"]
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else "-"
        print(f"| {n} | {row['calls']} | {row['fps']:.2f} ({row['fps'] / base:.2f}x) | {row['backend']:.1f} "
              f"| {row['wall']:.1f} | {100 * (row['wall'] - row['backend']) / row['wall']:.1f}% | {peak} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
