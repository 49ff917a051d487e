"""The Video Loopback panel in img2img, built from the Settings dataclass.

Works with gradio 3.41 (AUTOMATIC1111) and 4.40 (Forge): only gr.Group, gr.Row, gr.Accordion,
gr.update and plain components are used. The components returned, in PANEL_ORDER, become the
positional arguments of the script's run() (and the script_args of the HTTP API).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from lib_videoloop.config import EMPTY_IS_ZERO, METHOD_HELP, SCHEDULE_FIELDS, Settings

RESUME = "resume_run_folder"
RESUME_HELP = "a run folder to finish (everything else is then read from its settings.json)"

# Settings added after the first release come last, a group per release, so that API callers'
# older argument lists (without them) still mean what they meant; run() accepts each length.
KEYFRAME_FIELDS = ("keyframe_mode", "keyframe_interval", "keyframe_motion", "keyframe_frames", "keyframe_repair",
                   "repair_min_share", "repair_denoising_strength")  # fmt: skip
ADDED_GROUPS = (
    ("temporal_filter_strength", "temporal_filter_schedule"),
    KEYFRAME_FIELDS,
    ("frames_per_call",),
    ("patch_blend_window", "patch_blend_mode", "keyframe_propagation"),
    ("latent_deflicker_steps",),
    ("workers",),
)
ADDED_LATER = tuple(name for group in ADDED_GROUPS for name in group)

# run()'s positional arguments, in order. Documented in the README for the HTTP API.
PANEL_ORDER: tuple[str, ...] = (
    "input_directory", "output_directory", RESUME, "start_frame", "extract_nth_frame", "max_frames",
    "read_prompt_from_txt", "loop_n", "superimpose_alpha", "fix_seed", "fix_subseed",
    "temporal_superimpose_method", "temporal_superimpose_alpha_list", "difference_threshold",
    "reference_frames_directory", "use_mask", "mask_directory", "mask_threshold",
    "output_frame_rate", "output_format", "crf", "lossless", "keep_audio", "save_every_loop",
    *(name for name in SCHEDULE_FIELDS if name not in ADDED_LATER),
    "video_post_process_method", "video_post_process_alpha", "fastdvdnet_noise_sigma",
    "video_post_process_when", "fastdvdnet_weights",
    *ADDED_LATER,
)  # fmt: skip

# Taken from the img2img tab itself (p), not from the panel.
FROM_P = ("prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "denoising_strength", "steps", "cfg_scale",
          "sampler_name", "batch_size", "n_iter", "width", "height", "resize_mode")  # fmt: skip


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Settings)}


def _make(cls: Any, **kwargs: Any) -> Any:
    """Creates a component, dropping keyword arguments this gradio version does not know."""
    accepted = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return cls(**kwargs)


def component_for(gr: Any, name: str, elem_id: Callable[[str], str], defaults: dict[str, Any]) -> Any:
    if name == RESUME:
        return _make(gr.Textbox, label=RESUME, value="", info=RESUME_HELP, elem_id=elem_id(name))
    f = _fields()[name]
    value = defaults.get(name, f.default)
    common = {"label": name, "info": f.metadata["help"], "elem_id": elem_id(name)}
    if name == "temporal_superimpose_method":
        common["info"] = "how neighbours are mixed (each method in one line below)"
    meta = f.metadata
    if "choices" in meta:
        return _make(gr.Dropdown, choices=list(meta["choices"]), value=value, **common)
    if "slider_step" in meta:  # over the setting's range
        low, high, _advice = meta["range"]
        return _make(gr.Slider, minimum=low, maximum=high, step=meta["slider_step"], value=value, **common)
    if isinstance(f.default, bool):
        return _make(gr.Checkbox, value=value, **common)
    return _box(gr, name, value, common)


def _box(gr: Any, name: str, value: Any, common: dict[str, Any]) -> Any:
    """A number box for numbers (empty_is_zero ones show 0 for unset), else a text box."""
    f = _fields()[name]
    if f.metadata.get("empty_is_zero"):
        return _make(gr.Number, value=value or 0, precision=0 if name == "max_frames" else None, **common)
    if isinstance(f.default, (int, float)):
        return _make(gr.Number, value=value, precision=0 if isinstance(f.default, int) else None, **common)
    placeholder = f.metadata["help"] if name in SCHEDULE_FIELDS else ""
    return _make(gr.Textbox, value=value, lines=1, placeholder=placeholder, **common)


def build_panel(elem_id: Callable[[str], str], defaults: dict[str, Any] | None = None) -> list[Any]:
    """Lays out the panel (inside the caller's gradio Blocks) and returns the components in PANEL_ORDER."""
    import gradio as gr

    panel = _Layout(gr, elem_id, defaults or {})
    panel.main_groups()
    panel.schedules()
    panel.temporal_pass()
    panel.keyframes()
    components = [panel.c[name] for name in PANEL_ORDER]
    panel.wire(components)
    return components


class _Layout:
    """The panel's sections, laid out in order; c holds each setting's component by name, and
    the groups that a dropdown or checkbox shows or hides are kept for wire()."""

    def __init__(self, gr: Any, elem_id: Callable[[str], str], defaults: dict[str, Any]) -> None:
        self.gr, self.elem_id, self.defaults = gr, elem_id, defaults
        self.c: dict[str, Any] = {}
        self.shown_by: list[tuple[str, Callable[[Any], bool], Any]] = []  # (setting, shows?, group)
        self.buttons: list[tuple[Any, Callable[[Sequence[Any]], tuple[str, Any]], Any, Any]] = []

    def add(self, *names: str) -> None:
        for name in names:
            self.c[name] = component_for(self.gr, name, self.elem_id, self.defaults)

    def group(self, setting: str, shows: Callable[[Any], bool], default: Any, name: str) -> Any:
        """A group that `setting`'s value shows or hides (wired in wire())."""
        group = _make(self.gr.Group, visible=shows(self.defaults.get(setting, default)), elem_id=self.elem_id(name))
        self.shown_by.append((setting, shows, group))
        return group

    def button(self, label: str, action: Callable[[Sequence[Any]], tuple[str, Any]], names: tuple[str, str, str],
               image_label: str) -> None:  # fmt: skip
        """A button that runs `action` on the panel's values, its message, and an image below;
        names: the three elements' ids."""
        gr, elem_id = self.gr, self.elem_id
        button = _make(gr.Button, value=label, elem_id=elem_id(names[0]))
        message = _make(gr.Markdown, value="", elem_id=elem_id(names[1]))
        picture = _make(gr.Image, label=image_label, type="pil", interactive=False, visible=False,
                        elem_id=elem_id(names[2]))  # fmt: skip
        self.buttons.append((button, action, message, picture))

    def main_groups(self) -> None:
        gr, add = self.gr, self.add
        with gr.Group():
            gr.Markdown(
                "**Input and output.** A video file, a folder of frames or one image; the img2img image box can"
                " stay empty."
            )
            add("input_directory", "output_directory", RESUME)
            with gr.Row():
                add("start_frame", "extract_nth_frame", "max_frames")
            add("read_prompt_from_txt")
        with gr.Group():
            gr.Markdown(
                "**Loop and blending.** Start with 6-10 loops (10 by default), denoising 0.3-0.4 in img2img,"
                " superimpose_alpha 0.25."
            )
            with gr.Row():
                add("loop_n", "superimpose_alpha")
            with gr.Row():
                add("fix_seed", "fix_subseed")
        with gr.Group():
            gr.Markdown("**Temporal superimpose.** Mix each frame with its neighbours before img2img, e.g. 1,2,1.")
            add("temporal_superimpose_method")
            gr.Markdown("\n".join(f"- *{name}*: {line}" for name, line in METHOD_HELP.items()))
            add("temporal_superimpose_alpha_list", "difference_threshold", "temporal_filter_strength",
                "reference_frames_directory")  # fmt: skip
        with gr.Group():
            add("use_mask")
            with self.group("use_mask", bool, False, "mask_settings"):
                add("mask_directory", "mask_threshold")
        with gr.Group():
            with gr.Row():
                add("output_frame_rate", "output_format", "crf")
            with gr.Row():
                add("lossless", "keep_audio", "save_every_loop")
            with gr.Row():
                add("frames_per_call", "latent_deflicker_steps")
            add("workers")  # other WebUIs' API: README "Workers"

    def schedules(self) -> None:
        with self.gr.Accordion("Schedules (expressions of image_i and loop_i)", open=False,
                               elem_id=self.elem_id("schedules")):  # fmt: skip
            self.add(*SCHEDULE_FIELDS)
            names = ("check_schedules", "schedule_message", "schedule_plot")
            self.button("Check schedules", check_schedules, names, "schedule values")

    def temporal_pass(self) -> None:
        with self.gr.Accordion("Temporal pass after a loop (FastDVDNet, patch blend)", open=False,
                               elem_id=self.elem_id("denoise")):  # fmt: skip
            self.add("video_post_process_method")
            with self.group("video_post_process_method", lambda method: method != "None", "None", "denoise_settings"):
                self.add("video_post_process_alpha", "video_post_process_when")
                with self.gr.Row():
                    self.add("patch_blend_window", "patch_blend_mode")
                self.add("fastdvdnet_noise_sigma", "fastdvdnet_weights")

    def keyframes(self) -> None:
        with self.gr.Accordion("Keyframes (generate some frames, carry them along the motion)", open=False,
                               elem_id=self.elem_id("keyframes")):  # fmt: skip
            self.add("keyframe_mode")
            with self.group("keyframe_mode", lambda mode: mode != "off", "off", "keyframe_settings"):
                with self.gr.Row():
                    self.add("keyframe_interval", "keyframe_motion")
                self.add("keyframe_frames", "keyframe_propagation")
                with self.gr.Row():
                    self.add("keyframe_repair", "repair_min_share", "repair_denoising_strength")
                names = ("preview_keyframes", "keyframe_message", "keyframe_strip")
                self.button("Preview keyframes", preview_keyframes, names, "keyframes over the clip")

    def wire(self, components: list[Any]) -> None:
        gr = self.gr
        for setting, shows, group in self.shown_by:
            self.c[setting].change(fn=lambda value, shows=shows: gr.update(visible=bool(shows(value))),
                                   inputs=[self.c[setting]], outputs=[group], show_progress=False)  # fmt: skip
        for button, action, message, picture in self.buttons:

            def on_click(*values: Any, action: Callable[[Sequence[Any]], tuple[str, Any]] = action) -> tuple[Any, Any]:
                text, image = action(values)
                return gr.update(value=text), gr.update(value=image, visible=image is not None)

            button.click(fn=on_click, inputs=components, outputs=[message, picture])


def settings_from_panel(values: Sequence[Any], base: dict[str, Any] | None = None) -> tuple[Settings, str]:
    """(settings, resume folder) from run()'s values: the panel's positional values, or one dict
    of setting name -> value (the API's named form); `base` adds the img2img values.

    In the named form only the dict counts. The WebUI cuts a selectable script's values out of
    the request's script_args by the panel's length, so a shorter list brings along the values
    of the scripts after it."""
    named = _named(values[0]) if values and isinstance(values[0], dict) else _positional(values)
    data = dict(base or {})
    resume = str(named.pop(RESUME, "") or "").strip()
    data.update(named)
    return Settings.from_dict(data), resume


def _named(values: dict[Any, Any]) -> dict[str, Any]:
    """The named form's values, as they are (Settings.from_dict checks each type); 0 or None in
    max_frames and output_frame_rate mean "not set", as in the panel."""
    import difflib

    from lib_videoloop.errors import VideoLoopError

    named = {}
    for name, value in values.items():
        if name not in PANEL_ORDER:
            close = difflib.get_close_matches(str(name), PANEL_ORDER, n=1)
            raise VideoLoopError(
                "script_args", str(name), "is not a Video Loopback setting" + (f" (did you mean {close[0]}?)" if close
                else ""), "The README's API section lists them; prompt, steps and the other img2img values go in"
                " the request itself",
            )  # fmt: skip
        named[name] = None if name in EMPTY_IS_ZERO and value in (None, 0) else value
    return named


def _positional(values: Sequence[Any]) -> dict[str, Any]:
    """The panel's values by name, each converted as gradio delivers it (a Number may be a float)."""
    lengths = [len(PANEL_ORDER) - sum(len(g) for g in ADDED_GROUPS[k:]) for k in range(len(ADDED_GROUPS) + 1)]
    if len(values) not in lengths:
        from lib_videoloop.errors import VideoLoopError

        raise VideoLoopError(
            "script_args",
            len(values),
            f"Video Loopback takes {len(PANEL_ORDER)} script arguments (older lists of "
            f"{' or '.join(map(str, lengths[:-1]))} leave the settings added later at their defaults)",
            "Send one dict of setting names and values instead (the README's API section)",
        )
    # An older, shorter list leaves the later settings at their defaults.
    named = dict(zip(PANEL_ORDER, values, strict=False))
    return {name: value if name == RESUME else _from_widget(name, value) for name, value in named.items()}


def _from_widget(name: str, value: Any) -> Any:
    """A widget's value as the setting's type: gradio gives floats for whole numbers, None for
    an empty text box, and 0 for an unset empty_is_zero number."""
    default = _fields()[name].default
    if name in EMPTY_IS_ZERO:
        if value in (None, "", 0):
            return None
        return int(value) if name == "max_frames" else value
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, str):
        return "" if value is None else str(value)
    return value


def preview_keyframes(values: Sequence[Any]) -> tuple[str, Any]:
    """Where keyframe mode will put the keyframes on the clip, before generating: (message,
    strip image or None). The same computation as the run's, on the same frames, except that
    the panel knows the input's own size, not the one img2img will crop or resize to."""
    from lib_videoloop.errors import VideoLoopError
    from lib_videoloop.keyframe_run import preview_plan
    from lib_videoloop.keyframes import strip

    try:
        settings, _ = settings_from_panel(values)
        settings.validate()
        if settings.keyframe_mode == "off":
            return "keyframe_mode is off: every frame is generated.", None
        plan = preview_plan(settings)
    except VideoLoopError as exc:
        return f"**Error:** {exc}", None
    loops = settings.loop_n
    return (
        f"{len(plan.keyframes)} keyframes of {plan.frame_count} frames: {len(plan.keyframes) * loops} generations"
        f" over {loops} loops, plus one per repaired frame. Keyframes: {', '.join(map(str, plan.keyframes))}.",
        strip(plan),
    )


def check_schedules(values: Sequence[Any]) -> tuple[str, Any]:
    """Evaluates every schedule over the clip without generating: (message, plot image or None)."""
    from lib_videoloop.errors import VideoLoopError
    from lib_videoloop.planning import Planner
    from lib_videoloop.report import render_series
    from lib_videoloop.schedule_isolation import check_plan_isolated

    try:
        settings, _ = settings_from_panel(values)
        frame_count, note = 10, " (no input given: 10 frames assumed)"
        from lib_videoloop.run_setup import check_generations, open_input

        if settings.input_directory.strip():
            frame_count, note = open_input(settings).info.frame_count, ""
        check_generations(settings, frame_count)
        check_plan_isolated(settings, frame_count, None, settings.width * settings.height)  # a runaway ends there
        planner = Planner(settings, frame_count)
        numeric = {
            "denoising_schedule": "denoising_strength", "step_schedule": "steps", "cfg_schedule": "cfg_scale",
            "superimpose_alpha_schedule": "superimpose_alpha", "subseed_strength_schedule": "subseed_strength",
            "batch_count_schedule": "n_iter", "seed_schedule": "seed", "subseed_schedule": "subseed",
        }  # fmt: skip
        shown = {schedule: key for schedule, key in numeric.items() if schedule in planner.expressions}
        series: dict[str, list[float | None]] = {name: [] for name in shown}
        for _, _, v, _ in planner.walk():
            for schedule, key in shown.items():
                series[schedule].append(float(v[key]))
    except VideoLoopError as exc:
        return f"**Error:** {exc}", None
    checked = len(planner.expressions)
    text = f"All {checked} schedule(s) are valid for {frame_count} frames x {settings.loop_n} loops{note}."
    if not series:
        return text, None
    # One small plot per schedule: their ranges differ too much to share an axis.
    from PIL import Image

    parts = [
        render_series({name: values}, name, "value", "frame (all loops in order)", height=220)
        for name, values in series.items()
    ]
    image = Image.new("RGB", (parts[0].width, sum(p.height for p in parts)), "white")
    y = 0
    for part in parts:
        image.paste(part, (0, y))
        y += part.height
    return text, image
