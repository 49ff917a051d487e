"""A diffusers pipeline's x0 estimates, open to change at every sampling step.

The pipelines call the UNet once per step and step the scheduler towards the image the noise
prediction implies. A forward hook on the UNet turns the guided prediction into that image (x0),
lets a transform change it, and turns the changed image back into a prediction; the difference
is added to the conditional and the unconditional halves alike, so classifier-free guidance
gives exactly the changed prediction. The UNet's input is the latent in the DDPM form
sqrt(a) x0 + sqrt(1 - a) noise for every scheduler (the sigma schedulers' scale_model_input puts
it there), so one formula serves them all; a comes from the scheduler's alphas_cumprod at the
step's timestep (interpolated in log sigma for the fractional timesteps of Karras sigmas, the
inverse of diffusers' own sigma-to-timestep).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def _log_sigmas(scheduler: Any) -> np.ndarray:
    cumulative = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)
    return 0.5 * np.log((1 - cumulative) / cumulative)


def _alpha(log_sigmas: np.ndarray, timestep: Any) -> float:
    sigma = np.exp(np.interp(float(timestep), np.arange(len(log_sigmas)), log_sigmas))
    return float(1 / (1 + sigma * sigma))


def _x0(prediction: str, pred: Any, x: Any, ra: float, rb: float) -> Any:
    """The image a UNet's prediction implies, for each of diffusers' prediction types."""
    if prediction == "epsilon":
        return (x - rb * pred) / ra
    if prediction == "v_prediction":
        return ra * x - rb * pred
    return pred  # "sample": the prediction is the image


def _prediction(prediction: str, x0: Any, x: Any, ra: float, rb: float) -> Any:
    """The prediction that implies image x0 (the inverse of _x0)."""
    if prediction == "epsilon":
        return (x - ra * x0) / rb
    if prediction == "v_prediction":
        return (ra * x - x0) / rb
    return x0


@contextlib.contextmanager
def x0_transform(
    pipe: Any, transform: Callable[[Any, int, int], Any], images: int, guidance_scale: float
) -> Iterator[None]:
    """While the block runs, each UNet call of `pipe` (one a step) passes its x0 estimate of the
    `images` images through transform(x0, step, total steps). Removed on leaving the block."""
    import torch

    scheduler = pipe.scheduler
    prediction = getattr(scheduler.config, "prediction_type", "epsilon")
    log_sigmas = _log_sigmas(scheduler)
    calls = [0]

    def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        out = output[0] if isinstance(output, tuple) else output.sample
        step = calls[0]
        calls[0] += 1
        guided = out.shape[0] == 2 * images  # [unconditional, conditional], as the pipelines stack them
        if guided:
            uncond, cond = out.float().chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        else:
            pred = out.float()
        x = sample[:images, : pred.shape[1]].float()  # an inpainting UNet's input also holds the mask
        t = timestep.flatten()[0] if torch.is_tensor(timestep) else timestep
        a = _alpha(log_sigmas, t)
        ra, rb = a**0.5, (1 - a) ** 0.5
        x0 = _x0(prediction, pred, x, ra, rb)
        changed = transform(x0, step, getattr(pipe, "_num_timesteps", 0) or 0)
        if changed is x0:
            return output
        delta = _prediction(prediction, changed.float(), x, ra, rb) - pred
        out = (out.float() + (torch.cat([delta, delta]) if guided else delta)).to(out.dtype)
        return (out, *output[1:]) if isinstance(output, tuple) else type(output)(sample=out)

    handle = pipe.unet.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
