"""Run by the WebUI's own Python from its folder: the stand-in's colour correction
(tests/webui/modules/processing_color.py) against modules.processing's, on random images.
Prints one JSON line: how many of the compared images came out identical. Its arguments are the
WebUI's own (the rig's CPU flags), which the WebUI's modules read from sys.argv."""

import importlib.util
import json
from pathlib import Path

import numpy as np
from modules import shared_init
from PIL import Image

shared_init.initialize()
from modules.processing import apply_color_correction, setup_color_correction  # noqa: E402

STAND_IN = Path(__file__).resolve().parents[1] / "webui" / "modules" / "processing_color.py"
spec = importlib.util.spec_from_file_location("stand_in", STAND_IN)
stand_in = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stand_in)
rng = np.random.default_rng(0)
same = 0
for k in range(8):
    h, w = 40 + 8 * k, 64
    target = Image.fromarray((rng.random((h, w, 3)) ** (0.4 + k / 4) * 255).astype(np.uint8))
    generated = Image.fromarray(np.clip(rng.normal(0.2 + 0.1 * k, 0.3, (h, w, 3)) * 255, 0, 255).astype(np.uint8))
    real = np.asarray(apply_color_correction(setup_color_correction(target), generated))
    ours = np.asarray(stand_in.apply_color_correction(stand_in.setup_color_correction(target), generated))
    same += int(np.array_equal(real, ours))
print(json.dumps({"compared": 8, "identical": same}))
