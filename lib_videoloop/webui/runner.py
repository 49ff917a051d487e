"""run() of the WebUI script: p and the panel's values in, a Processed out."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from lib_videoloop.config import WORKER_AUTH, worker_urls
from lib_videoloop.engine import Engine, Progress, RunResult
from lib_videoloop.errors import InterruptedRun, WorkersLost
from lib_videoloop.media.images import to_pil
from lib_videoloop.media.store import read_run_settings
from lib_videoloop.webui.backend import WebUIBackend, color_correction_on, color_corrector
from lib_videoloop.webui.console_log import show_run_lines
from lib_videoloop.webui.panel import FROM_P, RESUME, settings_from_panel
from lib_videoloop.webui.safety import allowed_roots, check_paths, is_exposed

log = logging.getLogger(__name__)


def default_output_directory(opts: Any, data_path: str) -> str:
    chosen = (
        getattr(opts, "video_loopback_output_directory", "") if hasattr(opts, "video_loopback_output_directory") else ""
    )
    if chosen:
        return str(Path(data_path) / chosen)
    base = (
        getattr(opts, "outdir_samples", "") or getattr(opts, "outdir_img2img_samples", "") or "outputs/img2img-images"
    )
    return str(Path(data_path) / base / "video-loopback")


def run_in_webui(p: Any, values: tuple[Any, ...]) -> Any:
    from modules import paths, processing, shared

    show_run_lines()
    processing.fix_seed(p)  # once; frames get their own seeds from the engine
    base = {name: getattr(p, name) for name in FROM_P if hasattr(p, name)}
    base["resize_mode"] = base.get("resize_mode", 0) if base.get("resize_mode", 0) in (0, 1, 2) else 0
    settings, resume = settings_from_panel(values, base)
    if not settings.output_directory.strip():
        settings = replace(settings, output_directory=default_output_directory(shared.opts, paths.data_path))
    if is_exposed(shared.cmd_opts):
        check_paths(
            {"input_directory": settings.input_directory, "output_directory": settings.output_directory,
             "mask_directory": settings.mask_directory, "reference_frames_directory": settings.reference_frames_directory,
             "fastdvdnet_weights": settings.fastdvdnet_weights, RESUME: resume},
            allowed_roots(shared.opts, paths.data_path),
        )  # fmt: skip
    state = shared.state
    backend = _backend(p, settings.workers or _recorded_workers(resume), state)

    def progress(update: Progress) -> None:
        state.job_count = update.total
        state.job_no = update.done
        state.job = state.textinfo = update.text
        if update.latest is not None and hasattr(state, "assign_current_image"):
            state.assign_current_image(to_pil(update.latest))

    hooks = {
        "on_progress": progress,
        "should_stop": lambda: bool(state.interrupted or getattr(state, "stopping_generation", False)),
    }
    if resume:
        log.info("resuming %s with its own settings.json; the panel's settings are not used", resume)
    engine = Engine.resume(resume, backend, **hooks) if resume else Engine(settings, backend, **hooks)
    try:
        with backend.watching_skip() if isinstance(backend, WebUIBackend) else contextlib.nullcontext():
            result = engine.run()
    except (InterruptedRun, WorkersLost) as stopped:
        root = engine.run_dir
        reason = f"{stopped}. " if isinstance(stopped, WorkersLost) else ""
        text = f"{reason}Stopped. To finish the run, put this folder in {RESUME}: {root}"
        log.info(text)
        return processing.Processed(p, [], p.seed, text, p.subseed, infotexts=[text])
    return _processed(p, result)


def _backend(p: Any, workers: str, state: Any) -> Any:
    """This WebUI, or the workers (other WebUIs' API) with the img2img tab's values."""
    urls = worker_urls(workers)
    if not urls:
        return WebUIBackend(p)
    from lib_videoloop.backends.workers import WorkersBackend
    from lib_videoloop.webui.worker_template import template_from_p

    def interrupted() -> bool:  # the Interrupt button: the workers' jobs stop too
        return bool(state.interrupted or getattr(state, "stopping_generation", False))

    def skip_pressed() -> bool:  # the Skip button sets the flag; nothing here clears it but us
        pressed, state.skipped = bool(state.skipped), False
        return pressed

    auth = os.environ.get(WORKER_AUTH) or None
    return WorkersBackend(
        urls, auth=auth, template=template_from_p(p), should_interrupt=interrupted, skip_pressed=skip_pressed,
        correct_colours=color_corrector() if color_correction_on(p) else None,
    )  # fmt: skip


def _recorded_workers(resume: str) -> str:
    """A resumed run's own workers, when the panel names none."""
    return str(read_run_settings(resume).get("workers", "")) if resume else ""


def _processed(p: Any, result: RunResult) -> Any:
    from modules import processing
    from PIL import Image

    store = result.store
    n = result.frame_count
    picks = sorted({0, n // 2, n - 1})
    images = [to_pil(store.read_frame(result.frames_folder, i)) for i in picks]
    plot = result.run_dir / "flicker.png"
    if plot.is_file():
        with Image.open(plot) as img:
            images.append(img.convert("RGB"))
    lines = [f"Video Loopback run folder: {result.run_dir}", f"Video: {result.video}"]
    if result.report:
        from lib_videoloop.report import summary_lines

        lines += summary_lines(result.report)
    info = "\n".join(lines)
    settings = result.settings
    p.extra_generation_params["Video Loopback"] = json.dumps(
        {k: v for k, v in settings.to_dict().items() if k not in ("prompt", "negative_prompt")},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    p.extra_generation_params["Video Loopback run"] = str(result.run_dir)
    return processing.Processed(p, images, settings.seed, info, settings.subseed, infotexts=[info] * len(images))
