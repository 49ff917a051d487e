"""Generation on other WebUIs through their HTTP API: the `workers` setting.

The run itself stays here: init images, blends, masks and the run folder are made by this
process; each frame's generation goes to a free worker as one /sdapi/v1/img2img request that
carries everything the call would use here. Within a call, frames are independent once their
init images are made, so the call's frames go out at once, one per worker, and come back in
frame order. Calls overlap (calls_at_once), across the end of a loop too (engine._Loops):
the next call's frames wait for the workers the current one frees, so no worker stands idle
between calls while the last frames of one come back, and a faster worker makes more frames
than a slower one. A frame's request is encoded while it waits for a worker, and the images
are decoded after the worker is handed on. A worker that fails (a connection refused or cut,
a timeout, a server error) is dropped and its frame sent to another, at most MAX_TRIES times;
when none is left the run stops with its folder resumable. A request the worker refuses (4xx:
a bad model name, a bad field) is the run's fault, not the worker's: it stops the run with the
worker's answer.

URLs are user input: only http(s) with a host, no credentials in them (config.worker_urls);
the API user and password (the workers' --api-auth) come from VIDEO_LOOPBACK_WORKER_AUTH or
the CLI's --worker-auth, and are never written to settings.json or a log.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lib_videoloop.backends import GenerationRequest
from lib_videoloop.errors import InterruptedRun, VideoLoopError, WorkersLost, short
from lib_videoloop.media.images import to_uint8

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 20.0  # seconds for the questions asked before the run
REQUEST_TIMEOUT = 900.0  # seconds for one frame's generation
MAX_TRIES = 3  # workers a frame is sent to before the run stops


class WorkerFault(Exception):
    """The worker did not answer (gone, cut off, timed out, or a server error)."""


@dataclass(eq=False)  # one worker is one object: held in sets by identity
class Worker:
    url: str  # without credentials: safe to show
    alive: bool = True


class WorkerClient:
    """JSON over HTTP to one WebUI's API, with Basic auth when given."""

    def __init__(self, auth: str | None) -> None:
        self._header = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}

    def call(
        self, worker: Worker, path: str, payload: dict[str, Any] | bytes | None = None, timeout: float = CHECK_TIMEOUT
    ) -> Any:
        """payload: a JSON object, or one encoded already (a frame's, made before a worker is free)."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        headers = {"Content-Type": "application/json", **self._header}
        request = urllib.request.Request(worker.url + path, data=data, headers=headers)  # http(s): config.worker_urls
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if exc.code >= 500:
                raise WorkerFault(f"HTTP {exc.code}: {short(text, quote=False)}") from None
            raise VideoLoopError(
                "workers", worker.url, f"refused {path} with HTTP {exc.code}: {short(text, quote=False)}",
                "Check the worker's --api and --api-auth (VIDEO_LOOPBACK_WORKER_AUTH) and its log",
            ) from None  # fmt: skip
        except (OSError, ValueError) as exc:  # refused, cut, timed out, or not JSON
            raise WorkerFault(f"{type(exc).__name__}: {exc}") from None


def encode_png(image: np.ndarray) -> str:
    """An image (float HxWx3, or an HxW mask) as the API takes it: base64 8-bit PNG, as the WebUI
    itself makes of an image given to it."""
    from lib_videoloop.media.png_codec import encode_png as encode

    return base64.b64encode(encode(to_uint8(image))).decode()


def decode_png(text: str) -> np.ndarray:
    """An image the API sent (base64 PNG, RGB as the WebUI saves it) as float HxWx3. Straight
    to OpenCV: the WebUI's PNGs are never the run folder's own kind (png_codec)."""
    from lib_videoloop.media.store import decode_any_png as decode

    return decode(base64.b64decode(text))


class WorkersBackend:
    """template: the img2img fields every request carries (sampler, scheduler, the mask's
    settings, the model and VAE as override_settings, ControlNet units); each frame adds its
    own. should_interrupt: polled while a call runs; when it says so, every worker's current
    job is interrupted and the run stops (InterruptedRun). skip_pressed: polled before and
    while a call runs, answering once per Skip (it clears the host's flag); a skipped call's
    jobs are interrupted, and its frames keep their previous images (take_skip); a Skip stops
    every call that has a job on a worker. correct_colours: (the frame's input, its images) ->
    the images colour-corrected, as the WebUI's own option does; it makes every call carry the
    input frame. Calls may run at once on several threads: they share the workers, a worker
    freed by a call going to that call's next frame first."""

    name = "workers"

    def __init__(
        self,
        urls: list[str],
        *,
        auth: str | None = None,
        template: dict[str, Any] | None = None,
        should_interrupt: Callable[[], bool] | None = None,
        skip_pressed: Callable[[], bool] | None = None,
        correct_colours: Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]] | None = None,
    ) -> None:
        self.workers = [Worker(url.rstrip("/")) for url in urls]
        self.client = WorkerClient(auth)
        self.template = dict(template or {})
        self.should_interrupt = should_interrupt or (lambda: False)
        self.skip_pressed = skip_pressed or (lambda: False)
        self._skips = 0  # Skips seen so far: a call running when one is seen is skipped
        self._skipped = threading.local()  # per thread: the engine asks on the call's thread
        self._abandoned = threading.Event()
        self._changed = threading.Condition()  # a worker freed or a job done; guards _busy
        self._busy: set[Worker] = set()  # workers holding a call's job (or kept for its next)
        self.correct_colours = correct_colours
        controlnet = self.template.get("alwayson_scripts", {}).get("controlnet")
        self.wants_input_frames = bool(controlnet) or correct_colours is not None
        self.model_name: str | None = (self.template.get("override_settings") or {}).get("sd_model_checkpoint")

    # -- before the run ----------------------------------------------------------------------
    def check(self, uses_subseed: bool, uses_mask: bool) -> None:  # noqa: ARG002 -- a WebUI does both
        """Every worker answers and has the model (and VAE) the run asks for; without one named,
        they all have the same one loaded. Raises naming the worker, before any work."""
        models = {}
        for worker in self.workers:
            models[worker.url] = self._model_of(worker)
        if self.model_name is None:
            loaded = set(models.values())
            if len(loaded) > 1:
                listing = ", ".join(f"{url}: {model}" for url, model in models.items())
                raise VideoLoopError(
                    "workers", listing, "have different models loaded, so their frames would differ",
                    "Load one model on every worker, or name it (--model, or the WebUI's own checkpoint)",
                )  # fmt: skip
            self.model_name = loaded.pop()

    def _model_of(self, worker: Worker) -> str:
        try:
            options = self.client.call(worker, "/sdapi/v1/options")
            titles = self.client.call(worker, "/sdapi/v1/sd-models")
        except WorkerFault as exc:
            raise VideoLoopError(
                "workers", worker.url, f"does not answer ({exc})", "Start it with --api, or remove it from workers"
            ) from None
        wanted = self.model_name
        if wanted is not None and not any(wanted in _names(m) for m in titles):
            raise VideoLoopError(
                "workers", worker.url, f"does not have the model {wanted!r}",
                "Put the same checkpoint in every worker's models/Stable-diffusion folder",
            )  # fmt: skip
        vae = (self.template.get("override_settings") or {}).get("sd_vae")
        if vae and vae not in ("Automatic", "None"):
            names = [v.get("model_name") for v in self.client.call(worker, "/sdapi/v1/sd-vae")]
            if vae not in names:
                raise VideoLoopError("workers", worker.url, f"does not have the VAE {vae!r}", "Put it in models/VAE")
        return str(options.get("sd_model_checkpoint"))

    # -- the calls ---------------------------------------------------------------------------
    def frames_per_call(self, request: GenerationRequest, setting: int) -> int:  # noqa: ARG002
        """As many frames as workers answer, so that each has one (or the run's setting)."""
        return setting or max(1, sum(w.alive for w in self.workers))

    def calls_at_once(self, frames_per_call: int) -> int:
        """Calls to keep going: enough for a frame on every worker, and one more whose frames
        take the workers a call frees while its last frames come back."""
        alive = max(1, sum(w.alive for w in self.workers))
        return -(-alive // max(1, frames_per_call)) + 1

    def generate(self, request: GenerationRequest) -> list[np.ndarray]:
        return self.generate_frames([request])[0]

    def generate_frames(self, requests: list[GenerationRequest]) -> list[list[np.ndarray]]:
        """Each request on a free worker, one request per worker at a time; results in order."""
        return _Dispatch(self, requests).run()

    def take_skip(self) -> bool:
        """Whether the user skipped this thread's last call; clears it."""
        skipped = getattr(self._skipped, "value", False)
        self._skipped.value = False
        return skipped

    def abandon_calls(self, abandon: bool = True) -> None:
        """The calls running on other threads stop (their jobs interrupted, InterruptedRun):
        the run is ending with an error. abandon=False lets calls run again."""
        if abandon:
            self._abandoned.set()
        else:
            self._abandoned.clear()
        self._notify()

    def _notify(self, *_: object) -> None:
        with self._changed:
            self._changed.notify_all()

    def _free(self) -> Worker | None:
        """A live worker no call holds (call with _changed held)."""
        return next((w for w in self.workers if w.alive and w not in self._busy), None)

    def _take_free(self) -> Worker | None:
        """A live worker no call holds, now held (call with _changed held)."""
        worker = self._free()
        if worker is not None:
            self._busy.add(worker)
        return worker

    def _release(self, workers: list[Worker]) -> None:
        with self._changed:
            self._busy.difference_update(workers)
            self._changed.notify_all()

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        """The img2img request of one frame: the template and the frame's own values."""
        r = request
        body = {
            **self.template,
            "init_images": [encode_png(r.init_image)],
            "prompt": r.prompt, "negative_prompt": r.negative_prompt,
            "seed": r.seed, "subseed": r.subseed, "subseed_strength": r.subseed_strength,
            "denoising_strength": r.denoising_strength, "steps": r.steps, "cfg_scale": r.cfg_scale,
            "width": r.width, "height": r.height, "batch_size": r.batch_size, "n_iter": r.n_iter,
            "save_images": False, "send_images": True, "do_not_save_samples": True, "do_not_save_grid": True,
        }  # fmt: skip
        if r.mask is not None:
            body["mask"] = encode_png(r.mask)
        if self.model_name:
            body["override_settings"] = {**body.get("override_settings", {}), "sd_model_checkpoint": self.model_name}
            body["override_settings_restore_afterwards"] = False  # the worker keeps it loaded
        units = body.get("alwayson_scripts", {}).get("controlnet", {}).get("args")
        if units and r.control_images:
            body["alwayson_scripts"] = {**body["alwayson_scripts"], "controlnet": {"args": _with_frames(units, r)}}
        return body

    def post(self, worker: Worker, body: bytes, image_count: int) -> list[str]:
        """A frame's job (its payload, encoded) on the worker: its images as the API sends them."""
        answer = self.client.call(worker, "/sdapi/v1/img2img", body, REQUEST_TIMEOUT)
        images = answer.get("images") or []
        if len(images) < image_count:
            raise WorkerFault(f"returned {len(images)} images, expected {image_count}")
        return images[:image_count]

    def images(self, request: GenerationRequest, sent: list[str]) -> list[np.ndarray]:
        """A frame's images from the worker's answer, colour-corrected when the run asks."""
        made = [decode_png(text) for text in sent]
        if self.correct_colours is not None and request.input_image is not None:
            made = self.correct_colours(request.input_image, made)
        return made

    def interrupt(self, workers: list[Worker]) -> None:
        for worker in workers:
            try:
                self.client.call(worker, "/sdapi/v1/interrupt", {})
            except (WorkerFault, VideoLoopError) as exc:
                log.warning("%s could not be interrupted: %s", worker.url, exc)


def _names(model: dict[str, Any]) -> set[str]:
    """What a checkpoint answers to: AUTOMATIC1111's option holds its title ("name.safetensors
    [hash]"), Forge's the file name alone; a user may give either, or the short model_name."""
    title = str(model.get("title", ""))
    filename = str(model.get("filename", "")).replace("\\", "/").rsplit("/", 1)[-1]
    return {title, title.split(" [", 1)[0], str(model.get("model_name", "")), filename} - {""}


def cli_template(sampler_name: str, model: str | None) -> dict[str, Any]:
    """The command line's requests: the sampler and checkpoint asked for, and the img2img tab's
    own defaults for a mask (the run keeps the result inside the mask itself)."""
    template: dict[str, Any] = {"mask_blur": 4, "inpainting_fill": 1, "inpaint_full_res": False}
    if sampler_name:
        template["sampler_name"] = sampler_name
    if model:
        template["override_settings"] = {"sd_model_checkpoint": model}
    return template


def _with_frames(units: list[dict[str, Any]], request: GenerationRequest) -> list[dict[str, Any]]:
    """The ControlNet units with the frame's images: each enabled unit without an image of its
    own takes the next reference folder's frame (as webui/controlnet.py does in the WebUI)."""
    given, out = 0, []
    for unit in units:
        if unit.get("enabled") and not unit.get("image"):
            image = request.control_images[min(given, len(request.control_images) - 1)]
            out.append({**unit, "image": encode_png(image)})
            given += 1
        else:
            out.append(unit)
    return out


class _Dispatch:
    """One call's frames over the workers, beside the other calls running at once: a worker
    freed by this call goes to its next frame first, then back to the others."""

    def __init__(self, backend: WorkersBackend, requests: list[GenerationRequest]) -> None:
        self.backend, self.requests = backend, requests
        self.results: list[list[np.ndarray] | None] = [None] * len(requests)
        self.tries = [0] * len(requests)
        self.waiting = deque(range(len(requests)))
        self.running: dict[Future[list[str]], tuple[Worker, int]] = {}
        self.bodies: list[bytes | None] = [None] * len(requests)  # each frame's job, once encoded
        self.kept: list[Worker] = []  # freed by this call while its frames wait: held for them
        self.skips = backend._skips

    def run(self) -> list[list[np.ndarray]]:
        backend = self.backend
        threads = min(len(backend.workers), len(self.requests))  # jobs at once: one a worker, at most
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="videoloop-worker") as pool:
            try:
                while self.waiting or self.running:
                    if self._skip_seen():
                        self._skip()
                        break
                    self._send(pool)
                    if not self._encode_one():
                        self._wait()
                    if backend.should_interrupt() or backend._abandoned.is_set():
                        raise InterruptedRun("interrupted")
                    answers = [self._receive(f) for f in [f for f in self.running if f.done()]]
                    self._send(pool)  # the freed workers' next jobs go out before the answers are decoded
                    for index, sent in filter(None, answers):
                        self.results[index] = backend.images(self.requests[index], sent)
            except BaseException:  # a stop, Ctrl-C or an error: the workers' jobs end too
                busy = [worker for worker, _ in self.running.values()]
                if busy:
                    backend.interrupt(busy)
                for future in self.running:
                    future.cancel()
                raise
            finally:
                pool.shutdown(wait=True)  # the jobs' answers are in (or cut): their workers are free
                backend._release([worker for worker, _ in self.running.values()] + self.kept)
        return [r if r is not None else [] for r in self.results]

    def _skip_seen(self) -> bool:
        """Whether a Skip came while this call had a job on a worker (seen here or by another call)."""
        backend = self.backend
        if backend.skip_pressed():
            with backend._changed:
                backend._skips += 1
        if backend._skips == self.skips:
            return False
        self.skips = backend._skips
        return bool(self.running)

    def _skip(self) -> None:
        """The call's frames are dropped: the workers' current jobs end (the pool waits for
        their answers, which are not read) and nothing more is sent."""
        self.backend._skipped.value = True
        self.waiting.clear()
        busy = [worker for worker, _ in self.running.values()]
        if busy:
            self.backend.interrupt(busy)

    # A frame's job is encoded while it waits for a worker, and the images a worker sends are
    # decoded once the worker is handed on: between two jobs a worker waits only for the HTTP
    # exchange. Frames sent as soon as the call starts are encoded on their job's thread.
    def _body(self, index: int) -> bytes:
        body = self.bodies[index]
        if body is None:
            body = self.bodies[index] = json.dumps(self.backend.payload(self.requests[index])).encode()
        return body

    def _encode_one(self) -> bool:
        """Encodes the job of one waiting frame; False when every waiting frame's is ready."""
        index = next((i for i in self.waiting if self.bodies[i] is None), None)
        if index is None:
            return False
        self._body(index)
        return True

    def _post(self, worker: Worker, index: int) -> list[str]:
        return self.backend.post(worker, self._body(index), self.requests[index].image_count)

    def _wait(self) -> None:
        """Until one of this call's jobs is done, a worker is free for its waiting frames, or 0.2 s."""
        backend = self.backend

        def changed() -> bool:
            if any(f.done() for f in self.running):
                return True
            return bool(self.waiting) and backend._free() is not None

        with backend._changed:
            backend._changed.wait_for(changed, timeout=0.2)

    def _send(self, pool: ThreadPoolExecutor) -> None:
        backend = self.backend
        with backend._changed:
            while self.waiting:
                worker = self.kept.pop(0) if self.kept else backend._take_free()
                if worker is None:
                    break
                index = self.waiting.popleft()
                self.tries[index] += 1
                future = pool.submit(self._post, worker, index)
                self.running[future] = (worker, index)
                future.add_done_callback(backend._notify)
        if self.waiting and not self.running and not any(w.alive for w in backend.workers):
            raise WorkersLost(
                "workers", ", ".join(w.url for w in backend.workers), "none of them answers any more",
                "Start them again and resume the run: its folder keeps every frame made so far",
            )  # fmt: skip

    def _receive(self, future: Future[list[str]]) -> tuple[int, list[str]] | None:
        """The frame's index and images as sent, its worker handed on; None when the frame goes
        to another worker."""
        worker, index = self.running.pop(future)
        try:
            sent = future.result()
        except WorkerFault as exc:
            worker.alive = False
            self.backend._release([worker])
            log.warning("worker %s failed (%s); its frame goes to another", worker.url, exc)
            if self.tries[index] >= MAX_TRIES:
                raise WorkersLost(
                    "workers", worker.url, f"a frame failed on {MAX_TRIES} workers, the last time with: {exc}",
                    "Check the workers' logs, then resume the run",
                ) from None  # fmt: skip
            self.waiting.appendleft(index)
            return None
        except BaseException:
            self.backend._release([worker])
            raise
        if self.waiting:
            self.kept.append(worker)
        else:
            self.backend._release([worker])
        return index, sent
