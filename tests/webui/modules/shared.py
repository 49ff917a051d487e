"""shared.state, shared.opts, shared.cmd_opts and shared.sd_model, as the WebUI has them."""

from __future__ import annotations

import argparse
from typing import Any


class State:
    def __init__(self) -> None:
        self.interrupted = False
        self.skipped = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.textinfo = None
        self.current_image = None
        self.sampling_step = 0
        self.history: list[tuple[int, int, str]] = []  # (job_no, job_count, job) seen by the UI

    def interrupt(self) -> None:
        self.interrupted = True

    def skip(self) -> None:
        self.skipped = True

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0
        self.history.append((self.job_no, self.job_count, self.job))

    def assign_current_image(self, image: Any) -> None:
        self.current_image = image

    def begin(self, job: str = "(unknown)") -> None:
        self.__init__()
        self.job = job

    def end(self) -> None:
        self.job = ""
        self.job_count = 0


class OptionInfo:
    def __init__(
        self,
        default: Any = None,
        label: str = "",
        component: Any = None,
        component_args: Any = None,
        onchange: Any = None,
        section: Any = None,
        **kwargs: Any,
    ) -> None:
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section

    def info(self, text: str) -> "OptionInfo":
        return self


class Options:
    def __init__(self) -> None:
        object.__setattr__(self, "data", {})
        object.__setattr__(self, "data_labels", {})
        for key, value in {
            "img2img_color_correction": False, "return_grid": True, "return_mask": False, "return_mask_composite": False,
            "outdir_samples": "", "outdir_img2img_samples": "outputs/img2img-images", "enable_pnginfo": True,
            "img2img_fix_steps": False,
            # shared_options.py's defaults; the WebUI sets sd_model_checkpoint to the title it loaded.
            "sd_model_checkpoint": "tiny-random-sd [0000]", "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1,
        }.items():  # fmt: skip
            self.data[key] = value

    def add_option(self, key: str, info: OptionInfo) -> None:
        # The real settings page (ui_settings.create_setting_component) guesses a component only
        # for str, int and bool defaults and raises for anything else, which stops the WebUI.
        if info.component is None and type(info.default) not in (str, int, bool):
            raise Exception(f"bad options item type: {type(info.default)} for key {key}")
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, item: str) -> Any:
        if item in self.data:
            return self.data[item]
        raise AttributeError(item)

    def __setattr__(self, key: str, value: Any) -> None:
        self.data[key] = value


class _CheckpointInfo:
    model_name = "tiny-random-sd"
    title = "tiny-random-sd [0000]"


class _LoadedModel:
    sd_checkpoint_info = _CheckpointInfo()
    sd_model_hash = "0000"


class _FakeModelPlaceholder:
    """Forge, before the first generation: a placeholder without sd_checkpoint_info."""


state = State()
opts = Options()
cmd_opts = argparse.Namespace(
    listen=False, share=False, enable_insecure_extension_access=False, server_name=None, models_dir=None, data_dir="."
)
sd_model: Any = _LoadedModel()


def reset() -> None:
    global sd_model
    from modules import flavour

    state.__init__()
    opts.__init__()
    cmd_opts.listen = cmd_opts.share = cmd_opts.enable_insecure_extension_access = False
    sd_model = _FakeModelPlaceholder() if flavour.current == "forge" else _LoadedModel()
