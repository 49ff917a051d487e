"""A worker for tests: the part of the WebUI's HTTP API that `workers` uses, over a real HTTP
server, generating with the tiny random diffusers pipeline.

It answers /sdapi/v1/options, sd-models, sd-vae, img2img and interrupt with the fields and
status codes AUTOMATIC1111's and Forge's modules/api/api.py give (a 401 without the right
--api-auth, a 500 for a failed job). The real WebUIs are driven by tests/real_webui; this one
lets CI break workers on purpose: fail the next requests, hang, or vanish mid-job.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from lib_videoloop.backends import GenerationRequest

MODEL = {"title": "tiny-random.safetensors [0b1c2d3e4f]", "model_name": "tiny-random"}


@dataclass
class Behaviour:
    fail_next: int = 0  # img2img answers 500 this many times
    delay: float = 0.0  # seconds before each img2img answers
    vanish_after: int | None = None  # img2img requests answered before the server drops off the net
    auth: str | None = None  # user:password required
    requests: list[dict[str, Any]] = field(default_factory=list)  # img2img bodies received
    interrupts: int = 0
    headers: list[str] = field(default_factory=list)  # Authorization headers received
    model: dict[str, str] = field(default_factory=lambda: dict(MODEL))  # the one it has, loaded


class WorkerServer:
    """Use as a context manager; `url` is its address. backend: a DiffusersBackend."""

    def __init__(self, backend: Any, behaviour: Behaviour | None = None, lock: threading.Lock | None = None) -> None:
        self.backend = backend
        self.behaviour = behaviour or Behaviour()
        self.lock = lock or threading.Lock()  # one pipeline: one generation at a time
        self.interrupted = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WorkerServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.vanish()

    def vanish(self) -> None:
        """Gone from the network: the port refuses connections from now on."""
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    def img2img(self, body: dict[str, Any]) -> dict[str, Any]:
        init = _decode(body["init_images"][0])
        mask = _decode(body["mask"])[..., 0] if body.get("mask") else None
        request = GenerationRequest(
            prompt=body["prompt"], negative_prompt=body["negative_prompt"], seed=body["seed"], subseed=body["subseed"],
            subseed_strength=body["subseed_strength"], denoising_strength=body["denoising_strength"],
            steps=body["steps"], cfg_scale=body["cfg_scale"], batch_size=body["batch_size"], n_iter=body["n_iter"],
            init_image=init, mask=mask, width=body["width"], height=body["height"],
        )  # fmt: skip
        with self.lock:
            images = self.backend.generate(request)
        return {"images": [_encode(img) for img in images], "parameters": {}, "info": "{}"}


def _decode(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _encode(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _handler(server: WorkerServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"worker": server})


class _Handler(BaseHTTPRequestHandler):
    worker: WorkerServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        b = self.worker.behaviour
        given = self.headers.get("Authorization", "")
        b.headers.append(given)
        if b.auth is None or given == "Basic " + base64.b64encode(b.auth.encode()).decode():
            return True
        self._answer(401, {"detail": "Incorrect username or password"})
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        model = self.worker.behaviour.model
        answers = {
            "/sdapi/v1/options": {"sd_model_checkpoint": model["title"], "sd_vae": "Automatic"},
            "/sdapi/v1/sd-models": [model],
            "/sdapi/v1/sd-vae": [],
        }
        if self.path in answers:
            self._answer(200, answers[self.path])
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        server, b = self.worker, self.worker.behaviour
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/sdapi/v1/interrupt":
            b.interrupts += 1
            server.interrupted.set()
            self._answer(200, {})
            return
        b.requests.append(body)
        if b.vanish_after is not None and len(b.requests) > b.vanish_after:
            threading.Thread(target=server.vanish, daemon=True).start()
            self.close_connection = True  # the job is cut: no answer at all
            return
        deadline = time.monotonic() + b.delay
        while time.monotonic() < deadline and not server.interrupted.is_set():
            time.sleep(0.02)
        if b.fail_next > 0:
            b.fail_next -= 1
            self._answer(500, {"error": "RuntimeError", "detail": "CUDA out of memory"})
            return
        self._answer(200, server.img2img(body))
