"""Patch matching between frames, in torch (one code path on the CPU and on CUDA).

nearest_field() computes PatchMatch's nearest-neighbour field (Barnes et al. 2009): for every
pixel of a target guide frame, the position in a source guide frame whose patch (patch_size
square, odd) looks most alike, by the sum of squared differences over the patch. It works coarse
to fine over a pyramid, and at each level alternates propagation (a neighbour's match, shifted
by one pixel, and the same from 2, 4, ... pixels away: jump flooding) with random search around
the current match, all pixels at once and all frame pairs of a batch at once. A starting field
(e.g. the optical flow between the frames) replaces the coarse levels.

remap() rebuilds a style frame through such a field the way patch-based synthesis does: every
target pixel is covered by patch_size^2 patches, each of which votes for the source pixel at
the same place inside its match; the pixel is the mean of those votes.

Fields are float tensors (N, 2, H, W) holding, for each target pixel, the (x, y) position in the
source frame; errors are the mean squared difference per patch pixel and channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PATCH_SIZE = 5
DIMENSIONS = 12  # patch descriptor length (see patch_basis)
JUMP = 4  # propagation from 4, 2 and 1 pixels away; the pyramid's coarser levels bring larger moves
SEARCH_RADIUS = 16  # random search around a match at a level with a coarser one (or a start) above it
# Pixels of the target matched (or remapped) at once: bounds the memory of a candidate's
# descriptor gathers (about 4 * DIMENSIONS bytes per pixel, a few times over) at any frame size.
# On the CPU a small tile is also faster, its buffers staying in the cache: at 512x512 a
# candidate's errors take 8 ms and a remap 30 ms, against 22 and 55 ms in one tile of 2^18.
# On CUDA (not measured here) the tile stays as it was, a quarter of a 1080p frame: a larger
# one launches fewer kernels, but takes its memory beside the model during sampling.
TILE_PIXELS = {"cpu": 1 << 16, "cuda": 1 << 18}


def _tile_pixels(device: torch.device) -> int:
    return TILE_PIXELS.get(device.type, TILE_PIXELS["cpu"])


def _sample_patches(images: torch.Tensor, patch_size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, C*p*p) patches at random pixels of the batch, edges repeated."""
    n, c, h, w = images.shape
    r = patch_size // 2
    padded = F.pad(images, (r, r, r, r), mode="replicate")
    which = torch.randint(0, n, (count,), generator=generator).to(images.device)
    ys = torch.randint(0, h, (count,), generator=generator).to(images.device)
    xs = torch.randint(0, w, (count,), generator=generator).to(images.device)
    offsets = torch.arange(patch_size, device=images.device)
    dy, dx = offsets.repeat_interleave(patch_size), offsets.repeat(patch_size)  # row by row over the patch
    parts = padded[which[:, None], :, ys[:, None] + dy, xs[:, None] + dx]  # (count, p*p, C), in one indexing
    return parts.transpose(1, 2).reshape(count, c * patch_size * patch_size)


def patch_basis(
    source: torch.Tensor, target: torch.Tensor, patch_size: int = PATCH_SIZE, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The principal directions of a pair of guide frames' patches, as convolution filters
    (DIMENSIONS, C, p, p): the patch descriptors' basis.

    Patch distances are taken between the patches' projections on these: with DIMENSIONS well
    below C*p*p the gathers that dominate the cost shrink as much, while the dropped directions
    hold little of natural images' patch variance (the distance is exact when D = C*p*p)."""
    generator = generator or torch.Generator("cpu").manual_seed(0)
    c = source.shape[1]
    samples = torch.cat([_sample_patches(x, patch_size, 4096, generator) for x in (source, target)])
    samples = samples - samples.mean(dim=0)
    _values, vectors = torch.linalg.eigh(samples.T @ samples)
    top = vectors[:, -min(DIMENSIONS, vectors.shape[1]) :].T  # (D, C*p*p), largest last
    return top.reshape(-1, c, patch_size, patch_size).contiguous()


def _describe(image: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W): each pixel's patch projected on the basis, edges repeated."""
    r = basis.shape[-1] // 2
    # channels-last: the descriptors come out as rows already (half the time of a copy after)
    padded = F.pad(image, (r, r, r, r), mode="replicate").contiguous(memory_format=torch.channels_last)
    return F.conv2d(padded, basis)


def _identity(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys]).expand(n, 2, h, w).clone()


def _clamp(field: torch.Tensor, h: int, w: int) -> torch.Tensor:
    field[:, 0].clamp_(0, w - 1)
    field[:, 1].clamp_(0, h - 1)
    return field


class _Matcher:
    """Patch errors of candidate fields for one batch of (source, target) guide pairs."""

    def __init__(self, source: torch.Tensor, target: torch.Tensor, basis: torch.Tensor) -> None:
        self.n, _, self.h, self.w = target.shape
        self.sh, self.sw = source.shape[-2:]
        self.k = basis.shape[0]
        # Descriptors as rows, one per pixel (the batch's frames one after another): a candidate's
        # rows are then picked with index_select, about 4x faster than gather on the CPU.
        self.source = _describe(source, basis).permute(0, 2, 3, 1).reshape(-1, self.k)
        self.target = _describe(target, basis).permute(0, 2, 3, 1).reshape(self.n, -1, self.k)
        self.offsets = (torch.arange(self.n, device=target.device) * (self.sh * self.sw)).view(self.n, 1)
        self.scale = 1.0 / (source.shape[1] * basis.shape[-1] ** 2)  # per patch pixel and channel

    def error(self, field: torch.Tensor) -> torch.Tensor:
        """(N, H, W) mean squared patch difference of each pixel's match (rounded to whole pixels)."""
        index = (field[:, 1].round() * self.sw + field[:, 0].round()).long().view(self.n, -1) + self.offsets
        out = torch.empty(self.n, self.h * self.w, device=field.device)
        rows = max(1, _tile_pixels(field.device) // self.w)
        for start in range(0, self.h * self.w, rows * self.w):
            stop = min(start + rows * self.w, self.h * self.w)
            part = index[:, start:stop]
            picked = self.source.index_select(0, part.reshape(-1)).view(self.n, -1, self.k)  # (N, P, K)
            diff = picked - self.target[:, start:stop]
            out[:, start:stop] = diff.square().sum(dim=2) * self.scale
        return out.view(self.n, self.h, self.w)


def _improve(
    matcher: _Matcher,
    field: torch.Tensor,
    error: torch.Tensor,
    candidate: torch.Tensor,
) -> None:
    """Keeps the candidate's match wherever it is better (in place)."""
    candidate = _clamp(candidate.round_(), matcher.sh, matcher.sw)
    err = matcher.error(candidate)
    better = err < error
    torch.minimum(error, err, out=error)
    field.copy_(torch.where(better.unsqueeze(1), candidate, field))


def _shifted(field: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The field of the pixel (x - dx, y - dy), moved by (dx, dy): a neighbour's match, propagated."""
    moved = torch.roll(field, shifts=(dy, dx), dims=(2, 3)).clone()
    moved[:, 0] += dx
    moved[:, 1] += dy
    return moved


def _refine(
    matcher: _Matcher, field: torch.Tensor, iterations: int, generator: torch.Generator | None, *,
    jump: int = JUMP, search_radius: int = SEARCH_RADIUS,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    error = matcher.error(_clamp(field, matcher.sh, matcher.sw))
    for _ in range(iterations):
        step = jump
        while step >= 1:  # a few jumps, then the plain one-pixel propagation
            for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
                _improve(matcher, field, error, _shifted(field, dx, dy))
            step //= 2
        radius = search_radius / 2
        while radius >= 1:
            noise = torch.rand(field.shape, generator=generator, device="cpu").to(field.device) * 2 - 1
            _improve(matcher, field, error, field + noise * radius)
            radius /= 4
    return field, error


def nearest_field(  # noqa: PLR0913 (the matcher's knobs, each keyword-only with a default)
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    patch_size: int = PATCH_SIZE,
    iterations: int = 2,
    start: torch.Tensor | None = None,
    seed: int = 0,
    jump: int = JUMP,
    search_radius: int = SEARCH_RADIUS,
    basis: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest-neighbour field from target to source guides, (N, C, H, W) each in [0, 1],
    and each pixel's patch error. start: a first guess (e.g. target position + optical flow);
    without it the field is built coarse to fine from a pyramid. jump: the farthest propagation
    (a power of 2; a start that is already close needs less), search_radius the random search's
    (around a start; halved, then quartered down to 1). basis: patch_basis() of similar frames,
    to reuse (computed from these when None)."""
    if patch_size % 2 == 0 or patch_size < 1:
        raise ValueError(f"patch_size must be odd, got {patch_size}")
    generator = torch.Generator("cpu").manual_seed(seed)
    if basis is None:
        basis = patch_basis(source, target, patch_size, generator)
    n, _, h, w = target.shape
    if start is None:
        levels = max(1, int(math.log2(min(h, w) / 16)) + 1)
        field = None
        for level in reversed(range(levels)):
            scale = 1 / (1 << level)
            src = F.interpolate(source, scale_factor=scale, mode="area") if level else source
            tgt = F.interpolate(target, scale_factor=scale, mode="area") if level else target
            th, tw = tgt.shape[-2:]
            if field is None:
                field = torch.stack(
                    [
                        torch.rand((n, th, tw), generator=generator) * (src.shape[-1] - 1),
                        torch.rand((n, th, tw), generator=generator) * (src.shape[-2] - 1),
                    ],
                    dim=1,
                ).to(target.device)
            else:
                field = F.interpolate(field, size=(th, tw), mode="nearest") * 2
            # the coarsest level starts from random matches: its search spans the whole frame
            radius = max(src.shape[-2:]) if level == levels - 1 else SEARCH_RADIUS
            field, error = _refine(_Matcher(src, tgt, basis), field, iterations, generator, search_radius=radius)
        assert field is not None
        return field, error
    matcher = _Matcher(source, target, basis)
    return _refine(matcher, start.clone().float(), iterations, generator, jump=jump, search_radius=search_radius)


def compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The field through two: `first` from frame a to b and `second` from b to c give a to c
    (each pixel's match in b, then that pixel's match in c)."""
    n, _, h, w = first.shape
    sh, sw = second.shape[-2:]
    index = (first[:, 1].round().clamp(0, sh - 1) * sw + first[:, 0].round().clamp(0, sw - 1)).long()
    return torch.gather(second.flatten(2), 2, index.view(n, 1, -1).expand(-1, 2, -1)).view(n, 2, h, w)


def invert(field: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """A field from b to a out of `field` from a to b (frames of one size): each pixel of b takes
    the pixel of a that matched it (of several, the last in raster order), and `fallback`'s
    match where none did (what a uncovers, or b shows that a does not)."""
    n, _, h, w = field.shape
    index = (field[:, 1].round() * w + field[:, 0].round()).long().view(n, -1)
    pixels = torch.arange(h * w, device=field.device).expand(n, -1)
    which = torch.full((n, h * w), -1, dtype=torch.long, device=field.device)
    which.scatter_reduce_(1, index, pixels, reduce="amax")  # deterministic, unlike scatter_ on CUDA
    matched = torch.stack([which % w, torch.div(which, w, rounding_mode="floor")], dim=1).float()
    return torch.where((which >= 0).view(n, 1, h, w), matched.view(n, 2, h, w), fallback)


def flow_start(flow: torch.Tensor) -> torch.Tensor:
    """A starting field from an optical flow (N, 2, H, W): each target pixel's position plus its flow."""
    n, _, h, w = flow.shape
    return _identity(n, h, w, flow.device) + flow


def remap(style: torch.Tensor, field: torch.Tensor, patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """The source style frames (N, C, Hs, Ws) rebuilt on the target's grid through `field` by
    patch voting: each target pixel is the mean of the source pixels its covering patches' matches
    put there."""
    n, c, _, sw = style.shape
    _, _, h, w = field.shape
    r = patch_size // 2
    # The style padded by its edge pixels: a patch pixel's index is its centre's plus a constant,
    # with no clamping (half the time of clamping each offset's indices).
    pw = sw + 2 * r
    flat = F.pad(style, (r, r, r, r), mode="replicate").reshape(n, c, -1)
    centre = ((field[:, 1].round() + r) * pw + field[:, 0].round() + r).long()  # (N, H, W)
    total = torch.zeros(n, c, h, w, device=style.device)
    # Patches centred in a band of rows at a time on the CPU (for the cache); on CUDA, as before,
    # the whole frame at once (its memory is that of the frame's votes, not of descriptors).
    band = max(1, TILE_PIXELS["cpu"] // w) if style.device.type == "cpu" else h
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        for dy in range(-r, r + 1):
            # the patch centred at q = p - d matched m(q); its pixel at offset d lies at m(q) + d
            ys0, ys1 = max(y0, -dy), min(y1, h - dy)
            for dx in range(-r, r + 1):
                xs0, xs1 = max(0, -dx), min(w, w - dx)
                index = centre[:, ys0:ys1, xs0:xs1] + (dy * pw + dx)
                picked = torch.gather(flat, 2, index.reshape(n, 1, -1).expand(-1, c, -1))
                total[:, :, ys0 + dy : ys1 + dy, xs0 + dx : xs1 + dx] += picked.view(n, c, ys1 - ys0, xs1 - xs0)
    # the patches covering a pixel: those whose centre lies in the frame, a row's times a column's
    ys, xs = torch.arange(h, device=style.device), torch.arange(w, device=style.device)
    rows = ys.clamp(max=r) + (h - 1 - ys).clamp(max=r) + 1
    columns = xs.clamp(max=r) + (w - 1 - xs).clamp(max=r) + 1
    return total / (rows.view(h, 1) * columns.view(1, w)).float()
