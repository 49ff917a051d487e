"""The plots' axes as a reader sees them: every frame labelled on a short clip, evenly spaced
labels on a long one, and values written the way they were typed."""

from __future__ import annotations

import itertools

import pytest

from lib_videoloop.report import _axis_number, x_ticks


@pytest.mark.parametrize("count", [1, 2, 6, 7, 10])
def test_a_short_clip_labels_every_frame(count: int) -> None:
    assert x_ticks(count) == list(range(1, count + 1))


@pytest.mark.parametrize("count", [11, 24, 99, 250, 1234, 100_000])
def test_a_long_clip_has_evenly_spaced_labels_within_it(count: int) -> None:
    ticks = x_ticks(count)
    gaps = {b - a for a, b in itertools.pairwise(ticks[1:])}  # from the first multiple on
    assert ticks[0] == 1 and ticks[-1] <= count and len(gaps) <= 1 and len(ticks) <= 11
    assert count - ticks[-1] < ticks[2] - ticks[1]  # the last label is near the end


def test_axis_values_read_as_typed() -> None:
    assert [_axis_number(0.42 * k / 4, 0.42) for k in (0, 2, 4)] == ["0", "0.21", "0.42"]
    assert _axis_number(35, 35) == "35" and _axis_number(20, 20) == "20"
    assert _axis_number(1.2e-3, 1.2e-3) == "1.20e-03"  # warp errors: too small for plain decimals
