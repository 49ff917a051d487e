"""A clip's video as the settings ask for it: its rate, format and quality, and the source's
sound under it. The run's videos (loop_end.py) and the smooth command's are made here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib_videoloop.config import Settings
from lib_videoloop.media.writer import SourceClock, VideoEncoding, output_fps, source_audio, write_video


def video_of(frames: Iterable[np.ndarray], path: Path, s: Settings, clock: SourceClock, frame_count: int) -> Path:
    """`frame_count` frames of the source (every s.extract_nth_frame-th from the clock's start)
    as s.output_format at `path`, with the source's sound when s.keep_audio and it stays in sync."""
    fps = output_fps(clock.rate, s.extract_nth_frame, s.output_frame_rate)
    audio = source_audio(clock, frame_count, s.extract_nth_frame, fps, s.output_format) if s.keep_audio else None
    return write_video(frames, path, fps, VideoEncoding(s.output_format, s.crf, s.lossless), audio)
