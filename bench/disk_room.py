"""The room a run says it needs (its log's "disk:" line) against what its folder takes.

Runs 24 frames of five spans of three clips at 512x512, 2 loops, through the real engine with the benches' texture-flicker stand-in (motion_runs), and
prints the estimate, the folder's size and their ratio.

    .venv/bin/python bench/disk_room.py
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from flicker import clip_path
from motion_runs import TextureFlicker

from lib_videoloop.config import Settings
from lib_videoloop.disk_room import log as disk_log
from lib_videoloop.engine import Engine

# (clip, first frame); the last two spans were not looked at while the estimate was written
CLIPS = [
    ("bikes.mp4", 0),
    ("bigbuckbunny.mp4", 0),
    ("carphone_pristine.mp4", 0),
    ("bikes.mp4", 150),
    ("bigbuckbunny.mp4", 72),
]


class _Said(logging.Handler):
    """The size the "disk:" line gives, in bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.estimate = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        number, unit = re.search(r"about ([\d.]+) (bytes|KB|MB|GB|TB)", record.getMessage()).groups()
        self.estimate = float(number) * {"bytes": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]


def main() -> None:
    print("| clip | said | written | said / written |")
    print("|---|---|---|---|")
    for name, start in CLIPS:
        with tempfile.TemporaryDirectory(prefix="bench-disk-") as out:
            settings = Settings(
                input_directory=str(clip_path(name)), output_directory=out, width=512, height=512, start_frame=start, max_frames=24,
                loop_n=2, temporal_superimpose_alpha_list="1,2,3,2,1", denoising_strength=0.5, seed=1, prompt="x",
            )  # fmt: skip
            said = _Said()
            disk_log.addHandler(said)
            disk_log.setLevel(logging.INFO)
            try:
                run_dir = Engine(settings, TextureFlicker()).run().run_dir
            finally:
                disk_log.removeHandler(said)
            written = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
            print(
                f"| {name} {start}-{start + 23} | {said.estimate / 1e6:.1f} MB | {written / 1e6:.1f} MB | {said.estimate / written:.0%} |"
            )


if __name__ == "__main__":
    main()
