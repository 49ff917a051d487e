"""The flicker report of a run (report.json, flicker.png) and its plain-text summary.

The plot is drawn with Pillow (already a dependency) rather than a plotting library.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lib_videoloop.media.images import write_atomic
from lib_videoloop.metrics import FlickerMeter, FlickerResult
from lib_videoloop.motion import PairFlow

COLOURS = [
    (90, 90, 90),
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
]


def plot_series(
    series: dict[str, list[float | None]], path: str | Path, title: str, y_label: str = "warp error"
) -> Path:
    """A line plot, one line per series (x: frame pair, y: value), written atomically as PNG."""
    buffer = io.BytesIO()
    render_series(series, title, y_label).save(buffer, format="PNG")
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def x_ticks(count: int, most: int = 10) -> list[int]:
    """1-based positions to label: every one up to `most`, else 1 and the multiples of an even
    step (1, 2 or 5 times a power of ten), so the gaps between labels are all alike."""
    if count <= most:
        return list(range(1, count + 1))
    step = next(m * 10**e for e in range(12) for m in (1, 2, 5) if count / (m * 10**e) <= most)
    return [1, *range(step, count + 1, step)]


def _axis_number(value: float, top: float) -> str:
    """Plain decimals where they read well (0.42, 35, 1200), powers of ten for tiny or huge ranges."""
    if top == 0 or 0.01 <= abs(top) < 1e5:
        return f"{value:.3g}" if abs(top) >= 1 else f"{value:.3f}".rstrip("0").rstrip(".") or "0"
    return f"{value:.2e}"


def render_series(
    series: dict[str, list[float | None]],
    title: str,
    y_label: str = "warp error",
    x_label: str = "frame pair",
    height: int = 420,
) -> Image.Image:
    """The plot as an image: x is the position in each list, y the value (None leaves a gap)."""
    width, left, right, top, bottom = 900, 80, 200, 40, 50
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top_value = max(values) * 1.05 if values and max(values) > 0 else 1.0
    count = max((len(s) for s in series.values()), default=1)
    pw, ph = width - left - right, height - top - bottom
    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    # The title on its own line, the y axis's name on the next, above the axis: never on top of each other.
    draw.text((left, 4), title, fill=(0, 0, 0))
    draw.text((6, top - 20), y_label, fill=(0, 0, 0))
    draw.text((left + pw // 2 - 30, height - 22), x_label, fill=(0, 0, 0))
    for k in range(5):
        y = top + ph - k * ph / 4
        draw.line([left - 4, y, left, y], fill=(0, 0, 0))
        draw.text((6, y - 6), _axis_number(top_value * k / 4, top_value), fill=(0, 0, 0))
    for label in x_ticks(count):
        x = left + (label - 1) * pw / max(count - 1, 1)
        draw.line([x, top + ph, x, top + ph + 3], fill=(0, 0, 0))
        draw.text((x - 4, top + ph + 6), str(label), fill=(0, 0, 0))
    for n, (name, points) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        segment: list[tuple[float, float]] = []
        for i, v in enumerate(points):
            if v is None or not math.isfinite(v):
                _line(draw, segment, colour)
                segment = []
                continue
            segment.append((left + (i * pw / max(count - 1, 1)), top + ph - min(v / top_value, 1.0) * ph))
        _line(draw, segment, colour)
        ly = top + 10 + n * 18
        draw.line([left + pw + 15, ly + 6, left + pw + 40, ly + 6], fill=colour, width=3)
        draw.text((left + pw + 45, ly), name, fill=(0, 0, 0))
    return img


def _line(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    elif len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)


def write_plot(report: dict[str, Any], path: str | Path) -> Path:
    """Plot of the `metrics` command: the output's and the source's per-pair warp error."""
    return plot_series(
        {"source": report["per_frame_source"], "output": report["per_frame"]},
        path,
        "Warp error per frame pair (lower: less flicker)",
    )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Plain-text lines for the terminal and the WebUI's info text."""
    if "loops" in report:
        lines = [f"Flicker (warp error; source clip {report['e_warp_source']:.3e}):"]
        for entry in report["loops"]:
            lines.append(
                f"  loop {entry['loop']}: E_warp {entry['e_warp']:.3e}, "
                f"PSNR vs input {entry['psnr']:.2f} dB, SSIM vs input {entry['ssim']:.3f}"
            )
            if "generations" in entry:  # keyframe mode
                lines.append(
                    f"    {entry['generations']} generations ({entry['keyframes']} keyframes,"
                    f" {entry['repaired_frames']} frames repaired, {entry['repaired_share']:.1%} of all pixels)"
                )
        lines.append(f"  (measured in {report['seconds']:.1f} s)")
        return lines
    lines = [
        f"E_warp output: {report['e_warp']:.4e}",
        f"E_warp source: {report['e_warp_source']:.4e}",
        f"tOF:           {report['tof']:.4f}",
    ]
    if "psnr" in report:
        lines += [f"PSNR:          {report['psnr']:.2f} dB", f"SSIM:          {report['ssim']:.4f}"]
    if report.get("skipped_pairs"):
        lines.append(f"({report['skipped_pairs']} of {report['pairs']} frame pairs left out: across a scene cut)")
    return lines


def report_meter(
    flows: Callable[[int], PairFlow] | None = None,
    source_errors: dict[int, float] | None = None,
    fidelity_pool: Executor | None = None,
) -> FlickerMeter:
    """How a run's report measures a loop: motion from the input (`flows`, when the run has them
    already), fidelity to it (on `fidelity_pool`, when given). tOF is left to the metrics
    command: its two Farneback flows would double the cost. source_errors: the input's own warp
    errors, kept from loop to loop."""
    return FlickerMeter(
        fidelity_to_source=True, with_tof=False, flows=flows, source_errors=source_errors, fidelity_pool=fidelity_pool
    )


class RunReport:
    """Adds one loop at a time to report.json and flicker.png in the run folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "report.json"
        self.data: dict[str, Any] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {"loops": [], "seconds": 0.0}
        )

    def add_loop(
        self, loop: int, result: FlickerResult, seconds: float, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Adds one loop's measurement against the input frames (report_meter), which took
        `seconds` to make, and draws the plot again."""
        self.data["e_warp_source"] = result.e_warp_source
        self.data["per_frame_source"] = [None if math.isnan(v) else v for v in result.per_frame_source]
        self.data["loops"] = [e for e in self.data["loops"] if e["loop"] != loop] + [
            {
                "loop": loop, "e_warp": result.e_warp, "psnr": result.psnr, "ssim": result.ssim,
                "skipped_pairs": result.skipped_pairs, "per_frame": [None if math.isnan(v) else v for v in result.per_frame],
                **(extra or {}),
            }
        ]  # fmt: skip
        self.data["loops"].sort(key=lambda e: e["loop"])
        self.data["seconds"] = self.data.get("seconds", 0.0) + seconds
        write_atomic(self.path, json.dumps(self.data, indent=2).encode("utf-8"))
        series: dict[str, list[float | None]] = {"source": self.data["per_frame_source"]}
        for entry in self.data["loops"]:
            series[f"loop {entry['loop']}"] = entry["per_frame"]
        plot_series(series, self.root / "flicker.png", "Warp error per frame pair, by loop (lower: less flicker)")
        return self.data
