"""Hostile and broken input for the command line, as a table: what each case gives and what
the user must read back. tests/test_hostile_input.py runs every case; bench/hostile_input.py
runs each in its own process and measures its time and memory.

Each case is refused with exit code 2, a message that names the setting (or file) and its
value, before any run folder or model exists.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_FILTER_COST = "lambda img: img.filter(ImageFilter.MedianFilter(299)) if loop_i > 0 else img"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the class of fault, as the issue groups them
    argv: tuple[str, ...]  # {name} is replaced by the path of input `name`
    expect: tuple[str, ...]  # all must appear in the error message


def _run(source: str, *flags: str) -> tuple[str, ...]:
    return ("run", "{" + source + "}", "-o", "{out}", "--model", "tiny-random", "--loop_n", "1", *flags)


def _schedule(name: str, field: str, text: str, *expect: str) -> Case:
    return Case(name, "schedule sandbox", _run("image", f"--{field}", text), (field, *expect))


def _config(name: str, config: str, *expect: str) -> Case:
    argv = ("run", "--config", "{" + config + "}", "-o", "{out}", "--model", "tiny-random")
    return Case(name, "config", argv, expect)


CASES: tuple[Case, ...] = (
    # The sandbox bounds the cost of an operation before it runs, in every schedule.
    _schedule("bytes repeated to 1 GB", "denoising_schedule", "b'a'*10**9", "10,000"),
    _schedule("% format 1 GB wide", "denoising_schedule", "'%1000000000s' % 'x'", "% format"),
    _schedule("1 GB built, result small", "cfg_schedule", "len(b'a'*10**9)*0 + 7", "10,000"),
    _schedule(
        "comparison of 10^12 items",
        "superimpose_alpha_schedule",
        "[[[0]*10000]*10000]*10000 == [[[0]*10000]*10000]*10000",
        "100,000 values",
    ),
    _schedule("printing 10^12 items", "prompt_schedule", "str([[[0]*10000]*10000]*10000)", "100,000 values"),
    _schedule("round to -10^9 digits", "seed_schedule", "round(1, -10**9)", "round()"),
    _schedule("lambda calling itself", "step_schedule", "(lambda f: f(f))(lambda f: f(f))", "deep"),
    _schedule("import", "subseed_schedule", "__import__('os').system('touch pwned')", "'__import__'"),
    _schedule("string of 10^9", "negative_prompt_schedule", "'x' * 10**9", "10,000"),
    _schedule("sum of lists", "temporal_superimpose_schedule", "sum([[1]*100]*100, [])", "sum()"),
    _schedule("power tower", "batch_count_schedule", "9**9**9", "too large"),
    _schedule("huge range", "subseed_strength_schedule", "len(range(10**12))", "range"),
    Case(
        "median filter on a large frame",
        "schedule sandbox",
        _run("image", "--width", "1024", "--height", "768", "--image_post_processing_schedule", IMAGE_FILTER_COST),
        ("image_post_processing_schedule", "refused", "MedianFilter(299)", "at most 9"),
    ),
    # The size of the job, checked before it starts.
    Case("a billion loops", "plan bounds", _run("image", "--loop_n", "1000000000"), ("loop_n", "from 1 to 1,000")),
    Case(
        "a million generations",
        "plan bounds",
        _run("image", "--max_frames", "2000", "--loop_n", "1000"),
        ("loop_n", "2,000,000 generations"),
    ),
    Case("ten million copies of an image", "plan bounds", _run("image", "--max_frames", "10000000"), ("max_frames",)),
    Case("cfg_scale 1e308", "plan bounds", _run("image", "--cfg_scale", "1e308"), ("cfg_scale", "-100 to 100")),
    Case("width 1", "plan bounds", _run("image", "--width", "1"), ("width", "16 to 8192")),
    Case("height 1", "plan bounds", _run("image", "--height", "1"), ("height", "16 to 8192")),
    Case("a 1x1 image at its own size", "plan bounds", _run("one_pixel"), ("width", "1x1", "each side")),
    Case("steps 100000", "plan bounds", _run("image", "--steps", "100000"), ("steps", "from 1 to 1,000")),
    Case("seed above 32 bits", "plan bounds", _run("image", "--seed", str(2**40)), ("seed", "-1 to 4,294,967,295")),
    Case("crf 60 for mp4", "plan bounds", _run("image", "--crf", "60"), ("crf", "0 to 51")),
    Case(
        "GIF at 1000 fps",
        "plan bounds",
        _run("image", "--output_format", "gif", "--output_frame_rate", "1000"),
        ("output_frame_rate", "GIF"),
    ),
    Case("GIF of a 60 fps clip", "plan bounds", _run("clip60", "--output_format", "gif"), ("output_frame_rate", "60")),
    # Input files, every one checked from its header before the run folder exists.
    Case("12000x12000 PNG", "input files", _run("huge_png"), ("input_directory", "12000x12000", "40,000,000")),
    Case("PNG declaring 10^10 pixels", "input files", _run("bomb_png"), ("input_directory", "179 million")),
    Case("damaged frame mid-folder", "input files", _run("junk_mid"), ("000003.png", "cannot be read")),
    Case("zero-byte frame mid-folder", "input files", _run("empty_mid"), ("000003.png", "zero-byte")),
    Case("frame cut short mid-folder", "input files", _run("cut_mid"), ("000003.png", "cannot be read")),
    Case("video cut short", "input files", _run("cut_video"), ("input_directory", "cut.mp4")),
    Case(
        "mask cut short mid-folder",
        "input files",
        _run("frames", "--use_mask", "--mask_directory", "{cut_masks}"),
        ("mask_directory", "000003.png", "cannot be read"),
    ),
    Case(
        "reference frame cut short mid-folder",
        "input files",
        _run("frames", "--reference_frames_directory", "{cut_mid}"),
        ("reference_frames_directory", "000003.png", "cannot be read"),
    ),
    Case("NaN pixels in a float TIFF", "input files", _run("nan_tiff"), ("nan.tif", "NaN")),
    Case("audio-only file", "input files", _run("audio_only"), ("input_directory", "no video stream")),
    Case("missing input", "input files", _run("missing"), ("input_directory", "does not exist")),
    # --config with wrong types or unknown keys (the files are made by make_inputs).
    _config("seed 'abc'", "config_seed", "seed", "'abc'", "whole number"),
    _config("prompt 7", "config_prompt", "prompt", "7", "text"),
    _config("crf true", "config_crf", "crf", "True", "whole number"),
    _config("settings_version '2'", "config_version", "settings_version", "'2'"),
    _config("a misspelt key", "config_typo", "denoising_strenght", "did you mean denoising_strength"),
    # Nothing overwritten.
    Case(
        "metrics --plot over the measured clip",
        "no overwrite",
        ("metrics", "{clip}", "--source", "{clip}", "--plot", "{clip}"),
        ("--plot", "already exists"),
    ),
    Case(
        "smooth -o into the input folder",
        "no overwrite",
        ("smooth", "{frames}", "-o", "{frames}/smoothed"),
        ("--output", "inside the input"),
    ),
    Case("metrics of one frame", "no overwrite", ("metrics", "{image}", "--source", "{image}"), ("output", "1 frame")),
)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares its size and holds almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    path.write_bytes(body + chunk(b"IEND", b""))
    return path


def _frames_folder(path: Path, count: int = 5) -> Path:
    path.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path / f"{i + 1:06d}.png")
    return path


def make_inputs(root: Path) -> dict[str, str]:
    """Every input the cases name, made under root (the inputs are small; none is a real bomb)."""
    from conftest import make_clip, numbered_frames

    root.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"out": root / "out", "missing": root / "nothing-here.mp4"}
    image = root / "still.png"
    Image.fromarray(numbered_frames(1, 64, 48)[0]).save(image)
    paths["image"] = image
    paths["one_pixel"] = root / "pixel.png"
    Image.new("RGB", (1, 1), (9, 9, 9)).save(paths["one_pixel"])
    paths["huge_png"] = _png_header_only(root / "huge.png", 12000, 12000)
    paths["bomb_png"] = _png_header_only(root / "bomb.png", 100_000, 100_000)
    paths["frames"] = _frames_folder(root / "frames")
    paths["junk_mid"] = _frames_folder(root / "junk_mid")
    (paths["junk_mid"] / "000003.png").write_bytes(b"this is not a picture at all" * 10)
    paths["empty_mid"] = _frames_folder(root / "empty_mid")
    (paths["empty_mid"] / "000003.png").write_bytes(b"")
    paths["cut_mid"] = _frames_folder(root / "cut_mid")
    whole = (paths["cut_mid"] / "000003.png").read_bytes()
    (paths["cut_mid"] / "000003.png").write_bytes(whole[: len(whole) // 2])
    paths["cut_masks"] = _frames_folder(root / "cut_masks")  # grey levels: white is repainted
    whole = (paths["cut_masks"] / "000003.png").read_bytes()
    (paths["cut_masks"] / "000003.png").write_bytes(whole[: len(whole) // 2])
    clip = make_clip(root / "clip.mp4", numbered_frames(12, 64, 48))
    paths["clip"] = clip
    data = clip.read_bytes()
    (root / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    paths["cut_video"] = root / "cut.mp4"
    paths["clip60"] = make_clip(root / "clip60.mp4", numbered_frames(4, 64, 48), fps=60)
    nan = np.full((48, 64), 0.5, dtype=np.float32)
    nan[10:20, 10:20] = np.nan
    paths["nan_tiff"] = root / "nan.tif"
    Image.fromarray(nan, "F").save(paths["nan_tiff"])
    paths["audio_only"] = _audio_only(root / "sound.m4a")
    for name, changes in {
        "config_seed": {"seed": "abc"},
        "config_prompt": {"prompt": 7},
        "config_crf": {"crf": True},
        "config_version": {"settings_version": "2"},
        "config_typo": {"denoising_strenght": 0.3},
    }.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps({"input_directory": str(image), "loop_n": 1, **changes}))
    return {name: str(path) for name, path in paths.items()}


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def argv_for(case: Case, inputs: dict[str, str]) -> list[str]:
    return [part.format(**inputs) for part in case.argv]
