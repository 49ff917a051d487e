"""Deflicker inside the sampling steps (DiffSynth): when several frames share a generation call,
at the chosen steps the sampler's estimate of each finished image (x0) is decoded, patch-blended
across the call's frames and encoded again, and the sampler goes on from the blended estimate.

The frames are matched through their init images (the guides), never through the noisy
estimates, and each frame keeps its own pixel with weight 1 beside every other frame rebuilt on
it (patch_blend.MATCH_SCALE weights them by how well they matched). Nothing crosses calls: a
call's frames are neighbours in the clip (engine._calls), so a call of 4 frames is a window of 4.

Which steps: `latent_deflicker_steps`, numbers of the steps a call samples (1 is the first;
-1 the last, -2 the one before), e.g. "-1" or "1, -1". The number of steps sampled is what the
sampler runs: in img2img about steps x denoising strength.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def chosen(steps: Sequence[int], step: int, total: int) -> bool:
    """Whether step `step` (0-based) of `total` sampled steps is one of `steps` (1-based, or
    negative from the end). A number beyond the steps sampled chooses nothing."""
    return any(n - 1 == step if n > 0 else total + n == step for n in steps)


def blend_call(images, guides, *, patch_size: int = 5, iterations: int = 2):
    """Each of the frames (N, 3, H, W), values 0-1, blended with every other frame of the call,
    rebuilt on it through the guides' (N, 3, H, W) nearest-neighbour fields."""
    import torch

    from lib_videoloop.patch_blend import MATCH_SCALE
    from lib_videoloop.patchmatch import nearest_field, remap

    n = images.shape[0]
    ones = torch.ones_like(images[:, :1])
    premultiplied = torch.cat([images, ones], dim=1)
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        # Every other frame matched to frame i in one batch of pairs.
        field, error = nearest_field(
            guides[others], guides[i : i + 1].expand(len(others), -1, -1, -1), patch_size=patch_size,
            iterations=iterations, seed=i,
        )  # fmt: skip
        moved = remap(premultiplied[others], field, patch_size) * torch.exp(-error / MATCH_SCALE).unsqueeze(1)
        total = premultiplied[i] + moved.sum(dim=0)
        out.append(total[:-1] / total[-1:].clamp_min(1e-6))
    return torch.stack(out).clamp(0, 1)


class CallDeflicker:
    """The x0 transform of one generation call: x0 latents in, x0 latents out (the same object at
    a step not chosen). The latent batch is the call's frames one after another, `group` images
    each (the batch size); image k of every frame is blended with image k of the others."""

    def __init__(
        self,
        steps: Sequence[int],
        guides: Sequence[np.ndarray],
        group: int,
        decode: Callable,
        encode: Callable,
    ) -> None:
        self.steps = tuple(steps)
        self.guides = list(guides)  # one HxWx3 float image (0-1) per frame of the call
        self.group = group
        self.decode = decode  # latents -> images (N, 3, H, W) in 0-1
        self.encode = encode  # images (N, 3, H, W) in 0-1 -> latents
        self.applied: list[int] = []  # the steps it blended at, for the run's log and tests

    @property
    def active(self) -> bool:
        return bool(self.steps) and len(self.guides) > 1

    def __call__(self, x0, step: int, total: int):
        if not self.active or not chosen(self.steps, step, total):
            return x0
        import torch

        from lib_videoloop.media.resize import resize_frame

        images = self.decode(x0).float()
        h, w = images.shape[-2:]
        guides = torch.stack(
            [torch.from_numpy(np.ascontiguousarray(resize_frame(g, w, h))).permute(2, 0, 1) for g in self.guides]
        ).to(images.device, torch.float32)
        frames = len(self.guides)
        blended = images.clone()
        for k in range(self.group):
            index = [f * self.group + k for f in range(frames)]
            blended[index] = blend_call(images[index], guides)
        self.applied.append(step)
        # Only the blend's change is carried back: encode(decode(x0)) is not x0 for a VAE that
        # reconstructs poorly, and that difference is no part of the deflicker.
        before, after = self.encode(torch.cat([images, blended])).chunk(2)
        return (x0.float() + (after - before).float().to(x0.device)).to(x0.dtype)
