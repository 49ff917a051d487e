"""Frames to a video file (H.264 MP4, VP9 WebM or GIF), with the source's sound in sync.

Encoding runs in-process through PyAV. Frames are pulled one at a time from an iterator, and
the sound is interleaved as the video advances, so memory does not grow with the length.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.images import publish, to_uint8

log = logging.getLogger(__name__)

_CONTAINER = {"mp4": "mp4", "webm": "webm", "gif": "gif"}
_AUDIO_CODEC = {"mp4": "aac", "webm": "libopus"}


@dataclass(frozen=True)
class AudioSpan:
    """The part of a source's sound that the frames cover, in the source's own seconds."""

    path: Path
    start: float  # seconds on the source's clock (stream timestamps), where frame 0 is shown
    duration: float


@dataclass(frozen=True)
class SourceClock:
    """Where a clip's frames come from in time: for the output's rate and the sound under it."""

    path: Path
    rate: Fraction | None  # the source's frame rate, exact
    start: float  # seconds on the source's clock (stream timestamps) of the first frame used
    has_audio: bool  # a video with a sound stream


@dataclass(frozen=True)
class VideoEncoding:
    video_format: str = "mp4"  # mp4 (H.264), webm (VP9) or gif
    crf: int = 18  # lower is better; capped at the codec's top
    lossless: bool = False


def output_fps(source_fps: Fraction | None, extract_nth_frame: int, override: float | None) -> Fraction:
    """Default: the source rate divided by extract_nth_frame, exactly (30000/1001 stays so)."""
    if override:
        return Fraction(override).limit_denominator(1001000)
    if source_fps:
        return Fraction(source_fps) / extract_nth_frame
    return Fraction(30)


def source_audio(
    clock: SourceClock, frame_count: int, extract_nth_frame: int, fps: Fraction, video_format: str
) -> AudioSpan | None:
    """The source's sound under a video of `frame_count` of its frames (every extract_nth_frame-th,
    from the clock's start): none in a GIF, and none when `fps` is not the frames' natural rate,
    where the sound would drift from the picture (logged)."""
    rate = clock.rate
    if video_format == "gif" or not rate or not clock.has_audio:
        return None
    natural = output_fps(rate, extract_nth_frame, None)
    if fps != natural:
        log.info("sound left out: output_frame_rate %s changes the clip's speed (natural rate %s)", fps, natural)
        return None
    return AudioSpan(Path(clock.path), clock.start, frame_count * extract_nth_frame / float(rate))


def write_video(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: Fraction,
    encoding: VideoEncoding = VideoEncoding(),
    audio: AudioSpan | None = None,
) -> Path:
    """Encodes float32 HxWx3 frames to `path`, written under a temporary name then renamed."""
    import av

    path = Path(path)
    video_format = encoding.video_format
    if video_format not in _CONTAINER:
        raise VideoLoopError("output_format", video_format, "is not a supported format", "Use mp4, webm or gif")
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    frames_iter = iter(frames)
    try:
        first = next(frames_iter, None)
        if first is None:
            raise VideoLoopError("frames", 0, "there are no frames to encode", "")
        with av.open(str(tmp), "w", format=_CONTAINER[video_format]) as container:
            stream, pad = _add_video_stream(container, encoding, fps, first.shape[1], first.shape[0])
            audio_packets = _audio_packets(container, audio, video_format) if audio else None
            pending = next(audio_packets, None) if audio_packets else None
            for count, image in enumerate(_chain(first, frames_iter), start=1):
                if image.shape[:2] != first.shape[:2]:
                    raise VideoLoopError(
                        "frames",
                        image.shape,
                        f"frame {count} differs in size from the first frame {first.shape}",
                        "",
                    )
                container.mux(stream.encode(_to_video_frame(image, pad)))
                # Interleave: sound up to the end of this frame goes in now.
                now = count / fps
                while pending is not None and pending[0] < now:
                    container.mux(pending[1])
                    pending = next(audio_packets, None)
            container.mux(stream.encode())
            while pending is not None:
                container.mux(pending[1])
                pending = next(audio_packets, None)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _add_video_stream(container, encoding: VideoEncoding, fps: Fraction, width: int, height: int):
    video_format, crf, lossless = encoding.video_format, encoding.crf, encoding.lossless
    pad = (0, 0)
    if video_format == "mp4":
        if lossless:
            stream = container.add_stream("libx264rgb", rate=fps)
            stream.pix_fmt = "rgb24"
            stream.options = {"qp": "0", "preset": "medium"}
        else:
            stream = container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(min(crf, 51)), "preset": "medium"}
            # yuv420p needs even sizes: repeat the last row or column rather than crop pixels away.
            pad = (height % 2, width % 2)
            if any(pad):
                log.info(
                    "H.264 needs even dimensions: padding %dx%d to %dx%d by repeating the edge",
                    width,
                    height,
                    width + pad[1],
                    height + pad[0],
                )
    elif video_format == "webm":
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.pix_fmt = "yuv444p" if lossless else "yuv420p"
        stream.options = (
            {"lossless": "1"}
            if lossless
            else {"crf": str(crf), "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
        )
    else:
        stream = container.add_stream("gif", rate=fps)
        stream.pix_fmt = "rgb8"
    stream.width = width + pad[1]
    stream.height = height + pad[0]
    stream.time_base = Fraction(1) / fps
    stream.thread_type = "AUTO"
    return stream, pad


def _to_video_frame(image: np.ndarray, pad: tuple[int, int]):
    import av

    rgb = to_uint8(image)
    if any(pad):
        rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def _layout(stream) -> str:
    """The source's own channel layout (5.1 stays 5.1: AAC and Opus both carry it); a layout
    without a name is taken by its channel count."""
    name = getattr(stream.layout, "name", "") or ""
    if name and not name.startswith(("unknown", "0 channels")):
        return name
    return {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(stream.channels, "stereo")


def _audio_packets(container, span: AudioSpan, video_format: str) -> Iterator[tuple[float, object]]:
    """Yields (end time in output seconds, packet) for the source's sound within the span."""
    import av

    codec = _AUDIO_CODEC.get(video_format)
    if codec is None:
        return
    source = av.open(str(span.path))
    try:
        if not source.streams.audio:
            return
        in_stream = source.streams.audio[0]
        rate = 48000 if codec == "libopus" else (in_stream.rate or 48000)
        layout = _layout(in_stream)
        out_stream = container.add_stream(codec, rate=rate)
        out_stream.layout = layout
        out_stream.time_base = Fraction(1, rate)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        fifo = av.AudioFifo()
        frame_size = out_stream.codec_context.frame_size or 1024
        start_sample = round(span.start * rate)
        end_sample = start_sample + round(span.duration * rate)
        position: int | None = None  # index, on the source clock, of the next resampled sample
        written = 0

        def drain(final: bool) -> Iterator[tuple[float, object]]:
            nonlocal written
            while fifo.samples >= frame_size or (final and fifo.samples > 0):
                chunk = fifo.read(min(frame_size, fifo.samples))
                chunk.pts = written
                chunk.time_base = Fraction(1, rate)
                written += chunk.samples
                for packet in out_stream.encode(chunk):
                    yield (written / rate, packet)

        for frame in source.decode(in_stream):
            for converted in resampler.resample(frame):
                if position is None:
                    position = round(float(frame.pts * frame.time_base) * rate) if frame.pts is not None else 0
                data = converted.to_ndarray()
                lo = max(start_sample - position, 0)
                hi = min(end_sample - position, data.shape[1])
                position += data.shape[1]
                if hi > lo:
                    piece = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(data[:, lo:hi]), format="fltp", layout=layout
                    )
                    piece.sample_rate = rate
                    fifo.write(piece)
                    yield from drain(final=False)
            if position is not None and position >= end_sample:
                break
        yield from drain(final=True)
        for packet in out_stream.encode(None):
            yield (written / rate, packet)
    finally:
        source.close()
