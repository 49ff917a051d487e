"""Patch blending over time: each frame becomes the mean of its neighbours' frames, each rebuilt on
it through the nearest-neighbour field of the guide frames (patchmatch.py), the video deflicker
of DiffSynth and FastBlend.

The guides are the clean frames (a run's input, or --reference_frames_directory): what is
matched is their content, what is rebuilt is the styled, flickering frames'. A neighbour counts
at a pixel by how well its patch matched there (weight exp(-error / MATCH_SCALE)), the frame's
own pixel with weight 1, and nothing crosses a scene cut.

Two modes, over a window of `window` frames (odd: the frame and (window-1)/2 on each side):
- exact: every neighbour of the window is matched to the frame and rebuilt on it;
- fast: the sums over the window's halves are built by doubling, as FastBlend's fast mode does:
  the sum over the 2^m frames ending at frame i is the sum over the 2^(m-1) ending there plus
  the sum over the 2^(m-1) ending 2^(m-1) frames earlier, rebuilt on frame i through one match.
  A frame then costs 2 log2(window + 1) - 2 matches instead of window - 1, and only one, to
  its neighbour in the first sweep, is a full one: a longer match starts from two shorter ones
  of the sweep composed, the second sweep's neighbour match from the first sweep's inverted,
  and one light round of PatchMatch refines each. Each half covers
  2^m - 1 neighbours for the smallest 2^m - 1 >= (window - 1) / 2, so its window can be wider
  than exact mode's (window 15: the same 7 a side).

The starting field of every full match is the reference frames' DIS flow, composed along the clip
(motion.FlowChain), refined by PatchMatch; memory stays flat in the clip's length (the fast
mode's sums, neighbour fields and patch bases wait in a temporary folder between its two sweeps).
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from lib_videoloop.config import PATCH_BLEND_MODES
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.motion import FlowChain

# The fast mode's backward sweep, a pixel and frame: its sums (RGB and weight, float32) and its
# neighbour fields (two float32); 23 bytes measured on 40 frames of bikes.mp4.
FAST_SCRATCH_BYTES = 24
MATCH_SCALE = 0.002  # a mean squared patch difference (0-1 levels) that lowers a neighbour's weight by e
# Fast mode's composed fields are close already: propagation from 2 pixels away, not 4, lost
# nothing measurable (bench/patch_blend.py --windows: E_warp against exact mode 1.034 either way).
LIGHT_JUMP = 2
# ... and a random search within 4 pixels (one try at 2), not 16 (tries at 8 and 2): E_warp
# against exact mode 1.038 either way, 4% less time.
LIGHT_SEARCH_RADIUS = 4


class _Cached:
    """Frames by index through a reader, the last few kept (a window's neighbours are read again)."""

    def __init__(self, read: Callable[[int], np.ndarray], keep: int) -> None:
        self.read = read
        self.keep = max(keep, 2)
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, j: int) -> np.ndarray:
        if j not in self.cache:
            if len(self.cache) >= self.keep:
                del self.cache[next(iter(self.cache))]
            self.cache[j] = self.read(j)
        return self.cache[j]


class PatchBlender:
    """Matches guide frames and rebuilds style frames through the matches, on one torch device."""

    def __init__(
        self, chain: FlowChain, guide: Callable[[int], np.ndarray], device: str | None = None, patch_size: int = 5,
        iterations: int = 2,
    ) -> None:  # fmt: skip
        import torch

        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.chain = chain
        self.guide = guide
        self.patch_size = patch_size
        self.iterations = iterations
        self._basis: tuple[int, object] | None = None  # (target, its basis) of the last full match

    def tensor(self, image: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(self.device)

    def premultiplied(self, frame: np.ndarray):
        """The frame as (C+1) channels: its colour times weight 1, and the weight."""
        t = self.tensor(frame)
        return self.torch.cat([t, self.torch.ones_like(t[:, :1])], dim=1)

    def rebuild(self, premultiplied, source: int, target: int):
        """Premultiplied colour and weight of frame `source` rebuilt on frame `target`, the weight
        scaled by how well each pixel's patch matched."""
        return self.rebuild_matched(premultiplied, source, target)[0]

    def rebuild_matched(self, premultiplied, source: int, target: int, start=None, basis=None) -> tuple:
        """rebuild(), and the field it went through. start: a field from target to source that is
        already close (fast mode's, composed from two shorter ones, or inverted): it gets one
        light round of PatchMatch, with the patch basis of target's last full match (or `basis`),
        instead of two full ones from the composed optical flow."""
        from lib_videoloop.patchmatch import nearest_field, patch_basis, remap

        guides = self.tensor(self.guide(source)), self.tensor(self.guide(target))
        seed = source * 7919 + target
        if basis is not None:
            self._basis = target, basis
        elif start is None or self._basis is None or self._basis[0] != target:
            generator = self.torch.Generator("cpu").manual_seed(seed)
            self._basis = target, patch_basis(*guides, self.patch_size, generator)
        if start is None:
            start = self.flow_start(target, source)
            rounds = dict(iterations=self.iterations)
        else:
            rounds = dict(iterations=1, jump=LIGHT_JUMP, search_radius=LIGHT_SEARCH_RADIUS)
        field, error = nearest_field(
            *guides, patch_size=self.patch_size, start=start, seed=seed, basis=self._basis[1], **rounds
        )
        moved = remap(premultiplied, field, self.patch_size)
        return moved * self.torch.exp(-error / MATCH_SCALE).unsqueeze(1), field

    def basis_of(self, target: int):
        """The patch basis that target's matches use, once one is made (else None)."""
        return self._basis[1] if self._basis is not None and self._basis[0] == target else None

    def flow_start(self, target: int, source: int):
        """The field from target to source that the guides' optical flow gives."""
        from lib_videoloop.patchmatch import flow_start

        flow, _valid = self.chain.to(target, source)
        return flow_start(self.torch.from_numpy(flow).permute(2, 0, 1)[None].to(self.device))

    @staticmethod
    def result(total) -> np.ndarray:
        out = total[:, :-1] / total[:, -1:].clamp_min(1e-6)
        return out[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy().astype(np.float32)


def exact_blend(
    style: Callable[[int], np.ndarray], count: int, window: int, blender: PatchBlender
) -> Iterator[np.ndarray]:
    half = window // 2
    for i in range(count):
        total = blender.premultiplied(style(i))
        for j in range(max(0, i - half), min(count, i + half + 1)):
            if j != i and not blender.chain.cut_between(i, j):
                total += blender.rebuild(blender.premultiplied(style(j)), j, i)
        blender.chain.keep_only(i - half, i + half + 1)
        yield blender.result(total)


def _sweep(
    style: Callable[[int], np.ndarray], order: range, levels: int, blender: PatchBlender,
    neighbour_start: Callable[[int], object] = lambda _i: None,
) -> Iterator[tuple]:  # fmt: skip
    """(frame, own, sum over the 2^levels frames ending at it along `order`, the field from the
    frame to the one before it and the frame's patch basis, each None if not made). The sum over
    the 2^m frames ending at i is the one over the 2^(m-1) ending at i plus the one over the
    2^(m-1) ending 2^(m-1) frames earlier, rebuilt on frame i (nothing is added across a cut).
    neighbour_start(i): a close start for the field from i to the frame before it and i's patch
    basis (then one light round), or None (two full rounds from the flow, and a new basis)."""
    from lib_videoloop.patchmatch import compose

    step = order.step
    sums: list[dict[int, object]] = [{} for _ in range(levels)]
    # fields[m][i]: the field from frame i to the frame 2^m before it along the sweep. A longer
    # one starts from two shorter ones composed (i to halfway, halfway to there), which the
    # sweep has already matched: closer than the optical flow, so one light round refines it.
    fields: list[dict[int, object]] = [{} for _ in range(levels)]
    for i in order:
        own = blender.premultiplied(style(i))
        current = own
        sums[0][i] = own
        for m in range(1, levels + 1):
            j = i - step * (1 << (m - 1))
            if j in sums[m - 1] and not blender.chain.cut_between(i, j):
                start, basis, halfway = None, None, i - step * (1 << max(m - 2, 0))
                if m == 1:
                    start, basis = neighbour_start(i) or (None, None)
                elif i in fields[m - 2] and halfway in fields[m - 2]:
                    start = compose(fields[m - 2][i], fields[m - 2][halfway])
                moved, fields[m - 1][i] = blender.rebuild_matched(sums[m - 1][j], j, i, start, basis)
                current = current + moved
            if m < levels:  # the whole side's sum is only this frame's
                sums[m][i] = current
        for m in range(levels):  # keep what a later frame of the sweep still reaches
            for k in [k for k in sums[m] if abs(i - k) >= (1 << m)]:
                del sums[m][k]
            for k in [k for k in fields[m] if abs(i - k) >= (1 << levels)]:
                del fields[m][k]
        blender.chain.keep_only(min(i, i - step * (1 << levels)), max(i, i - step * (1 << levels)) + 1)
        yield i, own, current, fields[0].get(i), blender.basis_of(i)


def fast_blend(
    style: Callable[[int], np.ndarray], count: int, window: int, blender: PatchBlender, scratch: Path
) -> Iterator[np.ndarray]:
    """The backward sweep first (its sums and neighbour fields wait in `scratch`), then the
    forward one, which yields each frame: forward sum + backward sum - the frame itself (in
    both). The forward sweep's neighbour match from i to i-1 starts from the backward sweep's
    from i-1 to i, inverted (the flow where it leaves holes): one light round refines it."""
    from lib_videoloop.patchmatch import invert

    levels = max(1, math.ceil(math.log2(window // 2 + 1)))
    torch = blender.torch
    # Raw float32 files, not torch.save: AUTOMATIC1111 replaces torch.load with a restricted
    # loader of its own, under which a plain tensor file loads as None.
    shapes: dict[str, tuple[int, ...]] = {}

    def put(name: str, tensor) -> None:
        shapes[name[0]] = tuple(tensor.shape)
        tensor.float().cpu().numpy().tofile(scratch / f"{name}.raw")

    def take(name: str):
        path = scratch / f"{name}.raw"
        if not path.exists():
            return None
        tensor = torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(shapes[name[0]])).to(blender.device)
        path.unlink()
        return tensor

    def neighbour_start(i: int):
        ahead, basis = take(f"f{i - 1}"), take(f"b{i}")  # the field from i-1 to i; i's basis
        return None if ahead is None or basis is None else (invert(ahead, blender.flow_start(i, i - 1)), basis)

    for i, _own, total, field, basis in _sweep(style, range(count - 1, -1, -1), levels, blender):
        put(f"s{i}", total)
        for name, tensor in ((f"f{i}", field), (f"b{i}", basis)):
            if tensor is not None:
                put(name, tensor)
    for i, own, total, _field, _basis in _sweep(style, range(count), levels, blender, neighbour_start):
        for name in (f"f{i - 1}", f"b{i}"):  # what the sweep did not need (at a cut, or frame 0)
            (scratch / f"{name}.raw").unlink(missing_ok=True)
        yield blender.result(total + take(f"s{i}") - own)


def patch_blend(  # noqa: PLR0913 (the clip, its guides and their flows; three keyword-only options)
    style: Callable[[int], np.ndarray],
    guide: Callable[[int], np.ndarray],
    count: int,
    chain: FlowChain,
    *,
    window: int = 15,
    mode: str = "fast",
    scratch: Path | None = None,
) -> Iterator[np.ndarray]:
    """The clip's frames blended, in order. style(i), guide(i): frame i of the clip to blend and
    of its clean guide; chain: the guides' flows (e.g. the run's flows/ folder). scratch: where
    the fast mode keeps its backward sweep (FAST_SCRATCH_BYTES a pixel and frame; made anew,
    removed at the end), by default a folder of the system's temporary one."""
    if mode not in PATCH_BLEND_MODES:
        raise ValueError(f"mode must be one of {PATCH_BLEND_MODES}, got {mode!r}")
    blender = PatchBlender(chain, _Cached(guide, window + 2))
    frames = _Cached(style, window + 2)
    if mode == "exact":
        yield from exact_blend(frames, count, window, blender)
        return
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="videoloop-patch-blend-") as tmp:
            yield from fast_blend(frames, count, window, blender, Path(tmp))
        return
    shutil.rmtree(scratch, ignore_errors=True)  # what a stopped pass left is made anew
    scratch.mkdir(parents=True)
    try:
        yield from fast_blend(frames, count, window, blender, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Spilled:
    """A stream's frames in raw float32 files of a folder, read back by index: random access to
    a clip of any length in flat memory."""

    def __init__(self, frames: Iterable[np.ndarray], folder: Path, shape: tuple[int, ...] | None = None) -> None:
        folder.mkdir()
        self.folder = folder
        self.count = 0
        self.shape = shape
        for given in frames:
            frame = given
            if self.shape is None:
                self.shape = frame.shape
            elif frame.shape != self.shape:  # a guide of another size: matched at the clip's
                frame = resize_frame(frame, self.shape[1], self.shape[0])
            frame.astype(np.float32).tofile(folder / f"{self.count:06d}.raw")
            self.count += 1

    def __call__(self, i: int) -> np.ndarray:
        assert self.shape is not None
        return np.fromfile(self.folder / f"{i:06d}.raw", dtype=np.float32).reshape(self.shape)


def patch_blend_clip(
    frames: Iterable[np.ndarray],
    guides: Iterable[np.ndarray],
    *,
    window: int = 15,
    mode: str = "fast",
    alpha: float = 1.0,
) -> Iterator[np.ndarray]:
    """A clip patch-blended along its guides (its clean source, or the clip itself), blended back
    with `alpha`: the `smooth` command's pass. Both streams go through a temporary folder first."""
    from lib_videoloop.blend import superimpose
    from lib_videoloop.media.flows import FlowFolder

    with tempfile.TemporaryDirectory(prefix="videoloop-patch-blend-clip-") as tmp:
        style = _Spilled(frames, Path(tmp) / "clip")
        guide = _Spilled(itertools.islice(guides, style.count), Path(tmp) / "guide", style.shape)
        if guide.count < style.count:
            raise VideoLoopError(
                "reference_frames_directory", guide.count, f"has fewer frames than the clip's {style.count}",
                "Give the clip's source, with at least as many frames",
            )  # fmt: skip
        chain = FlowFolder(Path(tmp) / "flows", guide, style.count).chain()
        for i, blended in enumerate(patch_blend(style, guide, style.count, chain, window=window, mode=mode)):
            yield superimpose(style(i), blended, alpha)
