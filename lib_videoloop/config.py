"""The one settings object. The command line, the WebUI panel and settings.json are views of it.

Field names follow the original Video Loopback script so that saved settings and habits carry
over. Each field's ``help`` metadata is the one-line explanation shown by ``--help`` and in the
panel.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lib_videoloop.errors import VideoLoopError

SETTINGS_VERSION = 1

TEMPORAL_METHODS = ("simple", "with difference mask from reference")
DENOISE_METHODS = ("None", "FastDVDNet")
DENOISE_WHEN = ("every loop", "last loop")
VIDEO_FORMATS = ("mp4", "webm", "gif")
RESIZE_MODES = {0: "just resize", 1: "crop and resize", 2: "resize and fill"}

SCHEDULE_FIELDS = (
    "subseed_strength_schedule",
    "denoising_schedule",
    "step_schedule",
    "seed_schedule",
    "subseed_schedule",
    "cfg_schedule",
    "superimpose_alpha_schedule",
    "temporal_superimpose_schedule",
    "prompt_schedule",
    "negative_prompt_schedule",
    "batch_count_schedule",
    "image_post_processing_schedule",
)


def _f(default: Any, help: str, group: str = "", **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class Settings:
    # input and output
    input_directory: str = _f("", "a video file, a folder of frames, or one image", "input")
    output_directory: str = _f("", "where run folders are created (never inside the input)", "input")
    start_frame: int = _f(0, "first frame to use, counted from 0 in the source", "input")
    extract_nth_frame: int = _f(1, "keep every nth frame of the input (1 keeps all)", "input")
    max_frames: int | None = _f(None, "stop after this many frames (empty: all)", "input")
    width: int = _f(0, "frame width in pixels (0: the input's width)", "input")
    height: int = _f(0, "frame height in pixels (0: the input's height)", "input")
    resize_mode: int = _f(0, "0 just resize, 1 crop and resize, 2 resize and fill", "input")
    output_frame_rate: float | None = _f(None, "fps of the video (empty: input fps / extract_nth_frame)", "output")
    output_format: str = _f("mp4", "video format: mp4 (H.264), webm (VP9) or gif", "output")
    crf: int = _f(18, "video quality, lower is better (0-51 for mp4, 0-63 for webm)", "output")
    lossless: bool = _f(False, "encode the video losslessly (large files)", "output")
    keep_audio: bool = _f(True, "copy the input video's sound into the output", "output")
    save_every_loop: bool = _f(True, "also write a video after every loop", "output")
    read_prompt_from_txt: bool = _f(
        False, "use <frame>.txt beside each input frame as its prompt (' --neg ' splits off a negative)", "prompt"
    )
    # loopback
    loop_n: int = _f(10, "number of loops; each loop img2imgs every frame of the previous loop", "loop")
    superimpose_alpha: float = _f(0.25, "how much of the generated image replaces the frame (0-1)", "loop")
    fix_seed: bool = _f(True, "use one seed for every frame", "loop")
    fix_subseed: bool = _f(False, "use one variation seed for every frame", "loop")
    # temporal superimpose
    temporal_superimpose_method: str = _f("simple", "'simple' or 'with difference mask from reference'", "temporal")
    temporal_superimpose_alpha_list: str = _f(
        "1", "odd-length weights of frames i-h..i+h mixed into the init image, e.g. 1,2,1", "temporal"
    )
    difference_threshold: int = _f(
        24, "difference mask: neighbours count only where references differ by at most this (0-255)", "temporal"
    )
    reference_frames_directory: str = _f(
        "", "reference frames (default: the input); several folders separated by !!!", "temporal"
    )
    # masks
    use_mask: bool = _f(False, "inpaint: only change frames inside a mask", "mask")
    mask_directory: str = _f("", "a folder of masks, one mask file, or empty for each frame's alpha channel", "mask")
    mask_threshold: int = _f(127, "mask pixels brighter than this are repainted (0-255)", "mask")
    # generation
    prompt: str = _f("", "prompt", "generation")
    negative_prompt: str = _f("", "negative prompt", "generation")
    seed: int = _f(-1, "seed (-1: random, chosen once and recorded)", "generation")
    subseed: int = _f(-1, "variation seed (-1: random, chosen once and recorded)", "generation")
    subseed_strength: float = _f(0.0, "variation strength (0-1)", "generation")
    denoising_strength: float = _f(0.35, "how far each img2img moves away from its init image (0-1)", "generation")
    steps: int = _f(20, "sampling steps", "generation")
    cfg_scale: float = _f(7.0, "classifier-free guidance scale", "generation")
    sampler_name: str = _f("", "sampler (backend default when empty)", "generation")
    batch_size: int = _f(1, "images per batch; every image is averaged into the frame (batch blend)", "generation")
    n_iter: int = _f(1, "batches per frame (batch count)", "generation")
    # schedules: expressions of image_i and loop_i, empty = use the setting above
    subseed_strength_schedule: str = _f("", "e.g. (sin(pi*image_i/90)+1)/2*0.07", "schedule")
    denoising_schedule: str = _f("", "e.g. 0.4 if loop_i<3 else 0.3", "schedule")
    step_schedule: str = _f("", "e.g. 10 if loop_i<3 else 20", "schedule")
    seed_schedule: str = _f("", "e.g. [111,222,333][image_i//5%3]", "schedule")
    subseed_schedule: str = _f("", "e.g. 112233+image_i*2", "schedule")
    cfg_schedule: str = _f("", "e.g. 7 if image_i in {1,5,7} else 8", "schedule")
    superimpose_alpha_schedule: str = _f("", "e.g. 0.3 if loop_i<3 else 0.2", "schedule")
    temporal_superimpose_schedule: str = _f("", "e.g. [0.1, 0.8, 0.1] if loop_i<=3 else [0, 1, 0]", "schedule")
    prompt_schedule: str = _f("", "e.g. ['1girl,smile','1girl,closed mouth'][image_i//10%2]", "schedule")
    negative_prompt_schedule: str = _f("", "e.g. f'low quality, (blurry:{1.0+loop_i/30})'", "schedule")
    batch_count_schedule: str = _f(
        "", "batch count, or (batch count, batch size), e.g. 5 if loop_i<=5 else 1", "schedule"
    )
    image_post_processing_schedule: str = _f(
        "", "e.g. lambda img: img.filter(ImageFilter.SMOOTH) if loop_i in {5,8} else img", "schedule"
    )
    # temporal denoise pass
    video_post_process_method: str = _f("None", "temporal denoise pass after a loop: None or FastDVDNet", "denoise")
    video_post_process_alpha: float = _f(0.3, "how much of the denoised clip is blended back (0-1)", "denoise")
    fastdvdnet_noise_sigma: float = _f(60.0, "noise added before FastDVDNet denoises (0-255)", "denoise")
    video_post_process_when: str = _f(
        "every loop", "apply the pass after 'every loop' or only the 'last loop'", "denoise"
    )
    fastdvdnet_weights: str = _f("", "path of FastDVDNet's model.pth (default: models/ folders)", "denoise")
    # recorded, not chosen: filled in by the run
    model_name: str = _f("", "model used (recorded by the run)", "recorded")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings_version"] = SETTINGS_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        data = dict(data)
        version = data.pop("settings_version", SETTINGS_VERSION)
        if version > SETTINGS_VERSION:
            raise VideoLoopError(
                "settings_version", version, "was written by a newer Video Loopback", "Update the extension"
            )
        # The original script called these fields by other names.
        for old, new in (
            ("input_dir", "input_directory"),
            ("output_dir", "output_directory"),
            ("mask_dir", "mask_directory"),
            ("reference_frames_dir", "reference_frames_directory"),
        ):
            if old in data and new not in data:
                data[new] = data.pop(old)
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key in known:
                values[key] = value
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "Settings":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VideoLoopError("--config", str(path), "file not found", "Give the path of a settings.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VideoLoopError(
                "--config", str(path), f"is not valid JSON ({exc})", "Give a settings.json written by a run"
            ) from None
        if not isinstance(data, dict):
            raise VideoLoopError(
                "--config", str(path), "does not hold a settings object", "Give a settings.json written by a run"
            )
        return cls.from_dict(data)

    def validate(self) -> None:
        """Checks every value that can be checked without opening files."""
        _positive_int(self, "extract_nth_frame")
        _positive_int(self, "loop_n")
        _positive_int(self, "steps")
        _positive_int(self, "batch_size")
        _positive_int(self, "n_iter")
        if self.max_frames is not None:
            _positive_int(self, "max_frames")
        for name in ("start_frame", "width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise VideoLoopError(name, value, "must be a whole number of 0 or more", "")
        for name in ("superimpose_alpha", "denoising_strength", "subseed_strength", "video_post_process_alpha"):
            _unit_float(self, name)
        for name, top in (("mask_threshold", 255), ("difference_threshold", 255), ("fastdvdnet_noise_sigma", 255)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise VideoLoopError(name, value, f"must be between 0 and {top}", "")
        _choice(self, "temporal_superimpose_method", TEMPORAL_METHODS)
        _choice(self, "video_post_process_method", DENOISE_METHODS)
        _choice(self, "video_post_process_when", DENOISE_WHEN)
        _choice(self, "output_format", VIDEO_FORMATS)
        if self.resize_mode not in RESIZE_MODES:
            raise VideoLoopError(
                "resize_mode",
                self.resize_mode,
                "must be 0 (just resize), 1 (crop and resize) or 2 (resize and fill)",
                "",
            )
        if self.output_frame_rate is not None and not (
            isinstance(self.output_frame_rate, (int, float))
            and math.isfinite(self.output_frame_rate)
            and 0 < self.output_frame_rate <= 1000
        ):
            raise VideoLoopError(
                "output_frame_rate",
                self.output_frame_rate,
                "must be a positive number of frames per second",
                "Leave it empty to use the input's rate",
            )
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 63:
            raise VideoLoopError(
                "crf", self.crf, "must be a whole number from 0 to 63", "18 is visually lossless for mp4"
            )
        if not isinstance(self.cfg_scale, (int, float)) or not math.isfinite(self.cfg_scale):
            raise VideoLoopError("cfg_scale", self.cfg_scale, "must be a number", "")
        temporal_weights(self.temporal_superimpose_alpha_list)
        if not self.input_directory:
            raise VideoLoopError(
                "input_directory", self.input_directory, "is empty", "Give a video file, a folder of frames or an image"
            )


def temporal_weights(
    text: str | list[float] | tuple[float, ...], setting: str = "temporal_superimpose_alpha_list"
) -> list[float]:
    """Parses '0.1, 0.8, 0.1' (or a list) into an odd-length list of non-negative weights."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise VideoLoopError(setting, text, "must be numbers separated by commas", "For example 1,2,1") from None
    elif isinstance(text, (list, tuple)):
        values = []
        for v in text:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise VideoLoopError(setting, text, "must be a list of numbers", "For example [0.1, 0.8, 0.1]")
            values.append(float(v))
    else:
        raise VideoLoopError(setting, text, "must be a list of numbers", "For example [0.1, 0.8, 0.1]")
    if not values:
        return [1.0]
    if len(values) % 2 == 0:
        raise VideoLoopError(
            setting,
            text,
            f"has {len(values)} weights; it needs an odd number (the middle one is the current frame)",
            "For example 1,2,1",
        )
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise VideoLoopError(setting, text, "weights must be finite and not negative", "")
    if sum(values) <= 0:
        raise VideoLoopError(
            setting, text, "the weights add up to zero", "Give the current frame (the middle weight) a positive weight"
        )
    return values


def _positive_int(settings: Settings, name: str) -> None:
    value = getattr(settings, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise VideoLoopError(name, value, "must be a whole number of 1 or more", "")


def _unit_float(settings: Settings, name: str) -> None:
    value = getattr(settings, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise VideoLoopError(name, value, "must be between 0 and 1", "")


def _choice(settings: Settings, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(settings, name)
    if value not in choices:
        raise VideoLoopError(name, value, f"must be one of {', '.join(repr(c) for c in choices)}", "")
