"""Time and memory of every hostile-input case (tests/hostile_cases.py), each in its own process.

Target (issue: hostile input): each case ends with its message within 2 s and 300 MB over the
process's baseline. The baseline is a run refused by the very first check (loop_n 0): the same
interpreter and imports, no work. Wall time includes interpreter start and imports, as a user
sees it. The memory of the schedule check's child process is measured separately (children).

    .venv/bin/python bench/hostile_input.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hostile_cases import CASES, argv_for, make_inputs  # noqa: E402


def measure(argv: list[str]) -> tuple[int, float, float, float]:
    """(exit code, seconds, peak RSS MB of the process, peak RSS MB of its children)."""
    code = (
        "import resource, sys\n"
        "from lib_videoloop.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(f'\\nKIDS {kids}')\n"
        "sys.exit(rc)\n"
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    out = proc.stdout.read() if proc.stdout else ""
    kids = next((float(line.split()[1]) for line in out.splitlines() if line.startswith("KIDS ")), 0.0)
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, kids


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "inputs")
        base_argv = ["run", inputs["image"], "-o", inputs["out"], "--model", "tiny-random", "--loop_n", "0"]
        _, base_s, base_mb, _ = measure(base_argv)
        print(f"baseline (refused at the first check): {base_s:.2f} s, {base_mb:.0f} MB\n")
        print(f"| {'case':<36} | {'class':<17} | exit | seconds | MB over baseline | child MB |")
        print(f"|{'-' * 38}|{'-' * 19}|------|---------|------------------|----------|")
        worst_s = worst_mb = 0.0
        for case in CASES:
            rc, seconds, mb, kids = measure(argv_for(case, inputs))
            over = mb - base_mb
            worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, over)
            print(f"| {case.name:<36} | {case.kind:<17} | {rc:>4} | {seconds:>7.2f} | {over:>16.0f} | {kids:>8.0f} |")
        print(f"\nworst: {worst_s:.2f} s, {worst_mb:.0f} MB over the baseline ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
