"""The up-front check of every schedule, run in a child process with a memory and a time cap.

The sandbox (schedule_sandbox.py) bounds every operation it knows to be costly before it runs. This is
the last line of defence for anything it does not know: the check of all (frame, loop) pairs
runs in a separate Python process, so a runaway ends that process with a message, never the
command line or the WebUI serving other people. Settings go to the child as JSON on stdin;
nothing reaches a shell.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lib_videoloop.config import Settings
from lib_videoloop.errors import VideoLoopError

log = logging.getLogger(__name__)

CHECK_SECONDS = 120.0  # the whole plan; a legal plan of the largest size checks in well under this
CHECK_MEMORY_MB = 1024  # above the child's own footprint after its imports

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def check_plan_isolated(
    settings: Settings,
    frame_count: int,
    txt_prompts: list[tuple[str | None, str | None]] | None,
    frame_pixels: int,
    *,
    timeout_s: float = CHECK_SECONDS,
    memory_mb: int = CHECK_MEMORY_MB,
) -> int:
    """Evaluates every schedule for every (frame, loop) in a child process.

    Returns the number of images the run will generate; raises the child's VideoLoopError, or
    one naming the schedules when the child runs out of time or memory."""
    from lib_videoloop.config import SCHEDULE_FIELDS

    if not any(str(getattr(settings, name) or "").strip() for name in SCHEDULE_FIELDS):
        # No expression to evaluate, so nothing to isolate: a child would only cost its start-up
        # (about 0.25 s) before the first generation.
        return _check(settings, frame_count, txt_prompts, frame_pixels)
    payload = json.dumps(
        {
            "settings": settings.to_dict(),
            "frame_count": frame_count,
            "txt_prompts": txt_prompts,
            "frame_pixels": frame_pixels,
            "memory_mb": memory_mb,
        }
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-m", "lib_videoloop.schedule_isolation"]
    try:
        done = subprocess.run(  # check=False: the answer is read from stdout; a failed child is reported below
            command, input=payload, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=_PACKAGE_ROOT,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _refused(settings, f"checking them for {frame_count} frames took longer than {timeout_s:g} s") from None
    except OSError as exc:  # no child process can be started here: check in this process instead
        log.warning("schedules checked in-process (%s)", exc)
        return _check(settings, frame_count, txt_prompts, frame_pixels)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        # Killed (out of memory at a level below Python's MemoryError), or a fault of ours.
        raise RuntimeError(f"the schedule check ended with code {done.returncode}: {done.stderr[-2000:]}") from None
    if "memory" in answer:
        raise _refused(settings, f"checking them needs more than {memory_mb} MB")
    if "error" in answer:
        e = answer["error"]
        raise VideoLoopError(e["setting"], e["value"], e["problem"], e["fix"], frame=e["frame"], loop=e["loop"])
    return int(answer["images"])


def _refused(settings: Settings, problem: str) -> VideoLoopError:
    from lib_videoloop.config import SCHEDULE_FIELDS

    used = [name for name in SCHEDULE_FIELDS if str(getattr(settings, name) or "").strip()]
    return VideoLoopError(
        ", ".join(used) or "schedules",
        [getattr(settings, name) for name in used],
        problem,
        "Simplify the schedules, or use fewer frames or loops",
    )


def _check(
    settings: Settings, frame_count: int, txt_prompts: list[tuple[str | None, str | None]] | None, frame_pixels: int
) -> int:
    from lib_videoloop.planning import Planner

    prompts = [tuple(x) for x in txt_prompts] if txt_prompts else None
    return Planner(settings, frame_count, prompts, frame_pixels=frame_pixels).check_all()  # type: ignore[arg-type]


def _limit_memory(megabytes: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: the time limit still holds
        return
    pages = int(Path("/proc/self/statm").read_text().split()[0]) if Path("/proc/self/statm").exists() else 0
    current = pages * os.sysconf("SC_PAGE_SIZE") if pages else 0
    if current:
        limit = current + megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _main() -> None:
    request = json.loads(sys.stdin.read())
    settings = Settings.from_dict(request["settings"])
    import lib_videoloop.planning  # noqa: F401  (imported before the cap, which counts only the check)

    _limit_memory(int(request["memory_mb"]))
    try:
        images = _check(settings, int(request["frame_count"]), request["txt_prompts"], int(request["frame_pixels"]))
        answer: dict[str, Any] = {"images": images}
    except MemoryError:
        answer = {"memory": True}
    except VideoLoopError as exc:
        answer = {
            "error": {
                "setting": exc.setting,
                "value": exc.value if isinstance(exc.value, (str, int, float, bool, type(None))) else repr(exc.value),
                "problem": exc.problem,
                "fix": exc.fix,
                "frame": exc.frame,
                "loop": exc.loop,
            }
        }
    sys.stdout.write(json.dumps(answer) + "\n")  # the answer to the parent, not a log line


if __name__ == "__main__":
    _main()
