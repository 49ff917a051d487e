"""The command line: video-loopback (or python -m lib_videoloop) {run,smooth,metrics,ebsynth} ...

Every setting of the run is a flag with the same name as in settings.json and the WebUI panel
(generated from the Settings dataclass, so the three never drift apart).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import math
import os
import shlex
import signal
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib_videoloop.config import WORKER_AUTH, Settings, worker_urls
from lib_videoloop.errors import InterruptedRun, VideoLoopError, WorkersLost
from lib_videoloop.media.store import read_run_settings

log = logging.getLogger("lib_videoloop")

_SKIP_FLAGS = {"input_directory", "output_directory"}


def _field_type(f: dataclasses.Field) -> type:
    hint = typing.get_type_hints(Settings)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


def _add_setting_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Settings):
        if f.name in _SKIP_FLAGS or (only is not None and f.name not in only):
            continue
        group_name = f.metadata.get("group", "")
        group = groups.setdefault(
            group_name, parser.add_argument_group(f"{group_name} settings" if group_name else "settings")
        )
        kind = _field_type(f)
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        default_text = "" if f.default in ("", None) else f" (default {f.default})"
        help_text = (f.metadata["help"] + default_text).replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            group.add_argument(
                *names,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                *names,
                dest=f.name,
                type=kind,
                default=argparse.SUPPRESS,
                choices=f.metadata.get("choices"),  # the settings' own (config._f), listed by --help
                metavar=f.name.upper() if kind is str else kind.__name__.upper(),
                help=help_text,
            )


def _program_name() -> str:
    """As the user typed it: the installed command, or the module run from a checkout."""
    name = Path(sys.argv[0]).name
    return name if name.startswith("video-loopback") else "python -m lib_videoloop"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program_name(), description="Video Loopback: img2img animation of a video with little flicker."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_run(sub)
    _add_smooth(sub)
    _add_ebsynth(sub)
    _add_metrics(sub)
    return parser


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="loopback img2img over a video or a folder of frames",
        description="Loopback img2img over a video, a folder of frames or an image.",
        usage="%(prog)s [INPUT] -o FOLDER [--model MODEL] [--config FILE | --resume RUN_DIR] [setting flags: see --help]",
    )
    run.add_argument("input", nargs="?", help="a video file, a folder of frames or an image")
    run.add_argument("-o", "--output", dest="output_directory", help="folder in which the run folder is created")
    run.add_argument(
        "--model",
        help="a diffusers model folder, a .safetensors/.ckpt file, or tiny-random (noise, for smoke tests); with"
        " --workers, the checkpoint's name on the workers (default: the one they have loaded)",
    )
    run.add_argument(
        "--worker-auth",
        metavar="USER:PASSWORD",
        help=f"the workers' --api-auth (better: the environment variable {WORKER_AUTH}, which no process list shows)",
    )
    run.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    run.add_argument("--config", help="settings.json of an earlier run (or your own) to start from")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run in its run folder")
    _add_setting_flags(run)


def _add_smooth(sub: Any) -> None:
    smooth = sub.add_parser(
        "smooth",
        help="temporal smoothing of an existing clip (no model)",
        description="Temporal superimpose (and optionally the FastDVDNet pass) on a clip or a folder of frames, without any model.",
        usage="%(prog)s INPUT -o OUTPUT [--denoise fastdvdnet] [setting flags: see --help]",
    )
    smooth.add_argument("input", help="a video file or a folder of frames")
    smooth.add_argument(
        "-o", "--output", required=True, help="output video (.mp4, .webm, .gif) or a folder for PNG frames"
    )
    smooth.add_argument(
        "--denoise",
        choices=["none", "fastdvdnet", "patch-blend"],
        default="none",
        help="add a pass: FastDVDNet, or patch blend along the reference (else the clip itself)",
    )
    _add_setting_flags(
        smooth,
        only=[
            "temporal_superimpose_method",
            "temporal_superimpose_alpha_list",
            "difference_threshold",
            "temporal_filter_strength",
            "reference_frames_directory",
            "start_frame",
            "extract_nth_frame",
            "max_frames",
            "output_frame_rate",
            "crf",
            "lossless",
            "keep_audio",
            "video_post_process_alpha",
            "fastdvdnet_noise_sigma",
            "fastdvdnet_weights",
            "patch_blend_window",
            "patch_blend_mode",
        ],
    )


def _add_ebsynth(sub: Any) -> None:
    ebsynth = sub.add_parser(
        "ebsynth",
        help="export a keyframe-mode run for EbSynth",
        description="Writes a keyframe-mode run's frames, keyframes and masks in the folder layout of ebsynth_utility's"
        " projects, which EbSynth opens.",
    )
    ebsynth.add_argument("run_dir", help="the run folder (made with keyframe_mode on)")
    ebsynth.add_argument("-o", "--output", required=True, help="a new or empty folder for the project")


def _add_metrics(sub: Any) -> None:
    metrics = sub.add_parser(
        "metrics",
        help="measure flicker of a clip against its source",
        description="Warp error and tOF of a clip, against the flow of its source clip.",
    )
    metrics.add_argument("output", help="the clip to measure (video or frame folder)")
    metrics.add_argument(
        "--source", required=True, help="the source clip the output was made from (its motion is the reference)"
    )
    metrics.add_argument(
        "--reference", help="frames to compare fidelity with (PSNR, SSIM), e.g. the run without smoothing"
    )
    metrics.add_argument("--json", action="store_true", help="print one JSON object")
    metrics.add_argument("--plot", help="where to write the per-frame warp error plot (PNG)")


def _settings_from_args(args: argparse.Namespace) -> Settings:
    base = Settings.load(args.config).to_dict() if getattr(args, "config", None) else {}
    names = {f.name for f in dataclasses.fields(Settings)}
    for key, value in vars(args).items():
        if key in names and value is not None:
            base[key] = value
    if getattr(args, "input", None):
        base["input_directory"] = args.input
    base.pop("run", None)
    return Settings.from_dict(base)


class _StopFlag:
    """First Ctrl-C: finish the current frame and stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:  # noqa: ARG002  (a signal handler)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nStopping after the current frame (Ctrl-C again to stop at once)...", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lib_videoloop.engine import Engine

    if args.resume:
        from lib_videoloop.resume import finished_video

        _refuse_flags_with_resume(args)
        video = finished_video(args.resume)
        if video is not None:
            print(f"Nothing to resume: {args.resume} is already complete.\nVideo: {video}")
            return 0
    stop = _StopFlag()
    previous = signal.signal(signal.SIGINT, stop)
    bar = None

    def progress(p: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, initial=p.done, unit="frame", dynamic_ncols=True)
        bar.set_description(p.text)
        bar.update(p.done - bar.n)

    try:
        hooks = {"on_progress": progress, "should_stop": lambda: stop.requested}
        if args.resume:
            engine = Engine.resume(args.resume, _backend(args, read_run_settings(args.resume)), **hooks)
        else:
            settings = _settings_from_args(args)
            settings.validate()
            engine = Engine(settings, _backend(args, settings.to_dict()), **hooks)
        try:
            result = engine.run()
        except (InterruptedRun, WorkersLost) as stopped:
            if bar is not None:
                bar.close()
            command = f"python -m lib_videoloop run --resume {shlex.quote(str(engine.run_dir))}"
            if args.model:
                command += f" --model {shlex.quote(args.model)}"
            reason = f"{stopped}\n" if isinstance(stopped, WorkersLost) else ""
            print(f"{reason}Stopped. The run folder is resumable:\n  {command}")
            return 1 if reason else 130
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    _print_result(result)
    return 0


def _backend(args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    """The run's backend: the workers when there are any (--workers, else the run's own), else
    diffusers with --model (on resume: the model the run recorded)."""
    workers = worker_urls(getattr(args, "workers", None) or settings.get("workers", ""))
    if workers:
        from lib_videoloop.backends.workers import WorkersBackend, cli_template

        auth = args.worker_auth or os.environ.get(WORKER_AUTH) or None
        return WorkersBackend(workers, auth=auth, template=cli_template(settings.get("sampler_name", ""), args.model))
    from lib_videoloop.backends.diffusers_backend import DiffusersBackend

    if args.resume:
        from lib_videoloop.resume import recorded_model

        args.model, _ = recorded_model(args.resume, args.model)
    elif not args.model:
        raise VideoLoopError(
            "--model", None, "is required", "Give a diffusers model folder, a checkpoint file, or tiny-random"
        )
    return DiffusersBackend(args.model, settings.get("sampler_name", ""), args.device)


def _print_result(result: Any) -> None:
    print(f"Run folder: {result.run_dir}")
    print(f"Video: {result.video}")
    if result.report:
        from lib_videoloop.report import summary_lines

        for line in summary_lines(result.report):
            print(line)


def _refuse_flags_with_resume(args: argparse.Namespace) -> None:
    """A resumed run keeps its own settings (see resume.py)."""
    from lib_videoloop.resume import refuse_settings

    # Other workers make the same frames: a resume may name the ones that are up now.
    names = {f.name for f in dataclasses.fields(Settings)} - _SKIP_FLAGS - {"workers"}
    given = {f"--{key}": value for key, value in vars(args).items() if key in names}
    for flag, key in (("input", "input"), ("--output", "output_directory"), ("--config", "config")):
        if getattr(args, key, None):
            given[flag] = getattr(args, key)
    refuse_settings(given)


def cmd_smooth(args: argparse.Namespace) -> int:
    from lib_videoloop.smooth import smooth_clip

    s = _settings_from_args(args)
    s.validate()
    out = Path(args.output)
    count = smooth_clip(s, out, denoise=args.denoise)
    print(f"Wrote {out} ({count} frames)")
    return 0


def _json_safe(value: Any) -> Any:
    """NaN and infinity as null: JSON has no NaN, and a reader of --json should not crash."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def cmd_ebsynth(args: argparse.Namespace) -> int:
    from lib_videoloop.ebsynth_export import export_ebsynth

    print(f"Wrote {export_ebsynth(args.run_dir, args.output)}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from lib_videoloop.metrics import measure_clips
    from lib_videoloop.report import summary_lines, write_plot

    if args.plot and Path(args.plot).exists():
        raise VideoLoopError(
            "--plot", args.plot, "already exists", "Give a new file name; existing files are never overwritten"
        )
    report = measure_clips(args.output, args.source, reference=args.reference)
    if args.plot:
        write_plot(report, args.plot)
    if args.json:
        summary = {k: v for k, v in report.items() if not k.startswith("per_frame")}
        print(json.dumps(_json_safe(summary), allow_nan=False))
    else:
        for line in summary_lines(report):
            print(line)
    return 0


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Like parse_args, but a flag the command does not know is reported by that command's own
    parser (its usage, not the top level's), with the closest flag it does know."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub = command.choices[args.command]
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        close = difflib.get_close_matches(flag.split("=", 1)[0], list(sub._option_string_actions), n=1)
        sub.error(f"unrecognized argument: {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return {"run": cmd_run, "smooth": cmd_smooth, "metrics": cmd_metrics, "ebsynth": cmd_ebsynth}[args.command](
            args
        )
    except VideoLoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
