"""The settings object: validation messages, JSON round trip, the original's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib_videoloop.config import Settings, temporal_weights
from lib_videoloop.errors import VideoLoopError


def test_json_round_trip_keeps_every_setting(tmp_path: Path) -> None:
    s = Settings(input_directory="in.mp4", loop_n=3, denoising_schedule="0.3 if loop_i<2 else 0.2", max_frames=5)
    path = tmp_path / "settings.json"
    path.write_text(s.to_json(), encoding="utf-8")
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
    s = Settings(input_directory="x", **{k: v for k, v in changes.items() if k != "input_directory"})
    if "input_directory" in changes:
        s.input_directory = changes["input_directory"]
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


def test_an_older_api_argument_list_still_means_what_it_meant() -> None:
    """API callers written before a setting was added send the arguments without it."""
    from lib_videoloop.webui.panel import ADDED_LATER, KEYFRAME_FIELDS, PANEL_ORDER, settings_from_panel

    values = {name: "" for name in PANEL_ORDER}
    values.update(input_directory="clip.mp4", start_frame=0, extract_nth_frame=1, max_frames=0, loop_n=3,
                  superimpose_alpha=0.3, temporal_superimpose_method="simple", temporal_superimpose_alpha_list="1,2,1",
                  difference_threshold=24, mask_threshold=127, output_frame_rate=0, output_format="mp4", crf=18,
                  video_post_process_method="None", video_post_process_alpha=0.3, fastdvdnet_noise_sigma=60,
                  video_post_process_when="last loop", temporal_filter_strength=0.4, keyframe_mode="off",
                  keyframe_interval=8, keyframe_motion=0.1, keyframe_repair=True, repair_min_share=0.02,
                  repair_denoising_strength=0.6, frames_per_call=4, patch_blend_window=9,
                  patch_blend_mode="exact", keyframe_propagation="patch match")  # fmt: skip
    full = [values[name] for name in PANEL_ORDER]
    older = full[: -len(ADDED_LATER)]
    before_patch_blend = full[:-3]
    before_frames_per_call = full[:-4]
    before_keyframes = full[: -len(KEYFRAME_FIELDS) - 4]
    assert (settings_from_panel(full)[0].patch_blend_window, settings_from_panel(full)[0].patch_blend_mode) == (
        9,
        "exact",
    )
    blended = settings_from_panel(before_patch_blend)[0]
    assert (blended.patch_blend_window, blended.patch_blend_mode, blended.frames_per_call) == (15, "fast", 4)
    assert (
        blended.keyframe_propagation == "optical flow"
        and settings_from_panel(full)[0].keyframe_propagation == "patch match"
    )
    assert settings_from_panel(full)[0].frames_per_call == 4
    assert settings_from_panel(before_frames_per_call)[0].frames_per_call == 0  # the backend chooses
    assert settings_from_panel(before_frames_per_call)[0].repair_min_share == 0.02
    assert settings_from_panel(before_keyframes)[0].temporal_filter_strength == 0.4
    assert settings_from_panel(before_keyframes)[0].keyframe_mode == "off"
    settings, _ = settings_from_panel(older)
    assert settings.video_post_process_when == "last loop" and settings.loop_n == 3
    assert settings.temporal_filter_strength == Settings().temporal_filter_strength
    assert settings_from_panel(full)[0].temporal_filter_strength == 0.4
    with pytest.raises(VideoLoopError, match="script arguments"):
        settings_from_panel(full[:-5])


def test_a_range_error_gives_advice_for_the_side_it_is_on() -> None:
    with pytest.raises(VideoLoopError) as too_few:
        Settings(input_directory="x", loop_n=0).validate()
    with pytest.raises(VideoLoopError) as too_many:
        Settings(input_directory="x", loop_n=5000).validate()
    assert "Split" not in str(too_few.value) and "loops at denoising" in str(too_few.value)
    assert "Split a longer job" in str(too_many.value)
