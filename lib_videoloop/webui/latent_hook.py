"""The latent deflicker (latent_deflicker.py) inside the WebUI's sampler.

Both WebUIs call the after-CFG callbacks once per sampling step with the step's guided result
(script_callbacks.on_cfg_after_cfg); whatever a callback leaves in params.x is what the sampler
steps with. For k-diffusion samplers, and for every sampler in Forge (its timestep samplers
convert, classic_ddim_eps_estimation), that result is the x0 estimate itself. AUTOMATIC1111's
timestep samplers (DDIM, PLMS, UniPC) give the guided noise prediction instead: x0 comes from it
and the step's latent, which the before-CFG callback (on_cfg_denoiser) saw last in its batch.

The callbacks are registered for one process_images call of the run and removed after it, so
no other job of the WebUI passes through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lib_videoloop.backends import GenerationRequest
from lib_videoloop.latent_deflicker import CallDeflicker

_NAME = "video_loopback_latent_deflicker"


def _gives_noise(denoiser: Any) -> bool:
    return type(denoiser).__name__ == "CFGDenoiserTimesteps" and not getattr(
        denoiser, "classic_ddim_eps_estimation", False
    )


def _decode(latents: Any) -> Any:
    from modules import sd_samplers_common, shared

    return (sd_samplers_common.decode_first_stage(shared.sd_model, latents).float() / 2 + 0.5).clamp(0, 1)


def _encode(images: Any) -> Any:
    from modules import sd_samplers_common, shared

    return sd_samplers_common.images_tensor_to_samples(images, None, shared.sd_model)


class _Steps:
    """The callbacks of one call, counting its sampling steps (the denoiser's own count lags by
    one in AUTOMATIC1111's state.sampling_step, which a step's callback updates after it)."""

    def __init__(self, q: Any, deflicker: CallDeflicker) -> None:
        self.q = q
        self.deflicker = deflicker
        self.step = 0
        self.latent = self.sigma = None
        self.errors: list[BaseException] = []

    def before(self, params: Any) -> None:
        self.latent, self.sigma = params.x, params.sigma

    def after(self, params: Any) -> None:
        try:
            params.x = self._x0_step(params)
        except BaseException as exc:  # the WebUI only prints a callback's error; the run must stop
            self.errors.append(exc)
            raise
        finally:
            self.step += 1

    def _x0_step(self, params: Any) -> Any:
        denoiser = getattr(getattr(self.q, "sampler", None), "model_wrap_cfg", None)
        total = getattr(denoiser, "total_steps", None) or params.total_sampling_steps
        x = params.x
        if not _gives_noise(denoiser):
            return self.deflicker(x, self.step, total)
        n = x.shape[0]
        latent, t = self.latent[-n:], self.sigma[-n:]  # the batch's own rows come last (uncond)
        a = denoiser.alphas[t.long()].to(x)[:, None, None, None]
        x0 = (latent - (1 - a).sqrt() * x) / a.sqrt()
        new = self.deflicker(x0, self.step, total)
        return x if new is x0 else ((latent - a.sqrt() * new) / (1 - a).sqrt()).to(x.dtype)


@contextlib.contextmanager
def deflicker_hook(q: Any, requests: list[GenerationRequest]) -> Iterator[None]:
    """While the block runs, process_images(q) blends the x0 estimates of the call's frames at
    the run's latent_deflicker_steps; nothing when they are off or the call has one frame."""
    deflicker = CallDeflicker.for_call(requests, _decode, _encode)
    if deflicker is None:
        yield
        return
    from modules import script_callbacks

    steps = _Steps(q, deflicker)
    script_callbacks.on_cfg_denoiser(steps.before, name=_NAME + "_latent")
    script_callbacks.on_cfg_after_cfg(steps.after, name=_NAME)
    try:
        yield
    finally:
        script_callbacks.remove_callbacks_for_function(steps.before)
        script_callbacks.remove_callbacks_for_function(steps.after)
    if steps.errors:
        raise steps.errors[0]
