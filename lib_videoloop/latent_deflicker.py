"""Deflicker inside the sampling steps (DiffSynth): when several frames share a generation call,
at the chosen steps the sampler's estimate of each finished image (x0) is decoded, patch-blended
across the call's frames and encoded again, and the sampler goes on from the blended estimate.

The frames are matched through their init images (the guides), never through the noisy
estimates, and each frame keeps its own pixel with weight 1 beside every other frame rebuilt on
it (patch_blend.MATCH_SCALE weights them by how well they matched). Nothing crosses calls: a
call's frames are neighbours in the clip (frame_order.EveryFrame.calls), so a call of 4 frames is a window of 4.

Which steps: `latent_deflicker_steps`, numbers of the steps a call samples (1 is the first;
-1 the last, -2 the one before), e.g. "-1" or "1, -1". The number of steps sampled is what the
sampler runs: in img2img about steps x denoising strength.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lib_videoloop.backends import GenerationRequest


def chosen(steps: Sequence[int], step: int, total: int) -> bool:
    """Whether step `step` (0-based) of `total` sampled steps is one of `steps` (1-based, or
    negative from the end). A number beyond the steps sampled chooses nothing."""
    return any(n - 1 == step if n > 0 else total + n == step for n in steps)


def match_call(guides, *, patch_size: int = 5, iterations: int = 2) -> list:
    """For each frame of the call, every other frame's nearest-neighbour field onto it (through
    the guides, (N, 3, H, W) in 0-1) and its weight per pixel. They depend on the guides alone, so
    a call computes them once for all its chosen steps and batch images."""
    import torch

    from lib_videoloop.patch_blend import MATCH_SCALE
    from lib_videoloop.patchmatch import nearest_field

    n = guides.shape[0]
    matches = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        # Every other frame matched to frame i in one batch of pairs.
        field, error = nearest_field(
            guides[others], guides[i : i + 1].expand(len(others), -1, -1, -1), patch_size=patch_size,
            iterations=iterations, seed=i,
        )  # fmt: skip
        matches.append((others, field, torch.exp(-error / MATCH_SCALE).unsqueeze(1)))
    return matches


def blend_matched(images, matches: list, patch_size: int = 5):
    """Each of the frames (N, 3, H, W), values 0-1, blended with every other frame of the call
    rebuilt on it through `matches` (match_call)."""
    import torch

    from lib_videoloop.patchmatch import remap

    premultiplied = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
    out = []
    for i, (others, field, weight) in enumerate(matches):
        total = premultiplied[i] + (remap(premultiplied[others], field, patch_size) * weight).sum(dim=0)
        out.append(total[:-1] / total[-1:].clamp_min(1e-6))
    return torch.stack(out).clamp(0, 1)


def blend_call(images, guides):
    """The frames (N, 3, H, W) blended into each other through their guides' matches."""
    return blend_matched(images, match_call(guides))


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
        self._matches: list | None = None  # match_call of the guides, at the decoded size

    @classmethod
    def for_call(
        cls, requests: Sequence[GenerationRequest], decode: Callable, encode: Callable
    ) -> CallDeflicker | None:
        """The deflicker of a call of these requests; None when the run's latent_deflicker_steps
        are off or the call has one frame (nothing to blend it with)."""
        first = requests[0]
        if not first.deflicker_steps or len(requests) < 2:
            return None
        return cls(first.deflicker_steps, [r.init_image for r in requests], first.batch_size, decode, encode)

    def __call__(self, x0, step: int, total: int):
        if not chosen(self.steps, step, total):
            return x0
        import torch

        images = self.decode(x0).float()
        if self._matches is None:
            self._matches = match_call(self._guide_tensor(*images.shape[-2:]).to(images.device))
        blended = images.clone()
        for k in range(self.group):
            index = [f * self.group + k for f in range(len(self.guides))]
            blended[index] = blend_matched(images[index], self._matches)
        self.applied.append(step)
        # Only the blend's change is carried back: encode(decode(x0)) is not x0 for a VAE that
        # reconstructs poorly, and that difference is no part of the deflicker.
        before, after = self.encode(torch.cat([images, blended])).chunk(2)
        return (x0.float() + (after - before).float().to(x0.device)).to(x0.dtype)

    def _guide_tensor(self, h: int, w: int):
        import torch

        from lib_videoloop.media.resize import resize_frame

        return torch.stack(
            [torch.from_numpy(np.ascontiguousarray(resize_frame(g, w, h))).permute(2, 0, 1) for g in self.guides]
        ).float()
