"""Frame sources: real footage, clips made here, folders of every image kind, bad input."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_clip, numbered_frames
from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.sources import open_source


def test_bigbuckbunny_reports_exact_properties(bigbuckbunny: Path) -> None:
    src = open_source(bigbuckbunny)
    info = src.info
    assert (info.width, info.height) == (1280, 720)
    assert info.fps == Fraction(25)
    assert info.frame_count == 132
    assert info.has_audio
    assert info.duration == pytest.approx(132 / 25)


def test_ntsc_rate_is_exact_and_selection_follows_start_nth_max(tmp_path: Path) -> None:
    frames = numbered_frames(30)
    clip = make_clip(tmp_path / "ntsc.mp4", frames, Fraction(30000, 1001))
    src = open_source(clip, start_frame=3, extract_nth_frame=4, max_frames=5)
    assert src.info.fps == Fraction(30000, 1001)
    got = [f.image for f in src]
    assert len(got) == len(src) == 5
    expected = [frames[i] for i in (3, 7, 11, 15, 19)]
    for image, want in zip(got, expected, strict=True):
        assert np.abs(image * 255 - want).max() <= 2  # lossless encode, YUV rounding only
    assert [f.name for f in open_source(clip, start_frame=3, extract_nth_frame=4, max_frames=2)] == ["000004", "000008"]


def test_frames_come_one_at_a_time_and_the_reader_can_stop_early(bikes: Path) -> None:
    src = open_source(bikes)
    assert src.info.frame_count == 250
    iterator = iter(src)
    first = next(iterator)
    assert first.image.shape == (272, 640, 3) and first.image.dtype == np.float32
    assert first.image.min() >= 0.0 and first.image.max() <= 1.0
    iterator.close()


def test_variable_frame_rate_becomes_constant_and_keeps_timing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 10 frames; frame 5 is shown three times as long (a gap in the timestamps).
    frames = numbered_frames(10)
    pts = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11]
    clip = make_clip(tmp_path / "vfr.mkv", frames, 25, pts=pts, time_base=Fraction(1, 25))
    with caplog.at_level("INFO"):
        src = open_source(clip)
    assert src.info.variable_frame_rate
    assert "variable frame rate" in caplog.text
    got = [f.image for f in src]
    assert len(got) == 12  # 12 slots of 1/25 s
    means = [float(g.mean()) for g in got]
    # Slots 6 and 7 repeat frame 5, which was held on screen.
    assert means[5] == pytest.approx(means[6], abs=1e-6) == pytest.approx(means[7], abs=1e-6)
    assert means[8] > means[7]


def test_rotation_is_reported_and_applied_like_ffmpeg(tmp_path: Path) -> None:
    import imageio_ffmpeg

    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:8, :8] = 255  # a white top-left corner shows which way the picture turned
    clip = make_clip(tmp_path / "rot.mp4", [frame] * 3, 25, rotation=90)
    src = open_source(clip)
    assert src.info.rotation in (90, 270)
    assert (src.info.width, src.info.height) == (32, 48)
    ours = next(iter(src)).image
    # The ffmpeg command line (autorotate on) as the independent reference.
    out = tmp_path / "ref.png"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip), "-frames:v", "1", str(out)], check=True
    )
    reference = np.asarray(Image.open(out).convert("RGB"), np.float32) / 255
    assert reference.shape == ours.shape
    assert np.abs(reference - ours).mean() < 0.02


def test_folder_natural_order_and_mixed_image_kinds(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rgb = np.full((20, 30, 3), 100, np.uint8)
    Image.fromarray(rgb).save(folder / "frame10.png")
    Image.fromarray(rgb).save(folder / "frame2.jpg")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])).save(folder / "frame1.png")  # RGBA
    Image.fromarray(rgb[:, :, 0]).save(folder / "frame3.webp")  # L
    Image.fromarray(rgb).convert("P").save(folder / "frame4.bmp")  # P
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(folder / "frame5.tif")  # 16-bit
    Image.fromarray(rgb).convert("CMYK").save(folder / "frame6.jpg")  # CMYK
    (folder / "notes.txt").write_text("not a frame")
    (folder / "thumbs.db").write_bytes(b"\x00\x01")
    src = open_source(folder)
    frames = list(src)
    assert [f.name for f in frames] == ["frame1", "frame2", "frame3", "frame4", "frame5", "frame6", "frame10"]
    assert frames[0].alpha is not None and frames[0].alpha.mean() == pytest.approx(128 / 255)
    assert frames[4].image.mean() == pytest.approx(40000 / 65535, abs=1e-4)  # not clipped to 8 bits
    for f in frames:
        assert f.image.shape == (20, 30, 3) and f.image.dtype == np.float32
    assert frames[5].image.mean() == pytest.approx(100 / 255, abs=0.03)


def test_single_image_repeats(tmp_path: Path) -> None:
    path = tmp_path / "still.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(path)
    src = open_source(path, max_frames=4)
    assert len(list(src)) == 4 == src.info.frame_count


@pytest.mark.parametrize("name", ["with space", "quote'\"s", "ünïcødé 映像"])
def test_awkward_paths_simply_work(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    clip = make_clip(folder / f"{name}.mp4", numbered_frames(3), 25)
    assert len(list(open_source(clip))) == 3
    Image.fromarray(np.full((8, 8, 3), 77, np.uint8)).save(folder / f"{name}.png")
    (frame,) = open_source(folder / f"{name}.png")
    assert frame.path is not None and frame.path.name == f"{name}.png" and np.allclose(frame.image, 77 / 255)
    assert [f.name for f in open_source(folder)] == [name]  # the folder's one image, the video left out


def _message(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


def test_bad_inputs_name_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(VideoLoopError) as e:
        open_source(tmp_path / "missing.mp4")
    assert "input_directory" in _message(e) and "does not exist" in _message(e)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoLoopError, match="empty folder"):
        open_source(empty)

    no_images = tmp_path / "docs"
    no_images.mkdir()
    (no_images / "a.txt").write_text("x")
    with pytest.raises(VideoLoopError, match="no image files"):
        open_source(no_images)

    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(VideoLoopError, match="cannot be opened as a video"):
        open_source(bad_video)

    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    with pytest.raises(VideoLoopError, match="zero-byte"):
        open_source(zero)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(VideoLoopError, match="cannot be read as an image"):
        list(open_source(corrupt))

    with pytest.raises(VideoLoopError, match="max_frames"):
        open_source(tmp_path, max_frames=0)
    with pytest.raises(VideoLoopError, match="extract_nth_frame"):
        open_source(tmp_path, extract_nth_frame=0)


def test_truncated_video_is_reported(tmp_path: Path, bikes: Path) -> None:
    data = bikes.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoLoopError) as e:
        list(open_source(cut))
    assert "cut.mp4" in str(e.value)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoLoopError, match="no video stream"):
        open_source(path)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_pngs_keep_their_16_bits(tmp_path: Path, channels: int) -> None:
    import cv2

    from lib_videoloop.media.images import load_image

    # A gradient finer than 8 bits: 8-bit reading would collapse neighbouring values.
    ramp = np.linspace(1000, 1255, 64 * 48 * channels).reshape(48, 64, channels).astype(np.uint16)
    path = tmp_path / "deep.png"
    bgr = ramp[:, :, [2, 1, 0, 3][:channels]]
    assert cv2.imwrite(str(path), bgr)
    rgb, alpha = load_image(path)
    assert np.abs(rgb * 65535 - ramp[:, :, :3]).max() < 0.02
    assert len(np.unique(rgb)) > 200  # 8 bits would leave about 2 distinct levels in this range
    if channels == 4:
        assert alpha is not None and np.abs(alpha * 65535 - ramp[:, :, 3]).max() < 0.02
