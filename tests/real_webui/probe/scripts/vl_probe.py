"""Test-only WebUI extension: records what each generation's ControlNet units and colour corrections hold.

The rig installs it beside Video Loopback; every process() appends one JSON line to the file
named by VL_PROBE_LOG, so a test can see which image each unit really received.
"""

import base64
import io
import json
import os

import numpy as np
from modules import scripts


def _image_summary(image):
    if isinstance(image, dict):
        image = image.get("image")
    if image is None:
        return None
    if isinstance(image, str):  # base64, as the HTTP API hands a unit's image over
        from PIL import Image

        image = Image.open(io.BytesIO(base64.b64decode(image.split(",", 1)[-1]))).convert("RGB")
    array = np.asarray(image)
    return {"shape": list(array.shape), "mean": float(array.astype(np.float64).mean())}


class ControlNetProbe(scripts.Script):
    def title(self):
        return "Video Loopback test probe"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return []  # no controls; an explicit empty list keeps the WebUI's argument ranges defined

    def process(self, p, *args):
        path = os.environ.get("VL_PROBE_LOG")
        if not path or p.scripts is None:
            return
        units = []
        for script in p.scripts.alwayson_scripts:
            if "controlnet" in script.title().lower() and script.args_from is not None:
                for unit in p.script_args[script.args_from : script.args_to]:
                    get = unit.get if isinstance(unit, dict) else lambda key, u=unit: getattr(u, key, None)
                    if get("enabled") is not None:
                        units.append({"enabled": bool(get("enabled")), "image": _image_summary(get("image"))})
        init = p.init_images[0] if getattr(p, "init_images", None) else None
        corrections = getattr(p, "color_corrections", None)
        if corrections is not None:  # LAB targets, as modules.processing.setup_color_correction makes them
            mean = np.asarray(corrections[0], dtype=np.float64).mean(axis=(0, 1))
            corrections = {"count": len(corrections), "mean": mean.tolist()}
        record = {"seed": p.seed, "units": units, "init": _image_summary(init), "color_corrections": corrections}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
