"""Several frames of a loop in one generation call (frames_per_call): the frames a user gets are
those of a frame-by-frame run, with fewer calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from test_engine import Recording, frames_of, small

from lib_videoloop.engine import Engine
from lib_videoloop.media.store import FrameStore


def _runs(tmp_path: Path, clip: Path, tiny_backend, **kw) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """The last loop's frames one by one and with frames_per_call 3, and the batched run's calls."""
    alone = Engine(small(clip, tmp_path / "alone", frames_per_call=1, **kw), tiny_backend).run()
    batched = Recording(tiny_backend)
    together = Engine(small(clip, tmp_path / "together", frames_per_call=3, **kw), batched).run()
    return (
        frames_of(alone.run_dir, alone.frames_folder),
        frames_of(together.run_dir, together.frames_folder),
        batched.calls,
    )


def test_batched_frames_equal_frame_by_frame_with_their_own_seeds_and_prompts(
    tmp_path: Path, bikes: Path, tiny_backend
) -> None:
    alone, together, calls = _runs(
        tmp_path, bikes, tiny_backend,
        max_frames=7, fix_seed=False, batch_size=2, temporal_superimpose_alpha_list="1,2,1",
        prompt_schedule="f'bikes {image_i}'",
        denoising_schedule="0.5 if image_i < 3 else 0.4",  # frames 0-1 and 2-6 cannot share a call
    )  # fmt: skip
    # Per loop: frames 0-1 (denoising 0.5), then 2-4 and 5-6 (0.4, at most three a call).
    assert calls == [2, 3, 2] * 2
    assert len(alone) == len(together) == 7
    for a, b in zip(alone, together, strict=True):
        assert np.abs(a - b).max() < 1e-4  # the order of floating-point sums: a 16-bit level at most
    # Frames differ from each other (own seeds and prompts), so the comparison means something.
    assert np.abs(together[0] - together[1]).mean() > 0.01


def test_masked_frames_are_inpainted_together(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    mask = np.zeros((272, 640), np.uint8)
    mask[:, 320:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    alone, together, calls = _runs(
        tmp_path, bikes, tiny_backend, max_frames=4, loop_n=1, use_mask=True, mask_directory=str(tmp_path / "mask.png")
    )
    assert calls == [3, 1]
    for a, b in zip(alone, together, strict=True):
        assert np.abs(a - b).max() < 1e-4


def test_a_run_stopped_inside_a_call_resumes_to_the_same_frames(tmp_path: Path, bikes: Path, tiny_backend) -> None:
    from lib_videoloop.errors import InterruptedRun

    settings = small(bikes, tmp_path / "straight", max_frames=7, fix_seed=False, frames_per_call=3)
    straight = Engine(settings, tiny_backend).run()
    progress: list[tuple[int, int]] = []
    stopping = Engine(
        small(bikes, tmp_path / "stopped", max_frames=7, fix_seed=False, frames_per_call=3),
        tiny_backend,
        on_progress=lambda p: progress.append((p.loop, p.frame)),
        should_stop=lambda: progress[-1] == (2, 5),  # frames 4 and 5 of the call 4-6 are written
    )
    try:
        stopping.run()
        raise AssertionError("the run was not stopped")
    except InterruptedRun as stopped:
        run_dir = Path(stopped.args[0])
    assert FrameStore.open(run_dir).complete_frames("loop_002") == {0, 1, 2, 3, 4}
    batched = Recording(tiny_backend)
    resumed = Engine.resume(run_dir, batched).run()
    assert batched.calls == [3, 1]  # frames 4-6 again in one call (frame 6 the one written), then 7
    for a, b in zip(frames_of(straight.run_dir, "loop_002"), frames_of(resumed.run_dir, "loop_002"), strict=True):
        assert np.array_equal(a, b)
