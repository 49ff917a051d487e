"""Schedules: the original's expressions work; hostile or mistaken ones are refused fast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from lib_videoloop.config import SCHEDULE_FIELDS, Settings
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.planning import Planner
from lib_videoloop.schedule_isolation import check_plan_isolated
from lib_videoloop.schedule_sandbox import Expression, base_scope


def ev(text: str, image_i: int = 3, loop_i: int = 2, **extra: object) -> object:
    scope = dict(base_scope(frame_count=10, loop_n=4), image_i=image_i, loop_i=loop_i, **extra)
    return Expression("denoising_schedule", text)(scope, frame=image_i, loop=loop_i)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0.4 if loop_i<3 else 0.3", 0.4),
        (
            "(sin(pi*image_i/90)+1)/2*0.07",
            pytest.approx((__import__("math").sin(__import__("math").pi * 3 / 90) + 1) / 2 * 0.07),
        ),
        ("[111,222,333][image_i//5%3]", 111),
        ("112233+image_i*2", 112239),
        ("7 if image_i in {1,5,7} else 8", 8),
        ("[0.1, 0.8, 0.1] if loop_i<=3 else [0, 1, 0]", [0.1, 0.8, 0.1]),
        ("['1girl,smile','1girl,closed mouth'][image_i//10%2]", "1girl,smile"),
        ("f' low quality, (blurry:{1.0+loop_i/30})'", f" low quality, (blurry:{1.0 + 2 / 30})"),
        ("(2, 3) if loop_i > 1 else 1", (2, 3)),
        ("frame_count * loop_n", 40),
        ("max(0.2, 0.5 - 0.1 * loop_i)", pytest.approx(0.3)),
        ("floor(image_i / 2) + ceil(0.5)", 2),
        ("'a' * 3 + str(image_i)", "aaa3"),
        ("round(sqrt(16)) == 4 and not False", True),
        ("[1, 2, 3][-1:]", [3]),
        ("f'{image_i:03d}'", "003"),
    ],
)
def test_the_originals_documented_expressions(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_post_processing_idiom_and_parameterised_filters() -> None:
    img = Image.new("RGB", (16, 16), (100, 50, 25))
    fn = ev(
        "lambda img: img.filter(ImageFilter.EDGE_ENHANCE).filter(ImageFilter.SMOOTH) if loop_i in {5,8} else img",
        loop_i=5,
    )
    out = fn(img)
    assert isinstance(out, Image.Image)
    assert out.tobytes() == img.filter(ImageFilter.EDGE_ENHANCE).filter(ImageFilter.SMOOTH).tobytes()
    identity = ev("lambda img: img.filter(ImageFilter.SMOOTH) if loop_i in {5,8} else img", loop_i=2)
    assert identity(img) is img
    blurred = ev("lambda img: img.filter(ImageFilter.GaussianBlur(2)).filter(ImageFilter.UnsharpMask(2, 150, 3))")(img)
    assert blurred.size == img.size
    assert ev("img.filter(ImageFilter.BLUR)", img=img).size == img.size


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch pwned')",
        "().__class__.__mro__",
        "9**9**9",
        "'a'*10**10",
        "[0]*10**9",
        "open('/etc/passwd').read()",
        "(lambda: 1).__code__",
        "[x for x in range(10)]",
        "img.save('x.png')",
        "getattr(1, 'real')",
        "range(10**9)",
        "2 ** 100000",
        "10 ** 2000 * 10 ** 2000",
        "ImageFilter.MedianFilter(10**6)",
    ],
)
def test_hostile_expressions_are_refused_without_side_effects(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    img = Image.new("RGB", (8, 8))
    with pytest.raises(VideoLoopError) as e:
        ev(text, img=img)
    assert "denoising_schedule" in str(e.value)
    assert not any(tmp_path.iterdir()), "nothing may be written"


# f composed with itself 2**n times, through lambdas only 2n deep: many steps from a short text.
_DOUBLED = "(lambda d: {apply}(lambda x: {body}))(lambda f: lambda x: f(f(x)))"


def _doubling(times: int, body: str, start: str) -> str:
    return _DOUBLED.format(apply="d(" * times, body=body + ")" * times) + f"({start})"


def test_the_step_budget_stops_a_long_walk_of_cheap_steps() -> None:
    text = _doubling(12, "x + 1", "0")  # 4096 calls, ~25,000 steps, a fraction of a second
    assert len(text) < 200
    with pytest.raises(VideoLoopError, match="more than 20,000 steps"):
        ev(text)
    assert ev(_doubling(8, "x + 1", "0")) == 256  # the same shape within budget


def test_the_time_budget_stops_few_costly_steps() -> None:
    # 1024 calls, each walking a 10,000-item list: well under the step budget, over the time one.
    text = _doubling(10, "x if len(x) else x", "[0] * 10000")
    with pytest.raises(VideoLoopError, match=r"longer than 0\.5 s"):
        ev(text)


@pytest.mark.parametrize("field", SCHEDULE_FIELDS)
@pytest.mark.parametrize(
    "text,limit",
    [
        ("b'a'*10**9", "10,000"),
        ("'%1000000000s' % 'x'", "% format"),
        ("len(str([[[0]*10000]*10000]*10000))", "100,000 values"),
        ("[[[0]*10000]*10000]*10000 == [[[0]*10000]*10000]*10000", "100,000 values"),
        ("round(1, -10**9)", "round()"),
        ("(lambda f: f(f))(lambda f: f(f))", "deep"),
    ],
)
def test_every_schedule_has_the_same_limits(field: str, text: str, limit: str) -> None:
    settings = Settings(input_directory="x", loop_n=1, **{field: text})
    with pytest.raises(VideoLoopError) as e:
        Planner(settings, 2).check_all()
    assert str(e.value).startswith(field) and limit in str(e.value)


def test_the_up_front_check_runs_apart_under_a_time_cap() -> None:
    settings = Settings(input_directory="x", loop_n=100, denoising_schedule="sum(range(1000)) / 1e9 + 0.1")
    assert check_plan_isolated(settings, 3, None, 64 * 64) == 300
    # A cap shorter than any child's start-up: the check is stopped and the schedule named, on a
    # machine of any speed.
    with pytest.raises(VideoLoopError, match=r"denoising_schedule.*took longer than 0\.001 s"):
        check_plan_isolated(settings, 2000, None, 64 * 64, timeout_s=0.001)


def test_a_plan_without_schedules_is_checked_without_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a child process was started")

    monkeypatch.setattr("lib_videoloop.schedule_isolation.subprocess.run", no_child)
    assert check_plan_isolated(Settings(input_directory="x", loop_n=3, n_iter=2), 5, None, 64 * 64) == 30
    with pytest.raises(AssertionError, match="child"):
        check_plan_isolated(Settings(input_directory="x", loop_n=3, cfg_schedule="7"), 5, None, 64 * 64)


@pytest.mark.skipif(sys.platform != "linux", reason="the memory cap is an rlimit read from /proc")
def test_the_up_front_check_runs_apart_under_a_memory_cap() -> None:
    # Three values of nine 10,000-item lists each, alive at once: about 2 MB, inside every limit.
    nine = "[" + ", ".join(f"[{k}] * 10000" for k in range(9)) + "]"
    text = f"(lambda a, b, c: len(a) + len(b) + len(c))({nine}, {nine}, {nine}) / 1e6"
    settings = Settings(input_directory="x", loop_n=1, denoising_schedule=text)
    assert check_plan_isolated(settings, 2, None, 64 * 64) == 2
    with pytest.raises(VideoLoopError, match="more memory"):
        check_plan_isolated(settings, 2, None, 64 * 64, memory_mb=0)


def test_errors_name_the_schedule_expression_frame_and_loop() -> None:
    with pytest.raises(VideoLoopError) as e:
        ev("1 / (image_i - 3)", image_i=3, loop_i=2)
    text = str(e.value)
    assert "denoising_schedule" in text and "1 / (image_i - 3)" in text and "frame 3" in text and "loop 2" in text
    with pytest.raises(VideoLoopError, match="not a valid expression"):
        ev("0.4 if loop_i < 3")
    with pytest.raises(VideoLoopError, match="unknown name 'imagei'"):
        ev("imagei * 2")


@pytest.mark.parametrize(
    "text,where",
    [("0.3 +", "at the end"), ("0.4 if loop_i < 3 else", "at the end"), ("image_i +* 2", "column 10")],
)
def test_a_syntax_error_says_where_it_is(text: str, where: str) -> None:
    with pytest.raises(VideoLoopError, match="not a valid expression") as e:
        ev(text)
    assert where in str(e.value) and "column 0" not in str(e.value)
