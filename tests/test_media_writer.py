"""The video writer: exact frame rates, odd sizes, formats, and the sound in sync."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import make_clip, read_video
from lib_videoloop.media.sources import open_source
from lib_videoloop.media.writer import AudioSpan, VideoEncoding, output_fps, write_video


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(n)]


def test_output_fps_defaults_to_source_over_nth() -> None:
    assert output_fps(Fraction(30000, 1001), 2, None) == Fraction(15000, 1001)
    assert output_fps(Fraction(25), 1, None) == 25
    assert output_fps(Fraction(25), 1, 12.0) == 12


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_formats_decode_with_the_right_count_and_size(tmp_path: Path, fmt: str) -> None:
    frames = _frames(6, 31, 45)  # odd sizes on purpose
    path = write_video(
        frames, tmp_path / f"v.{fmt}", Fraction(30000, 1001) if fmt != "gif" else Fraction(10), VideoEncoding(fmt)
    )
    decoded, rate = read_video(path)
    assert len(decoded) == 6
    if fmt == "mp4":
        assert decoded[0].shape == (32, 46, 3)  # padded by one pixel for yuv420p
        assert rate == Fraction(30000, 1001)
    elif fmt == "webm":
        assert decoded[0].shape == (31, 45, 3)


def test_odd_size_padding_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        write_video(_frames(2, 31, 45), tmp_path / "odd.mp4", Fraction(25))
    assert "even dimensions" in caplog.text


def test_lossless_mp4_is_exact(tmp_path: Path) -> None:
    frames = [(np.round(f * 255) / 255).astype(np.float32) for f in _frames(3, 16, 16)]
    path = write_video(frames, tmp_path / "l.mp4", Fraction(25), VideoEncoding(lossless=True))
    decoded, _ = read_video(path)
    assert all(np.array_equal(d, np.round(f * 255).astype(np.uint8)) for d, f in zip(decoded, frames, strict=True))


def test_crf_changes_quality(tmp_path: Path) -> None:
    frames = _frames(5, 64, 64)
    small = write_video(frames, tmp_path / "a.mp4", Fraction(25), VideoEncoding(crf=40)).stat().st_size
    large = write_video(frames, tmp_path / "b.mp4", Fraction(25), VideoEncoding(crf=10)).stat().st_size
    assert large > small


def _flash_and_beep_clip(path: Path) -> Path:
    """50 frames at 25 fps, a white flash at frame 30 and a 1 kHz beep starting at 1.2 s."""
    frames = [np.full((32, 48, 3), 20, np.uint8) for _ in range(50)]
    frames[30] = np.full((32, 48, 3), 250, np.uint8)
    rate = 48000
    audio = np.zeros(2 * rate, np.float32)
    t = np.arange(int(0.1 * rate)) / rate
    audio[int(1.2 * rate) : int(1.2 * rate) + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return make_clip(path, frames, 25, audio=audio, sample_rate=rate)


def _beep_time(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks, first_time = [], None
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.pts * frame.time_base)
            chunks.append(frame.to_ndarray().mean(axis=0))
        samples = np.concatenate(chunks)
        onset = int(np.argmax(np.abs(samples) > 0.1))
        return first_time + onset / stream.rate


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_sound_stays_in_sync_after_start_frame_and_nth(tmp_path: Path, fmt: str) -> None:
    clip = _flash_and_beep_clip(tmp_path / "flash.mp4")
    src = open_source(clip, start_frame=10, extract_nth_frame=2)
    info = src.info
    fps = output_fps(info.fps, 2, None)
    span = AudioSpan(clip, info.time_origin + info.start_time, info.frame_count * 2 / float(info.fps))
    out = write_video((f.image for f in src), tmp_path / f"out.{fmt}", fps, VideoEncoding(fmt), audio=span)
    frames, _ = read_video(out)
    flash_index = int(np.argmax([f.mean() for f in frames]))
    assert flash_index == 10  # source frame 30, (30 - 10) / 2
    flash_time = flash_index / float(fps)
    assert _beep_time(out) == pytest.approx(flash_time, abs=1 / float(fps))


def test_bigbuckbunny_sound_covers_the_selected_span(tmp_path: Path, bigbuckbunny: Path) -> None:
    src = open_source(bigbuckbunny, start_frame=20, max_frames=50)
    info = src.info
    span = AudioSpan(bigbuckbunny, info.time_origin + info.start_time, 50 / 25)
    out = write_video((f.image[::4, ::4] for f in src), tmp_path / "bbb.mp4", Fraction(25), audio=span)
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.frames == 50
        audio_seconds = sum(f.samples for f in container.decode(audio)) / audio.rate
    assert audio_seconds == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_surround_sound_keeps_its_channels(tmp_path: Path, fmt: str) -> None:
    """A 5.1 source keeps six channels, each with its own sound (nothing downmixed or swapped)."""
    source = tmp_path / "surround.mp4"
    rate, freqs = 48000, [200, 300, 400, 80, 600, 700]  # the fourth is the LFE channel: a low tone
    with av.open(str(source), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "5.1"
        for frame in _frames(25, 48, 64):
            container.mux(video.encode(av.VideoFrame.from_ndarray((frame * 255).astype(np.uint8), format="rgb24")))
        container.mux(video.encode())
        t = np.arange(rate) / rate
        tones = np.stack([0.2 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
        for start in range(0, rate, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tones[:, start : start + 1024]), format="fltp",
                                               layout="5.1")  # fmt: skip
            chunk.sample_rate = rate
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
    span = AudioSpan(source, 0.0, 1.0)
    out = write_video(_frames(25, 48, 64), tmp_path / f"out.{fmt}", Fraction(25), VideoEncoding(fmt), audio=span)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 6
        sound = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
    spectrum = np.abs(np.fft.rfft(sound[:, : sound.shape[1] // 2 * 2], axis=1))
    peaks = np.fft.rfftfreq(sound.shape[1] // 2 * 2, 1 / stream.rate)[spectrum.argmax(axis=1)]
    assert np.allclose(peaks, freqs, atol=5), peaks
