"""What each (frame, loop) gets: schedule values, checked types and ranges, and seeds.

The planner evaluates every schedule for every frame and loop before the first generation
(check_all), so a typo in a schedule is reported in a second, not after an hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from lib_videoloop.config import (
    MAX_BATCH,
    RANGES,
    SCHEDULE_FIELDS,
    Settings,
    temporal_weights,
)
from lib_videoloop.errors import VideoLoopError, short
from lib_videoloop.sampling import Sampling
from lib_videoloop.schedule_sandbox import Expression, ScheduleRefused, base_scope


@dataclass
class FramePlan(Sampling):
    """One (frame, loop): what to ask the backend for, and how to blend what comes back."""

    frame: int  # 0-based
    loop: int  # 1-based
    superimpose_alpha: float
    temporal_weights: list[float]
    temporal_filter_strength: float
    post_process: Callable[[Image.Image], Image.Image] | None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


class _Check:
    """A number schedule's check, from the range of the setting it replaces (config.RANGES). A
    scheduled seed is drawn, never -1, so its range starts at 0."""

    def __init__(self, setting: str, kind: type) -> None:
        low, high, _fix = RANGES[setting]
        self.low, self.high, self.kind = max(low, 0) if setting in ("seed", "subseed") else low, high, kind
        self.expected = f"a {'whole ' if kind is int else ''}number from {self.low:g} to {self.high:g} ({setting})"

    def __call__(self, value: Any) -> bool:
        ok = _whole(value) if self.kind is int else _number(value)
        return ok and self.low <= value <= self.high


class _Text:
    """A prompt schedule's check."""

    expected = "text"

    def __call__(self, value: Any) -> bool:
        return isinstance(value, str)


_TEXT = _Text()

# schedule: the setting it replaces and the value's type. Unscheduled seeds follow fix_seed,
# through frames and loops (plans()).
_NUMBER_SCHEDULES: dict[str, tuple[str, type]] = {
    "subseed_strength_schedule": ("subseed_strength", float),
    "denoising_schedule": ("denoising_strength", float),
    "step_schedule": ("steps", int),
    "cfg_schedule": ("cfg_scale", float),
    "superimpose_alpha_schedule": ("superimpose_alpha", float),
    "temporal_filter_schedule": ("temporal_filter_strength", float),
    "seed_schedule": ("seed", int),
    "subseed_schedule": ("subseed", int),
}
_CHECKS = {schedule: _Check(setting, kind) for schedule, (setting, kind) in _NUMBER_SCHEDULES.items()}


class Planner:
    def __init__(
        self,
        settings: Settings,
        frame_count: int,
        txt_prompts: list[tuple[str | None, str | None]] | None = None,
        *,
        frame_pixels: int = 0,
    ) -> None:
        self.s = settings
        self.frame_count = frame_count
        self.txt_prompts = txt_prompts
        self.expressions = {
            name: Expression(name, getattr(settings, name))
            for name in SCHEDULE_FIELDS
            if str(getattr(settings, name) or "").strip()
        }
        self.scope = base_scope(frame_count, settings.loop_n, frame_pixels)
        self.base_weights = temporal_weights(settings.temporal_superimpose_alpha_list)
        self._probe = Image.new("RGB", (8, 8), (128, 128, 128))

    def _eval(self, name: str, image_i: int, loop_i: int) -> Any:
        scope = dict(self.scope, image_i=image_i, loop_i=loop_i)
        return self.expressions[name](scope, frame=image_i, loop=loop_i)

    def _fail(self, name: str, value: Any, expected: str, image_i: int, loop_i: int) -> VideoLoopError:
        return VideoLoopError(
            name,
            self.s.__dict__[name],
            f"gave {short(value)}, expected {expected}",
            "Fix the expression for this frame and loop",
            frame=image_i,
            loop=loop_i,
        )

    def _scheduled(self, name: str, default: Any, image_i: int, loop_i: int, check: _Check | _Text) -> Any:
        if name not in self.expressions:
            return default
        value = self._eval(name, image_i, loop_i)
        if not check(value):
            raise self._fail(name, value, check.expected, image_i, loop_i)
        return value

    def filter_strength(self, frame: int, loop: int) -> float:
        """temporal_filter_strength of one frame: the filter needs a whole loop's before its first frame."""
        check = _CHECKS["temporal_filter_schedule"]
        value = self._scheduled("temporal_filter_schedule", self.s.temporal_filter_strength, frame + 1, loop, check)
        return float(value)

    def values(self, frame: int, loop: int) -> dict[str, Any]:
        """Every scheduled value of one frame, checked (seed and subseed None when not scheduled)."""
        s = self.s
        i, k = frame + 1, loop
        v: dict[str, Any] = {}
        for schedule, (key, kind) in _NUMBER_SCHEDULES.items():
            default = None if key in ("seed", "subseed") else getattr(s, key)
            check = _CHECKS[schedule]
            value = self._scheduled(schedule, default, i, k, check)
            v[key] = None if value is None else kind(value)
        if "temporal_superimpose_schedule" in self.expressions:
            raw = self._eval("temporal_superimpose_schedule", i, k)
            try:
                v["temporal_weights"] = temporal_weights(raw, "temporal_superimpose_schedule")
            except VideoLoopError as exc:
                raise self._fail(
                    "temporal_superimpose_schedule", raw, f"an odd-length list of weights ({exc.problem})", i, k
                ) from None
        else:
            v["temporal_weights"] = self.base_weights
        prompt = self._scheduled("prompt_schedule", s.prompt, i, k, _TEXT)
        negative = self._scheduled("negative_prompt_schedule", s.negative_prompt, i, k, _TEXT)
        if self.txt_prompts is not None:
            txt_prompt, txt_negative = self.txt_prompts[frame]
            prompt = txt_prompt if txt_prompt is not None else prompt
            negative = txt_negative if txt_negative is not None else negative
        v["prompt"], v["negative_prompt"] = prompt, negative
        n_iter, batch_size = s.n_iter, s.batch_size
        if "batch_count_schedule" in self.expressions:
            raw = self._eval("batch_count_schedule", i, k)
            if _whole(raw) and 1 <= raw <= MAX_BATCH:
                n_iter = int(raw)
            elif (
                isinstance(raw, (tuple, list)) and len(raw) == 2 and all(_whole(x) and 1 <= x <= MAX_BATCH for x in raw)
            ):
                n_iter, batch_size = int(raw[0]), int(raw[1])
            else:
                raise self._fail(
                    "batch_count_schedule",
                    raw,
                    f"a batch count from 1 to {MAX_BATCH}, or a (batch count, batch size) pair",
                    i,
                    k,
                )
        v["n_iter"], v["batch_size"] = n_iter, batch_size
        v["post_process"] = self._post_process(i, k)
        return v

    def _post_process(self, i: int, k: int) -> Callable[[Image.Image], Image.Image] | None:
        name = "image_post_processing_schedule"
        if name not in self.expressions:
            return None
        expression = self.expressions[name]
        value = self._eval_with_image(expression, self._probe, i, k)
        if callable(value):
            fn = value

            def apply(img: Image.Image) -> Image.Image:
                try:
                    out = fn(img)
                except VideoLoopError:
                    raise
                except ScheduleRefused as exc:
                    raise VideoLoopError(
                        name, expression.source, f"refused: {exc}", "Rewrite the expression", frame=i, loop=k
                    ) from None
                except Exception as exc:
                    raise VideoLoopError(
                        name,
                        expression.source,
                        f"failed with {type(exc).__name__}: {short(exc, quote=False)}",
                        "Fix the expression",
                        frame=i,
                        loop=k,
                    ) from None
                if not isinstance(out, Image.Image):
                    raise self._fail(name, out, "an image (lambda img: ... must return img or a filtered img)", i, k)
                return out

            apply(self._probe)  # checked now, on a small image, so a bad lambda fails before any work
            return apply
        if isinstance(value, Image.Image):
            # An expression using `img` directly, e.g. img.filter(ImageFilter.SMOOTH).
            return lambda img: self._eval_with_image(expression, img, i, k)
        raise self._fail(name, value, "a function of the image, e.g. lambda img: img.filter(ImageFilter.SMOOTH)", i, k)

    def _eval_with_image(self, expression: Expression, img: Image.Image, i: int, k: int) -> Any:
        scope = dict(self.scope, image_i=i, loop_i=k, img=img)
        return expression(scope, frame=i, loop=k)

    def check_all(self) -> int:
        """Evaluates every (frame, loop); returns the number of images that will be generated."""
        return sum(count for _, _, _, count in self.walk())

    def walk(self) -> Iterator[tuple[int, int, dict[str, Any], int]]:
        """(loop, frame, values, images) in the order of generation: every frame of a loop first."""
        for loop in range(1, self.s.loop_n + 1):
            for frame in range(self.frame_count):
                v = self.values(frame, loop)
                yield loop, frame, v, v["n_iter"] * v["batch_size"]

    def plans(self, base_seed: int, base_subseed: int) -> Iterator[FramePlan]:
        """Plans with seeds. Without a fixed seed or a schedule, the seed advances by the number
        of images of each frame, through frames and loops, as in the original script."""
        seed_offset = 0
        for loop, frame, v, count in self.walk():
            seed = v.pop("seed")
            subseed = v.pop("subseed")
            if seed is None:
                seed = base_seed if self.s.fix_seed else base_seed + seed_offset
            if subseed is None:
                subseed = base_subseed if self.s.fix_subseed else base_subseed + seed_offset
            seed_offset += count
            yield FramePlan(frame=frame, loop=loop, seed=int(seed) % 2**32, subseed=int(subseed) % 2**32, **v)


def uses_subseed(settings: Settings) -> bool:
    """Whether any frame asks for a variation seed (which not every backend has)."""
    return settings.subseed_strength > 0 or bool(settings.subseed_strength_schedule.strip())


def uses_mask(settings: Settings) -> bool:
    """Whether any generation inpaints: the user's masks, or keyframe mode's repairs."""
    return settings.use_mask or (settings.keyframe_mode != "off" and settings.keyframe_repair)


def read_txt_prompts(paths: list[Any]) -> list[tuple[str | None, str | None]]:
    """Prompt and negative prompt from <frame>.txt beside each frame; ' --neg ' separates them."""
    prompts: list[tuple[str | None, str | None]] = []
    for path in paths:
        txt = path.with_suffix(".txt") if path is not None else None
        if txt is None or not txt.is_file():
            prompts.append((None, None))
            continue
        text = txt.read_text(encoding="utf-8", errors="replace").strip()
        if " --neg " in text:
            positive, negative = text.split(" --neg ", 1)
            prompts.append((positive.strip(), negative.strip()))
        else:
            prompts.append((text, None))
    return prompts
