"""The settings object: validation messages, JSON round trip, the original's names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib_videoloop.config import Settings, temporal_weights
from lib_videoloop.errors import VideoLoopError


def test_json_round_trip_keeps_every_setting(tmp_path: Path) -> None:
    s = Settings(input_directory="in.mp4", loop_n=3, denoising_schedule="0.3 if loop_i<2 else 0.2", max_frames=5)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(s.to_dict()), encoding="utf-8")
    assert Settings.load(path) == s


def test_original_field_names_are_accepted() -> None:
    s = Settings.from_dict(
        {"input_dir": "a", "output_dir": "b", "mask_dir": "m", "reference_frames_dir": "r", "loop_n": 2}
    )
    assert (s.input_directory, s.output_directory, s.mask_directory, s.reference_frames_directory) == (
        "a",
        "b",
        "m",
        "r",
    )


@pytest.mark.parametrize(
    "changes,setting",
    [
        ({"loop_n": 0}, "loop_n"),
        ({"max_frames": 0}, "max_frames"),
        ({"extract_nth_frame": 0}, "extract_nth_frame"),
        ({"superimpose_alpha": 1.5}, "superimpose_alpha"),
        ({"denoising_strength": -0.1}, "denoising_strength"),
        ({"temporal_superimpose_alpha_list": "1,2"}, "temporal_superimpose_alpha_list"),
        ({"temporal_superimpose_alpha_list": "a,b,c"}, "temporal_superimpose_alpha_list"),
        ({"temporal_superimpose_method": "fancy"}, "temporal_superimpose_method"),
        ({"temporal_filter_strength": 1.0}, "temporal_filter_strength"),
        ({"mask_threshold": 300}, "mask_threshold"),
        ({"output_format": "avi"}, "output_format"),
        ({"resize_mode": 3}, "resize_mode"),
        ({"input_directory": ""}, "input_directory"),
    ],
)
def test_validation_names_the_setting(changes: dict, setting: str) -> None:
    s = Settings(**{"input_directory": "x", **changes})
    with pytest.raises(VideoLoopError) as e:
        s.validate()
    assert str(e.value).startswith(setting)


def test_temporal_weights() -> None:
    assert temporal_weights("") == [1.0]
    assert temporal_weights("0.03,0.95,0.02") == [0.03, 0.95, 0.02]
    assert temporal_weights([1, 2, 1]) == [1.0, 2.0, 1.0]
    with pytest.raises(VideoLoopError, match="odd number"):
        temporal_weights("1,1")


def test_newer_settings_version_is_refused() -> None:
    with pytest.raises(VideoLoopError, match="newer"):
        Settings.from_dict({"settings_version": 99})


# The HTTP API's positional order as clients have it, copied here by hand (not derived from the
# code), so a test fails when any two positions trade places. Every value differs from its
# setting's default, so a value that lands nowhere is caught too.
API_ORDER = (
    ("input_directory", "clip.mp4"), ("output_directory", "runs"), ("resume_run_folder", ""),
    ("start_frame", 2), ("extract_nth_frame", 3), ("max_frames", 40), ("read_prompt_from_txt", True),
    ("loop_n", 4), ("superimpose_alpha", 0.31), ("fix_seed", False), ("fix_subseed", True),
    ("temporal_superimpose_method", "along optical flow of reference"), ("temporal_superimpose_alpha_list", "1,3,1"),
    ("difference_threshold", 25), ("reference_frames_directory", "refs"), ("use_mask", True),
    ("mask_directory", "masks"), ("mask_threshold", 126), ("output_frame_rate", 12.5), ("output_format", "webm"),
    ("crf", 19), ("lossless", True), ("keep_audio", False), ("save_every_loop", False),
    ("subseed_strength_schedule", "0.01"), ("denoising_schedule", "0.32"), ("step_schedule", "11"),
    ("seed_schedule", "5"), ("subseed_schedule", "6"), ("cfg_schedule", "6.5"), ("superimpose_alpha_schedule", "0.2"),
    ("temporal_superimpose_schedule", "[1, 2, 1]"), ("prompt_schedule", "'a'"), ("negative_prompt_schedule", "'b'"),
    ("batch_count_schedule", "2"), ("image_post_processing_schedule", "lambda img: img"),
    ("video_post_process_method", "FastDVDNet"), ("video_post_process_alpha", 0.29), ("fastdvdnet_noise_sigma", 61),
    ("video_post_process_when", "last loop"), ("fastdvdnet_weights", "w.pth"),
    ("temporal_filter_strength", 0.41), ("temporal_filter_schedule", "0.42"),
    ("keyframe_mode", "listed frames"), ("keyframe_interval", 7), ("keyframe_motion", 0.11), ("keyframe_frames", "0, 9"),
    ("keyframe_repair", False), ("repair_min_share", 0.03), ("repair_denoising_strength", 0.59),
    ("frames_per_call", 5), ("patch_blend_window", 9), ("patch_blend_mode", "exact"),
    ("keyframe_propagation", "patch match"), ("latent_deflicker_steps", "-1"), ("workers", "http://gpu1:7860"),
)  # fmt: skip
# The list's length before each group of settings was added (newest first).
OLDER_LENGTHS = (55, 54, 51, 50, 43, 41)


def _check_values(settings: Settings, resume: str, pairs) -> None:
    for name, value in pairs:
        got = resume if name == "resume_run_folder" else getattr(settings, name)
        assert got == value, f"{name}: {got!r} != {value!r}"


def test_the_api_argument_order_is_the_one_clients_have() -> None:
    from lib_videoloop.webui.panel import PANEL_ORDER, settings_from_panel

    assert tuple(name for name, _ in API_ORDER) == PANEL_ORDER
    defaults = Settings()
    for name, value in API_ORDER:
        if name != "resume_run_folder":
            assert getattr(defaults, name) != value, f"{name}'s test value is its default"
    _check_values(*settings_from_panel([value for _, value in API_ORDER]), API_ORDER)


def test_an_older_api_argument_list_still_means_what_it_meant() -> None:
    """API callers written before a setting was added send the arguments without it."""
    from lib_videoloop.webui.panel import settings_from_panel

    defaults = Settings()
    for length in OLDER_LENGTHS:
        settings, resume = settings_from_panel([value for _, value in API_ORDER[:length]])
        _check_values(settings, resume, API_ORDER[:length])
        _check_values(settings, resume, [(name, getattr(defaults, name)) for name, _ in API_ORDER[length:]])
    with pytest.raises(VideoLoopError, match="script arguments"):
        settings_from_panel([value for _, value in API_ORDER[:-3]])


def test_named_api_arguments_are_taken_by_name_and_checked() -> None:
    from lib_videoloop.webui.panel import settings_from_panel

    reverse = dict(reversed(API_ORDER))
    # Only the dict counts: what follows it is the next scripts' values, which a short list brings.
    _check_values(*settings_from_panel([reverse, "other script", 3]), API_ORDER)
    settings, _ = settings_from_panel([{"input_directory": "clip.mp4", "loop_n": 2}])
    assert (settings.loop_n, settings.superimpose_alpha) == (2, Settings().superimpose_alpha)
    assert settings_from_panel([{"input_directory": "x", "max_frames": 0}])[0].max_frames is None
    with pytest.raises(VideoLoopError, match=r"loop_m.*did you mean loop_n"):
        settings_from_panel([{"loop_m": 2}])
    with pytest.raises(VideoLoopError, match=r"prompt.*in the request itself"):
        settings_from_panel([{"prompt": "a cat"}])
    with pytest.raises(VideoLoopError, match=r"use_mask.*must be true or false"):
        settings_from_panel([{"use_mask": "false"}])


def test_a_range_error_gives_advice_for_the_side_it_is_on() -> None:
    with pytest.raises(VideoLoopError) as too_few:
        Settings(input_directory="x", loop_n=0).validate()
    with pytest.raises(VideoLoopError) as too_many:
        Settings(input_directory="x", loop_n=5000).validate()
    assert "Split" not in str(too_few.value) and "loops at denoising" in str(too_few.value)
    assert "Split a longer job" in str(too_many.value)
