"""FastDVDNet over a whole clip, streaming, with each first-stage result computed once.

The reference denoiser runs the first block three times per output frame. Interior windows
share those results: the triple (t-1, t, t+1) serves the windows of frames t-1, t and t+1. They
are cached by their ordered frame indices (at the clip's mirrored borders the order differs,
e.g. (2, 1, 0), so the key is the exact triple), which halves the work with identical numbers.
Only the frames and triples that later windows still need are kept, so memory does not grow
with the length of the clip. Frames too large for one pass go through overlapping tiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib_videoloop.denoise.model import DenBlock, FastDVDnet
from lib_videoloop.errors import VideoLoopError

WINDOW = 5
HALF = WINDOW // 2
# The receptive field of one block reaches 37 pixels; tiles overlap by more, on a 4-pixel grid
# (two stride-2 scales), so tiled results equal whole-frame results.
TILE_MARGIN = 40


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The published model.pth (keys prefixed "module."), a prefix-less one, or .safetensors."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download, an HTML page saved as model.pth, ...
        raise VideoLoopError(
            "fastdvdnet_weights", str(path), f"cannot be read as FastDVDNet weights ({exc})", "Download model.pth again"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_model(path: str | Path, device: str | torch.device = "cpu", half: bool = False) -> FastDVDnet:
    model = FastDVDnet()
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(path).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VideoLoopError(
            "fastdvdnet_weights",
            str(path),
            f"does not hold FastDVDNet weights ({str(exc).splitlines()[0]})",
            "Use model.pth from the FastDVDNet repository",
        ) from None
    model.eval()
    model.to(device)
    if half:
        model.half()
    return model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def mirror(index: int, count: int) -> int:
    """Border handling of the reference: mirror without repeating the edge frame."""
    if index < 0:
        return -index
    if index >= count:
        return 2 * (count - 1) - index
    return index


def window_indices(t: int, count: int) -> list[int]:
    return [mirror(t + k - HALF, count) for k in range(WINDOW)]


def window_triples(t: int, count: int) -> list[tuple[int, int, int]]:
    """The three first-stage inputs of frame t's window, as ordered frame indices."""
    w = window_indices(t, count)
    return [(w[k], w[k + 1], w[k + 2]) for k in range(3)]


class SequenceDenoiser:
    """Denoises a stream of frames with FastDVDNet. Use :meth:`stream`."""

    def __init__(
        self,
        model: FastDVDnet,
        *,
        device: str | torch.device | None = None,
        half: bool | None = None,
        batch: int | None = None,
        max_tile_pixels: int = 1024 * 1024,
    ) -> None:
        self.device = torch.device(device or next(model.parameters()).device)
        self.half = (self.device.type == "cuda") if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        self.model = model.to(self.device, self.dtype)
        # Batching helps a GPU; on a CPU one window at a time keeps the working set in cache (measured ~14% faster).
        self.batch = batch or (8 if self.device.type == "cuda" else 1)
        self.max_tile_pixels = max_tile_pixels

    # -- one block, whole or tiled --------------------------------------------------------
    def _block(
        self, block: DenBlock, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        h, w = a.shape[-2:]
        if h * w <= self.max_tile_pixels:
            return block(a, b, c, noise)
        side = max(2 * TILE_MARGIN + 64, int(self.max_tile_pixels**0.5) // 4 * 4)
        step = side - 2 * TILE_MARGIN
        out = torch.empty_like(b)
        for y in range(0, h, step):
            for x in range(0, w, step):
                y0, x0 = max(0, y - TILE_MARGIN), max(0, x - TILE_MARGIN)
                y1, x1 = min(h, y + step + TILE_MARGIN), min(w, x + step + TILE_MARGIN)
                tile = block(*(t[..., y0:y1, x0:x1] for t in (a, b, c, noise)))
                ye, xe = min(h, y + step), min(w, x + step)
                out[..., y:ye, x:xe] = tile[..., y - y0 : ye - y0, x - x0 : xe - x0]
        return out

    # -- the sequence -------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, frames: Iterable[np.ndarray], count: int, sigma: float) -> Iterator[np.ndarray]:  # noqa: C901
        """frames: `count` float32 HxWx3 arrays (values may lie outside [0, 1], as noisy
        frames do); sigma: the noise level in [0, 1]. Yields denoised float32 HxWx3 frames."""
        if count < 3:
            raise VideoLoopError("frames", count, "FastDVDNet needs at least 3 frames", "Use a longer clip")
        source = iter(frames)
        loaded: dict[int, torch.Tensor] = {}
        next_to_load = 0
        triples: dict[tuple[int, int, int], torch.Tensor] = {}
        noise: torch.Tensor | None = None
        size: tuple[int, int] | None = None
        pad: tuple[int, int] = (0, 0)
        for start in range(0, count, self.batch):
            ts = list(range(start, min(start + self.batch, count)))
            need_until = min(count - 1, ts[-1] + HALF)
            while next_to_load <= need_until:
                arr = next(source, None)
                if arr is None:
                    raise VideoLoopError(
                        "frames", next_to_load, f"the clip ended after {next_to_load} of {count} frames", ""
                    )
                if size is None:
                    size = arr.shape[:2]
                    pad = ((4 - size[0] % 4) % 4, (4 - size[1] % 4) % 4)
                elif arr.shape[:2] != size:
                    raise VideoLoopError(
                        "frames", arr.shape, f"frame {next_to_load + 1} differs in size from the first frame", ""
                    )
                loaded[next_to_load] = self._to_tensor(arr, pad)
                next_to_load += 1
            if noise is None:
                first = loaded[0]
                noise = torch.full((1, 1, *first.shape[-2:]), float(sigma), device=self.device, dtype=self.dtype)
            keys = [window_triples(t, count) for t in ts]
            missing = sorted({key for row in keys for key in row if key not in triples})
            if missing:
                a, b, c = (torch.cat([loaded[key[m]] for key in missing]) for m in range(3))
                result = self._block(self.model.temp1, a, b, c, noise.expand(len(missing), -1, -1, -1))
                for key, value in zip(missing, result.split(1), strict=True):
                    triples[key] = value
            a, b, c = (torch.cat([triples[row[m]] for row in keys]) for m in range(3))
            out = self._block(self.model.temp2, a, b, c, noise.expand(len(ts), -1, -1, -1))
            out = out.clamp_(0.0, 1.0)[..., : size[0], : size[1]]
            for frame in out.float().permute(0, 2, 3, 1).cpu().numpy():
                yield np.ascontiguousarray(frame)
            # Forget what no later window needs.
            # The next window (of frame ts[-1] + 1) reaches back HALF frames, mirrored at the start.
            for j in [j for j in loaded if j < ts[-1] + 1 - HALF]:
                del loaded[j]
            upcoming = range(ts[-1] + 1, min(count, ts[-1] + 1 + self.batch))
            keep = {key for t in upcoming for key in window_triples(t, count)}
            for key in [key for key in triples if key not in keep]:
                del triples[key]

    def _to_tensor(self, arr: np.ndarray, pad: tuple[int, int]) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]
        if any(pad):
            t = F.pad(t, (0, pad[1], 0, pad[0]), mode="reflect")
        return t.to(self.device, self.dtype)
