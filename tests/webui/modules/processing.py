"""modules.processing: img2img processing objects and process_images, generating for real with
the tiny diffusers pipeline. Mirrors the state that the real p keeps between calls."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from modules import flavour, shared

_pipeline = None


def _backend():
    global _pipeline
    if _pipeline is None:
        from lib_videoloop.backends.diffusers_backend import DiffusersBackend

        _pipeline = DiffusersBackend("tiny-random", device="cpu")
    return _pipeline


class StableDiffusionProcessing:
    def __init__(self, prompt: str = "", negative_prompt: str = "", seed: int = -1, subseed: int = -1, subseed_strength: float = 0,
                 sampler_name: str = "Euler a", batch_size: int = 1, n_iter: int = 1, steps: int = 20, cfg_scale: float = 7.0,
                 width: int = 512, height: int = 512, outpath_samples: str | None = None, do_not_save_samples: bool = False,
                 do_not_save_grid: bool = False, **kwargs: Any) -> None:  # fmt: skip
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.seed, self.subseed, self.subseed_strength = seed, subseed, subseed_strength
        self.sampler_name, self.batch_size, self.n_iter, self.steps, self.cfg_scale = (
            sampler_name,
            batch_size,
            n_iter,
            steps,
            cfg_scale,
        )
        self.width, self.height = width, height
        self.outpath_samples = outpath_samples
        self.do_not_save_samples, self.do_not_save_grid = do_not_save_samples, do_not_save_grid
        self.extra_generation_params: dict[str, Any] = {}
        self.override_settings: dict[str, Any] = dict(kwargs.pop("override_settings", None) or {})
        self.styles: list[str] = list(kwargs.pop("styles", None) or [])
        self.scheduler: str | None = kwargs.pop("scheduler", None)
        self.override_settings_restore_afterwards = True
        self.scripts: Any = None
        self.script_args: tuple = ()
        self.sd_model_name: str | None = None
        self.sd_model_hash: str | None = None
        self.closed = False
        if flavour.current == "forge":
            self.latents_after_sampling: list = []
            self.pixels_after_sampling: list = []
            self.extra_result_images: list = []
        for key, value in kwargs.items():
            setattr(self, key, value)

    def close(self) -> None:
        self.closed = True


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, init_images: list | None = None, resize_mode: int = 0, denoising_strength: float = 0.75, image_mask: Any = None,
                 mask_blur: int = 4, inpainting_fill: int = 0, inpaint_full_res: bool = True, inpaint_full_res_padding: int = 0,
                 inpainting_mask_invert: int = 0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.init_images = init_images
        self.resize_mode = resize_mode
        self.denoising_strength = denoising_strength
        self.image_mask = image_mask
        self.mask_blur = mask_blur
        self.inpainting_fill = inpainting_fill
        self.inpaint_full_res = inpaint_full_res
        self.inpaint_full_res_padding = inpaint_full_res_padding
        self.inpainting_mask_invert = inpainting_mask_invert
        self.mask_for_overlay = None
        self.overlay_images = None
        self.paste_to = None
        self.color_corrections = None

    def init(self) -> None:
        """Like the real init(): the overlay state is set only when there is a mask, so it stays
        behind on p for a later call without one."""
        if self.init_images is None or not self.init_images:
            raise ValueError("img2img needs an init image")
        # One init image serves the whole batch; several are one per batch item (and set the batch
        # size), as the real init() does.
        if len(self.init_images) > 1:
            if len(self.init_images) > self.batch_size:
                raise RuntimeError(
                    f"bad number of images passed: {len(self.init_images)}; expecting {self.batch_size} or less"
                )
            self.batch_size = len(self.init_images)
        if self.image_mask is not None:
            mask = (
                self.image_mask.convert("RGBA").split()[-1]
                if self.image_mask.mode == "RGBA"
                else self.image_mask.convert("L")
            )
            if self.inpainting_mask_invert:
                mask = Image.eval(mask, lambda v: 255 - v)
            if self.mask_blur:
                mask = mask.filter(ImageFilter.GaussianBlur(self.mask_blur))
            self.mask_for_overlay = mask.resize((self.width, self.height))
            self.overlay_images = [img.convert("RGB").resize((self.width, self.height)) for img in self.init_images]
            self.paste_to = (0, 0, self.width, self.height)
        if shared.opts.img2img_color_correction and self.color_corrections is None:
            from modules.processing_color import setup_color_correction

            self.color_corrections = [setup_color_correction(img) for img in self.init_images]


class Processed:
    def __init__(self, p: Any, images_list: list, seed: int = -1, info: str = "", subseed: int | None = None, all_prompts: list | None = None,
                 all_negative_prompts: list | None = None, all_seeds: list | None = None, all_subseeds: list | None = None,
                 index_of_first_image: int = 0, infotexts: list | None = None, comments: str = "", extra_images_list: list | None = None) -> None:  # fmt: skip
        self.images = images_list
        self.extra_images = extra_images_list or []
        self.seed, self.subseed, self.info = seed, subseed, info
        self.all_seeds, self.all_subseeds = all_seeds or [seed], all_subseeds or [subseed]
        self.index_of_first_image = index_of_first_image
        self.infotexts = infotexts or [info]
        self.prompt = getattr(p, "prompt", "")
        self.all_prompts = all_prompts or [self.prompt]
        self.comments = comments


def fix_seed(p: Any) -> None:
    if p.seed is None or p.seed == -1:
        p.seed = random.randrange(4294967294)
    if p.subseed is None or p.subseed == -1:
        p.subseed = random.randrange(4294967294)


def create_infotext(
    p: Any,
    all_prompts: list,
    all_seeds: list,
    all_subseeds: list,
    comments: Any = None,
    iteration: int = 0,
    position_in_batch: int = 0,
    **kwargs: Any,
) -> str:
    index = position_in_batch + iteration * p.batch_size
    params = {"Steps": p.steps, "Sampler": p.sampler_name, "CFG scale": p.cfg_scale, "Seed": all_seeds[index], "Size": f"{p.width}x{p.height}",
              "Denoising strength": getattr(p, "denoising_strength", None), **p.extra_generation_params}  # fmt: skip
    text = ", ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
    negative = p.negative_prompt[index] if isinstance(p.negative_prompt, list) else p.negative_prompt
    return f"{all_prompts[index]}\nNegative prompt: {negative}\n{text}"


def _controlnet_units(p: Any) -> list:
    runner = p.scripts
    if runner is None:
        return []
    for script in runner.alwayson_scripts:
        if "controlnet" in script.title().lower():
            return [u for u in p.script_args[script.args_from : script.args_to] if getattr(u, "enabled", False)]
    return []


def process_images(p: StableDiffusionProcessingImg2Img) -> Processed:
    """As the real one: p.override_settings hold for this call only (an API request's, say)."""
    stored = {k: shared.opts.data[k] for k in p.override_settings if k in shared.opts.data}
    try:
        for key, value in p.override_settings.items():
            shared.opts.data[key] = value
        return _process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            shared.opts.data.update(stored)


class _Denoiser:
    """p.sampler.model_wrap_cfg of a k-diffusion sampler: its step count, and x0 from each step."""

    def __init__(self) -> None:
        self.step = 0
        self.total_steps = 0


class _Sampler:
    def __init__(self) -> None:
        self.model_wrap_cfg = _Denoiser()


def _sample(p: Any, requests: list) -> list:
    """The batch's images. One by one as the tiny pipeline makes them; while sampler callbacks
    are registered, the batch in one call whose every step goes through them as the real
    sampler's does: cfg_denoiser with the step's latent, cfg_after_cfg with its x0 estimate."""
    from modules import script_callbacks

    backend = _backend()
    if not script_callbacks.callback_map["callbacks_cfg_after_cfg"]:
        return [backend.generate(r)[0] for r in requests]
    from lib_videoloop.backends.x0_hook import x0_transform

    p.sampler = _Sampler()
    denoiser = p.sampler.model_wrap_cfg

    def through_callbacks(x0: Any, step: int, total: int) -> Any:
        denoiser.step, denoiser.total_steps = step, total
        script_callbacks.cfg_denoiser_callback(
            script_callbacks.CFGDenoiserParams(None, None, None, step, total, None, None, denoiser)
        )
        params = script_callbacks.AfterCFGCallbackParams(x0, step, total)
        script_callbacks.cfg_after_cfg_callback(params)
        return params.x

    with x0_transform(backend.img2img, through_callbacks, len(requests), p.cfg_scale):
        return [images[0] for images in backend.generate_frames(requests)]


def _after_sampling(p: Any, image: Image.Image, k: int) -> Image.Image:
    """Batch item k as process_images finishes it: colour correction, then the inpaint overlay."""
    if p.color_corrections is not None:
        from modules.processing_color import apply_color_correction

        image = apply_color_correction(p.color_corrections[min(k, len(p.color_corrections) - 1)], image)
    if p.mask_for_overlay is not None:  # composite over the (possibly stale) overlay, as the real one does
        overlay = p.overlay_images[min(k, len(p.overlay_images) - 1)]
        image = Image.composite(image, overlay, p.mask_for_overlay)
    return image


def _around_the_images(p: Any, images: list) -> tuple[int, list]:
    """What lands beside the generated images: the grid first (when asked for), ControlNet's
    detect maps (among the images in AUTOMATIC1111, as extra images in Forge), and the model's
    name on p. Returns the index of the first generated image and the extra images."""
    index_of_first_image = 0
    if shared.opts.return_grid and len(images) > 1 and not p.do_not_save_grid:
        images.insert(0, Image.new("RGB", (p.width * 2, p.height)))  # the grid comes first
        index_of_first_image = 1
    detect_maps = [Image.fromarray(np.asarray(img, dtype=np.uint8)) for img in p.controlnet_inputs]
    extra = []
    if flavour.current == "forge":
        extra = detect_maps
        p.extra_result_images.extend(detect_maps)
    else:
        images.extend(detect_maps)
    p.sd_model_name, p.sd_model_hash = "tiny-random-sd", "0000"
    if flavour.current == "forge":
        shared.sd_model = shared._LoadedModel()  # loaded lazily by the first generation
    return index_of_first_image, extra


def _process_images_inner(p: StableDiffusionProcessingImg2Img) -> Processed:
    from lib_videoloop.backends import GenerationRequest
    from lib_videoloop.media.images import from_pil, to_pil
    from lib_videoloop.media.resize import resize_frame

    if p.closed:
        raise RuntimeError("process_images on a closed p")
    fix_seed(p)
    p.init()
    inits = [resize_frame(from_pil(img.convert("RGB")), p.width, p.height, p.resize_mode) for img in p.init_images]
    mask = None if p.mask_for_overlay is None else (np.asarray(p.mask_for_overlay, np.float32) / 255 > 0.5)
    mask = None if mask is None else mask.astype(np.float32)
    # A unit without its own image uses the img2img init image, as the real extensions do.
    init = np.asarray(p.init_images[0].convert("RGB"))
    p.controlnet_inputs = [u.image if u.image is not None else init for u in _controlnet_units(p)]
    if shared.state.job_count == -1:
        shared.state.job_count = p.n_iter
    images: list[Image.Image] = []
    # As setup_prompts and process_images_inner: a list is one value per image; else seed + k
    # only without variation strength, subseed + k always.
    count = p.batch_size * p.n_iter
    all_prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt] * count
    all_negative = p.negative_prompt if isinstance(p.negative_prompt, list) else [p.negative_prompt] * count
    all_seeds = (
        p.seed if isinstance(p.seed, list) else [p.seed + (k if p.subseed_strength == 0 else 0) for k in range(count)]
    )
    all_subseeds = p.subseed if isinstance(p.subseed, list) else [p.subseed + k for k in range(count)]
    for n in range(p.n_iter):
        if shared.state.skipped:  # the real one clears a Skip at the start of every batch
            shared.state.skipped = False
        if shared.state.interrupted or shared.state.stopping_generation:
            break
        shared.state.job = f"Batch {n + 1} out of {p.n_iter}"
        requests = [
            GenerationRequest(
                init_image=inits[min(k, len(inits) - 1)], mask=mask, prompt=all_prompts[n * p.batch_size + k],
                negative_prompt=all_negative[n * p.batch_size + k], seed=all_seeds[n * p.batch_size + k],
                subseed=all_subseeds[n * p.batch_size + k], subseed_strength=0.0, denoising_strength=p.denoising_strength,
                steps=p.steps, cfg_scale=p.cfg_scale, width=p.width, height=p.height, batch_size=1, n_iter=1,
            )
            for k in range(p.batch_size)
        ]  # fmt: skip
        for k, generated in enumerate(_sample(p, requests)):
            image = _after_sampling(p, to_pil(generated), k)
            image.info["parameters"] = create_infotext(
                p, all_prompts, all_seeds, all_subseeds, iteration=n, position_in_batch=k
            )
            images.append(image)
            if shared.opts.return_mask and p.mask_for_overlay is not None:
                images.append(p.mask_for_overlay.convert("RGB"))
        if flavour.current == "forge":
            p.latents_after_sampling.append(object())
            p.pixels_after_sampling.append(object())
        shared.state.nextjob()
    p.color_corrections = None  # built by init() only when None, and reset after every call
    index_of_first_image, extra = _around_the_images(p, images)
    return Processed(p, images, p.seed, images[index_of_first_image].info.get("parameters", "") if images else "", p.subseed,
                     all_prompts, None, all_seeds, all_subseeds, index_of_first_image, extra_images_list=extra)  # fmt: skip


from modules.processing_color import apply_color_correction, setup_color_correction  # noqa: E402,F401
