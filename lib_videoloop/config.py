"""The one settings object. The command line, the WebUI panel and settings.json are views of it.

Field names follow the original Video Loopback script so that saved settings and habits carry
over. Each field's ``help`` metadata is the one-line explanation shown by ``--help`` and in the
panel.
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lib_videoloop.errors import VideoLoopError

SETTINGS_VERSION = 1

DIFFERENCE_METHOD = "with difference mask from reference"
FLOW_METHOD = "along optical flow of reference"
FILTER_METHOD = "temporal filter along optical flow"
TEMPORAL_METHODS = ("simple", DIFFERENCE_METHOD, FLOW_METHOD, FILTER_METHOD)
# One line per method, for --help, the panel and the README.
METHOD_HELP = {
    "simple": "mixes the neighbours at the same pixel: smooth on still shots, ghosts on motion",
    DIFFERENCE_METHOD: "mixes a neighbour only where the references look the same: no ghosts, little smoothing of motion",
    FLOW_METHOD: "moves each neighbour along the reference's motion before mixing: smooth and sharp on motion",
    FILTER_METHOD: "a low-pass over time along the motion (temporal_filter_strength): the strongest smoothing",
}
KEYFRAME_MODES = ("off", "every n frames", "by motion", "listed frames")
MAX_FILTER_STRENGTH = 0.95  # 1 would freeze the first frame over the whole clip
FOLDER_SEPARATOR = "!!!"  # between several reference folders, as in the original script
PATCH_BLEND = "patch blend"
DENOISE_METHODS = ("None", "FastDVDNet", PATCH_BLEND)
PATCH_BLEND_MODES = ("fast", "exact")
PATCH_MATCH = "patch match"
KEYFRAME_PROPAGATION = ("optical flow", PATCH_MATCH)
DENOISE_WHEN = ("every loop", "last loop")
VIDEO_FORMATS = ("mp4", "webm", "gif")

# Bounds shared by the settings and their schedules. They keep a typo (loop_n 1000000000) from
# becoming a job of years or a hang in the up-front check, and are far above any real use.
MAX_LOOPS = 1000
MAX_FRAMES = 100_000
MAX_PATCH_BLEND_WINDOW = 63
MAX_FRAME_LOOPS = 200_000  # frames x loops of one run; split longer jobs
MAX_STEPS = 1000
MAX_BATCH = 100  # batch count and batch size
CFG_RANGE = (-100, 100)
MIN_SIDE = 16  # pixels; the model works in 8x8 blocks
MAX_SIDE = 8192
MAX_SEED = 2**32 - 1
CRF_RANGE = {"mp4": 51, "webm": 63, "gif": 63}
MAX_GIF_FPS = 50  # GIF delays are whole hundredths of a second
PATH_FIELDS = (
    "input_directory",
    "output_directory",
    "reference_frames_directory",
    "mask_directory",
    "fastdvdnet_weights",
)

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
    "temporal_filter_schedule",
)


def _f(  # noqa: PLR0913 -- each keyword is one piece of a setting's metadata, named at every field
    default: Any,
    help: str,
    group: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    advice: str = "",
    too_large: str = "",
    choices: tuple[Any, ...] | None = None,
    slider_step: float | None = None,
    empty_is_zero: bool = False,
) -> Any:
    """A setting: its default, its one-line help and --help group, and everything that checks or
    shows it: the range [low, high] (high None: no top) with advice for a value outside it (and
    too_large for one above it, where that differs), the choices, and the panel's widget (a
    slider of slider_step over the range; empty_is_zero: a number where 0 means "not set")."""
    metadata: dict[str, Any] = {"help": help, "group": group}
    if low is not None:
        metadata["range"] = (low, high, advice)
        metadata["too_large"] = too_large or advice
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if slider_step is not None:
        metadata["slider_step"] = slider_step
    if empty_is_zero:
        metadata["empty_is_zero"] = True
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    # input and output
    input_directory: str = _f("", "a video file, a folder of frames, or one image", "input")
    output_directory: str = _f("", "where run folders are created (never inside the input)", "input")
    start_frame: int = _f(0, "first frame to use, counted from 0 in the source", "input", low=0)
    extract_nth_frame: int = _f(
        1,
        "keep every nth frame of the input (1 keeps all)",
        "input",
        low=1,
        advice="1 keeps every frame, 2 every second frame",
    )
    max_frames: int | None = _f(
        None,
        "stop after this many frames (empty: all)",
        "input",
        low=1,
        high=MAX_FRAMES,
        advice="Leave it empty for all frames",
        too_large="Split the clip into runs (start_frame and max_frames)",
        empty_is_zero=True,
    )
    width: int = _f(0, "frame width in pixels (0: the input's width)", "input")
    height: int = _f(0, "frame height in pixels (0: the input's height)", "input")
    resize_mode: int = _f(0, "0 just resize, 1 crop and resize, 2 resize and fill", "input", choices=(0, 1, 2))
    output_frame_rate: float | None = _f(
        None,
        "fps of the video (empty: input fps / extract_nth_frame)",
        "output",
        low=0.001,
        high=1000,
        advice="Leave it empty to use the input's rate",
        empty_is_zero=True,
    )
    output_format: str = _f("mp4", "video format: mp4 (H.264), webm (VP9) or gif", "output", choices=VIDEO_FORMATS)
    crf: int = _f(18, "video quality, lower is better (0-51 for mp4, 0-63 for webm)", "output")
    lossless: bool = _f(False, "encode the video losslessly (large files)", "output")
    keep_audio: bool = _f(True, "copy the input video's sound into the output, every channel as it is", "output")
    save_every_loop: bool = _f(True, "also write a video after each loop before the last (the final one)", "output")
    read_prompt_from_txt: bool = _f(
        False, "use <frame>.txt beside each input frame as its prompt (' --neg ' splits off a negative)", "prompt"
    )
    # loopback
    loop_n: int = _f(
        10,
        "number of loops; each loop img2imgs every frame of the previous loop",
        "loop",
        low=1,
        high=MAX_LOOPS,
        advice="6-10 loops at denoising 0.3-0.4 is a good start",
        too_large="Split a longer job into runs (--config RUN/settings.json)",
    )
    superimpose_alpha: float = _f(
        0.25, "how much of the generated image replaces the frame (0-1)", "loop", low=0, high=1, slider_step=0.01
    )
    fix_seed: bool = _f(True, "use one seed for every frame", "loop")
    fix_subseed: bool = _f(False, "use one variation seed for every frame", "loop")
    # temporal superimpose
    temporal_superimpose_method: str = _f(
        "simple",
        "how neighbours are mixed: " + "; ".join(f"'{k}' {v}" for k, v in METHOD_HELP.items()),
        "temporal",
        choices=TEMPORAL_METHODS,
    )
    temporal_superimpose_alpha_list: str = _f("1", "odd-length weights of frames i-h..i+h, e.g. 1,2,1", "temporal")
    difference_threshold: int = _f(
        24,
        "difference mask: neighbours count only where references differ by at most this (0-255)",
        "temporal",
        low=0,
        high=255,
        slider_step=1,
    )
    reference_frames_directory: str = _f(
        "", "reference frames (default: the input); several folders separated by !!!", "temporal"
    )
    temporal_filter_strength: float = _f(
        0.7,
        f"temporal filter: how much of the motion-compensated previous frame each frame keeps (0-{MAX_FILTER_STRENGTH})",
        "temporal",
        low=0,
        high=MAX_FILTER_STRENGTH,
        advice="0.7 smooths strongly; 0 turns the filter off",
        slider_step=0.05,
    )
    # keyframes: generate some frames, carry them along the motion to the others (keyframes.py)
    keyframe_mode: str = _f(
        "off",
        "generate only keyframes and propagate them along the motion: 'off' (every frame), 'every n frames',"
        " 'by motion' (a new keyframe where the warp from the last one fails), 'listed frames'",
        "keyframes",
        choices=KEYFRAME_MODES,
    )
    keyframe_interval: int = _f(
        8,
        "frames from one keyframe to the next ('by motion': at most)",
        "keyframes",
        low=1,
        high=MAX_FRAMES,
        advice="8 generates one frame in eight",
    )
    keyframe_motion: float = _f(
        0.1,
        "'by motion': share of the frame (0-1) the last keyframe's warp may fail on before a new one",
        "keyframes",
        low=0,
        high=1,
        advice="0.1 starts a new keyframe when a tenth of the frame is new",
        slider_step=0.01,
    )
    keyframe_frames: str = _f(
        "", "'listed frames': frame numbers counted from 0 (image_i), e.g. 0, 12, 30", "keyframes"
    )
    keyframe_propagation: str = _f(
        "optical flow",
        "keyframes reach in-between frames warped along the flow, or rebuilt by patch match",
        "keyframes",
        choices=KEYFRAME_PROPAGATION,
    )
    keyframe_repair: bool = _f(
        True, "inpaint where no keyframe's warp reaches (new content); off: propagate only", "keyframes"
    )
    repair_min_share: float = _f(
        0.02,
        "repair a frame only when at least this share of it (0-1) is new; less keeps the warps",
        "keyframes",
        low=0,
        high=1,
        advice="0.02 repairs frames that are at least 2% new",
        slider_step=0.01,
    )
    repair_denoising_strength: float = _f(
        0.6, "denoising strength of the repair inpainting (0-1)", "keyframes", low=0, high=1, slider_step=0.01
    )
    # masks
    use_mask: bool = _f(False, "inpaint: only change frames inside a mask", "mask")
    mask_directory: str = _f("", "a folder of masks, one mask file, or empty for each frame's alpha channel", "mask")
    mask_threshold: int = _f(
        127, "mask pixels brighter than this are repainted (0-255)", "mask", low=0, high=255, slider_step=1
    )
    # generation
    prompt: str = _f("", "prompt", "generation")
    negative_prompt: str = _f("", "negative prompt", "generation")
    seed: int = _f(
        -1, "seed (-1: random, chosen once and recorded)", "generation", low=-1, high=MAX_SEED, advice="-1 draws one"
    )
    subseed: int = _f(
        -1,
        "variation seed (-1: random, chosen once and recorded)",
        "generation",
        low=-1,
        high=MAX_SEED,
        advice="-1 draws one",
    )
    subseed_strength: float = _f(0.0, "variation strength (0-1)", "generation", low=0, high=1)
    denoising_strength: float = _f(
        0.35, "how far each img2img moves away from its init image (0-1)", "generation", low=0, high=1
    )
    steps: int = _f(20, "sampling steps", "generation", low=1, high=MAX_STEPS)
    cfg_scale: float = _f(7.0, "classifier-free guidance scale", "generation", low=CFG_RANGE[0], high=CFG_RANGE[1])
    sampler_name: str = _f("", "sampler (backend default when empty)", "generation")
    batch_size: int = _f(
        1, "images per batch, all averaged into the frame (batch blend)", "generation", low=1, high=MAX_BATCH
    )
    n_iter: int = _f(1, "batches per frame (batch count)", "generation", low=1, high=MAX_BATCH)
    frames_per_call: int = _f(
        0,
        "frames generated together in one call when nothing per frame forbids it (0: by free GPU memory,"
        " 1 on a CPU); the same seeds per frame as one by one",
        "generation",
        low=0,
        high=MAX_BATCH,
        advice="0 lets the backend choose by free GPU memory",
    )
    latent_deflicker_steps: str = _f(
        "",
        "sampling steps at which the frames of one call are patch-blended into each other (needs"
        " frames_per_call 2 or more; 1 = the first step, -1 = the last; empty: off), e.g. -1",
        "generation",
    )
    workers: str = _f("", "WebUI API URLs to generate on, e.g. http://gpu1:7860, http://gpu2:7860", "generation")
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
    temporal_filter_schedule: str = _f("", "temporal_filter_strength, e.g. 0.8 if loop_i<=2 else 0.5", "schedule")
    # temporal denoise pass
    video_post_process_method: str = _f(
        "None",
        "temporal pass after a loop: None, FastDVDNet, or patch blend (neighbours matched patch by patch)",
        "denoise",
        choices=DENOISE_METHODS,
    )
    video_post_process_alpha: float = _f(
        0.3, "how much of the denoised clip is blended back (0-1)", "denoise", low=0, high=1, slider_step=0.01
    )
    fastdvdnet_noise_sigma: float = _f(
        60.0, "noise added before FastDVDNet denoises (0-255)", "denoise", low=0, high=255, slider_step=1
    )
    video_post_process_when: str = _f(
        "every loop", "apply the pass after 'every loop' or only the 'last loop'", "denoise", choices=DENOISE_WHEN
    )
    fastdvdnet_weights: str = _f("", "path of FastDVDNet's model.pth (default: models/ folders)", "denoise")
    patch_blend_window: int = _f(
        15,
        "patch blend: frames blended into each (odd: the frame and as many on each side)",
        "denoise",
        low=3,
        high=MAX_PATCH_BLEND_WINDOW,
        advice="15 blends 7 frames on each side",
        slider_step=2,
    )
    patch_blend_mode: str = _f(
        "fast",
        "patch blend: 'fast' (sums built by doubling) or 'exact' (every pair)",
        "denoise",
        choices=PATCH_BLEND_MODES,
    )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings_version"] = SETTINGS_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        """Settings from a dict (settings.json, --config, the panel), every key and type checked."""
        return cls(**_values_from_dict(data))

    @classmethod
    def load(cls, path: str | Path) -> "Settings":
        return cls.from_dict(_read_settings_json(path))

    def denoises(self, loop: int) -> bool:
        """Whether the temporal pass (video_post_process_method) runs after loop `loop`."""
        return self.video_post_process_method != "None" and (
            self.video_post_process_when == "every loop" or loop == self.loop_n
        )

    def validate(self) -> None:
        """Checks every value that can be checked without opening files."""
        _validate(self)


# Read from the fields' metadata (_f): the one place each bound and choice is written.
# setting: (lowest, highest or None, what to do). Types are checked first (_typed).
RANGES: dict[str, tuple[float, float | None, str]] = {
    f.name: f.metadata["range"] for f in fields(Settings) if "range" in f.metadata
}
CHOICES: dict[str, tuple[Any, ...]] = {
    f.name: f.metadata["choices"] for f in fields(Settings) if "choices" in f.metadata
}
# 0 (or empty) in the panel and the API's named form means "not set".
EMPTY_IS_ZERO = tuple(f.name for f in fields(Settings) if f.metadata.get("empty_is_zero"))


def _values_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    version = data.pop("settings_version", SETTINGS_VERSION)
    data.pop("run", None)  # a run folder's own record, read by the engine on resume
    data.pop("model_name", None)  # recorded here by earlier versions; now in the run's record
    if not isinstance(version, int) or isinstance(version, bool):
        raise VideoLoopError(
            "settings_version", version, "must be a whole number", f"This version writes {SETTINGS_VERSION}"
        )
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
    known = {f.name for f in fields(Settings)}
    values = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise VideoLoopError(
                str(key),
                value,
                "is not a setting" + (f" (did you mean {close[0]}?)" if close else ""),
                "Fix or remove the key; --help lists every setting",
            )
        values[key] = _typed(key, value)
    return values


def _read_settings_json(path: str | Path) -> Any:
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
    return data


def _validate(s: Settings) -> None:
    for f in fields(s):
        _typed(f.name, getattr(s, f.name))
    _validate_ranges(s)
    for name in PATH_FIELDS:
        if "\x00" in getattr(s, name):
            raise VideoLoopError(name, getattr(s, name), "contains a NUL character", "Retype the path")
    _validate_output(s)
    _validate_patch_blend(s)
    _validate_latent_deflicker(s)
    temporal_weights(s.temporal_superimpose_alpha_list)
    worker_urls(s.workers)
    listed = keyframe_numbers(s.keyframe_frames)
    if s.keyframe_mode == "listed frames" and not listed:
        raise VideoLoopError(
            "keyframe_frames", s.keyframe_frames, "is empty", "List the keyframes' numbers, e.g. 0, 12, 30"
        )
    if not s.input_directory:
        raise VideoLoopError(
            "input_directory", s.input_directory, "is empty", "Give a video file, a folder of frames or an image"
        )


def _validate_ranges(s: Settings) -> None:
    meta = {f.name: f.metadata for f in fields(s)}
    for name, (low, high, fix) in RANGES.items():
        value = getattr(s, name)
        if value is not None and not (low <= value and (high is None or value <= high)):
            within = f"from {low:,} to {high:,}" if high is not None else f"{low:,} or more"
            raise VideoLoopError(name, value, f"must be {within}", meta[name]["too_large"] if value > low else fix)
    for name, choices in CHOICES.items():
        if getattr(s, name) not in choices:
            raise VideoLoopError(name, getattr(s, name), f"must be one of {', '.join(map(repr, choices))}", "")
    for name in ("width", "height"):
        value = getattr(s, name)
        if value != 0 and not MIN_SIDE <= value <= MAX_SIDE:
            raise VideoLoopError(
                name, value, f"must be 0 (the input's size) or from {MIN_SIDE} to {MAX_SIDE} pixels", ""
            )


def _validate_patch_blend(s: Settings) -> None:
    if s.patch_blend_window % 2 == 0:
        raise VideoLoopError(
            "patch_blend_window", s.patch_blend_window, "must be odd (the frame and as many on each side)",
            f"Use {s.patch_blend_window + 1}",
        )  # fmt: skip


def _validate_latent_deflicker(s: Settings) -> None:
    if deflicker_steps(s.latent_deflicker_steps) and worker_urls(s.workers):
        raise VideoLoopError(
            "latent_deflicker_steps", s.latent_deflicker_steps, "works inside this process's sampler, not on workers",
            "Clear latent_deflicker_steps or workers",
        )  # fmt: skip
    if deflicker_steps(s.latent_deflicker_steps) and s.frames_per_call in {0, 1}:
        raise VideoLoopError(
            "frames_per_call", s.frames_per_call, "must be 2 or more with latent_deflicker_steps: it blends the frames"
            " that share a call", "Set frames_per_call to 4 (or clear latent_deflicker_steps)",
        )  # fmt: skip


def _validate_output(s: Settings) -> None:
    top = CRF_RANGE[s.output_format]
    if not 0 <= s.crf <= top:
        raise VideoLoopError(
            "crf", s.crf, f"must be from 0 to {top} for {s.output_format}", "18 is visually lossless for mp4"
        )
    if s.output_format == "gif" and s.output_frame_rate is not None and s.output_frame_rate > MAX_GIF_FPS:
        raise VideoLoopError(
            "output_frame_rate",
            s.output_frame_rate,
            f"is above {MAX_GIF_FPS} fps, which a GIF cannot store (its delays are hundredths of a second)",
            "Use mp4 or webm for high frame rates",
        )


def reference_folders(text: str) -> list[str]:
    """The folders of reference_frames_directory, which the original separated by !!!."""
    return [part.strip() for part in str(text or "").split(FOLDER_SEPARATOR) if part.strip()]


def keyframe_numbers(text: str) -> list[int]:
    """'0, 12, 30' as sorted frame numbers (counted from 0, as image_i)."""
    numbers = set()
    for part in str(text or "").replace(";", ",").replace(" ", ",").split(","):
        if not part.strip():
            continue
        if not part.strip().isdigit():
            raise VideoLoopError(
                "keyframe_frames",
                text,
                f"{part.strip()!r} is not a frame number",
                "Frame numbers from 0, e.g. 0, 12, 30",
            )
        numbers.add(int(part))
    return sorted(numbers)


WORKER_AUTH = "VIDEO_LOOPBACK_WORKER_AUTH"  # the workers' user:password, kept out of every file


def worker_urls(text: str) -> list[str]:
    """workers 'http://gpu1:7860, http://gpu2:7860' as a list of base URLs. Only http(s) with a
    host; a user and password in a URL are refused (they would be saved with the run)."""
    urls: list[str] = []
    for raw in str(text or "").replace("\n", ",").replace(" ", ",").split(","):
        part = raw.strip()
        if not part:
            continue
        parsed = urllib.parse.urlsplit(part)
        if parsed.username is not None or parsed.password is not None:
            shown = part.replace(parsed.netloc, parsed.netloc.rsplit("@", 1)[-1])
            raise VideoLoopError(
                "workers", shown, "has a user and password in it, which would be saved with the run",
                f"Give them as user:password in the environment variable {WORKER_AUTH} (or --worker-auth)",
            )  # fmt: skip
        try:
            port_ok = parsed.port is None or parsed.port > 0
        except ValueError:
            port_ok = False
        if parsed.scheme not in ("http", "https") or not parsed.hostname or not port_ok:
            raise VideoLoopError(
                "workers", part, "is not the http(s) address of a WebUI", "e.g. http://192.168.1.20:7860"
            )
        if parsed.query or parsed.fragment:
            raise VideoLoopError("workers", part, "has a query or fragment", "Give the WebUI's address alone")
        url = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        if url in urls:
            raise VideoLoopError("workers", part, "is listed twice", "List each WebUI once")
        urls.append(url)
    return urls


def deflicker_steps(text: str) -> tuple[int, ...]:
    """latent_deflicker_steps '1, -1' as (1, -1): steps a call samples, from 1 (and from -1 at the
    end); empty is off."""
    example = "e.g. -1 (the last step) or 1, -1"
    steps = []
    for raw in str(text or "").replace(";", ",").replace(" ", ",").split(","):
        part = raw.strip()
        if not part:
            continue
        try:
            number = int(part)
        except ValueError:
            raise VideoLoopError("latent_deflicker_steps", text, f"{part!r} is not a step number", example) from None
        if number == 0 or abs(number) > MAX_STEPS:
            raise VideoLoopError(
                "latent_deflicker_steps", text, f"has {number}: steps count from 1 (and from -1 at the end) up to"
                f" {MAX_STEPS}", example,
            )  # fmt: skip
        steps.append(number)
    return tuple(dict.fromkeys(steps))


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


def _field_kinds() -> dict[str, tuple[type, bool]]:
    """Each field's type and whether it may be empty (None)."""
    kinds = {}
    for name, hint in typing.get_type_hints(Settings).items():
        args = typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            kinds[name] = (next(a for a in args if a is not type(None)), True)
        else:
            kinds[name] = (hint, False)
    return kinds


_KIND_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _typed(name: str, value: Any) -> Any:
    """value as the field's type, or a VideoLoopError naming the field (JSON has no int/float
    distinction, so 3.0 is a whole number and 3 a number)."""
    kind, optional = _FIELD_KINDS[name]
    if value is None and optional:
        return None
    if kind is bool and isinstance(value, bool):
        return value
    if not isinstance(value, bool):
        if kind is str and isinstance(value, str):
            return value
        if kind is int and isinstance(value, int):
            return value
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is float and isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise VideoLoopError(name, value, "must be a finite number", "")
            return value
    words = _KIND_WORDS[kind] + (" or empty (null)" if optional else "")
    raise VideoLoopError(name, value, f"must be {words}, not {type(value).__name__}", "")


_FIELD_KINDS = _field_kinds()
