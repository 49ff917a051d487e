"""Frame sources: a video file, a folder of images, or one image, read as they are needed.

Every source yields :class:`Frame` objects one at a time, so a long clip never sits in memory.
Videos are decoded in-process by PyAV (FFmpeg's libraries, bundled in its wheel); no ffmpeg
binary is needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.images import IMAGE_SUFFIXES, MAX_PIXELS, image_size, is_image_file, load_image
from lib_videoloop.media.writer import SourceClock

log = logging.getLogger(__name__)


@dataclass
class Frame:
    index: int  # 0-based position among the selected frames
    name: str  # file stem for folder frames, 1-based source frame number for videos
    image: np.ndarray  # HxWx3 float32 in [0, 1], at the source's size
    alpha: np.ndarray | None = None  # HxW float32 in [0, 1] when the file had transparency
    path: Path | None = None  # the file, for folder and image sources


@dataclass
class SourceInfo:
    path: Path
    kind: str  # "video", "folder" or "image"
    width: int
    height: int
    frame_count: int  # frames selected (after start_frame, extract_nth_frame, max_frames)
    source_frame_count: int  # frames in the source
    fps: Fraction | None = None  # source frame rate, exact (30000/1001, not 29.97)
    duration: float | None = None  # seconds
    rotation: int = 0  # degrees, as stored in the video's display matrix
    has_audio: bool = False
    variable_frame_rate: bool = False
    start_time: float = 0.0  # seconds from the start of the source to the first selected frame
    time_origin: float = 0.0  # timestamp (seconds) of the source's first frame
    names: list[str] = field(default_factory=list, repr=False)

    @property
    def clock(self) -> SourceClock:
        return SourceClock(self.path, self.fps, self.time_origin + self.start_time, self.has_audio)


def natural_key(path: Path) -> list[object]:
    """Sorts frame2 before frame10, with or without zero padding."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _selection(total: int, start: int, nth: int, max_frames: int | None) -> range:
    indices = range(start, total, nth)
    if max_frames is not None:
        indices = indices[:max_frames]
    return indices


class FrameSource:
    """Base class: info about the source and an iterator of the selected frames."""

    info: SourceInfo

    def __len__(self) -> int:
        return self.info.frame_count

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def verify(self) -> None:
        """Decodes every selected frame and keeps none: raises what iterating would raise. Done
        before a run whose input is copied while it generates, so that a frame damaged past its
        header still refuses the run before anything is made."""
        for _ in self:
            pass


class FolderSource(FrameSource):
    def __init__(self, folder: Path, start: int, nth: int, max_frames: int | None, setting: str) -> None:
        try:
            entries = list(folder.iterdir())
        except PermissionError:
            raise VideoLoopError(
                setting, str(folder), "cannot be read (permission denied)", "Check the folder's permissions"
            ) from None
        if not entries:
            raise VideoLoopError(
                setting,
                str(folder),
                "is an empty folder",
                "Put the frames (png, jpg, webp, bmp, tif) in it, or give a video file",
            )
        files = sorted((p for p in entries if is_image_file(p)), key=natural_key)
        if not files:
            raise VideoLoopError(
                setting,
                str(folder),
                "holds no image files (png, jpg, webp, bmp, tif)",
                "Give a folder of frames or a video file",
            )
        self.setting = setting
        self.files = [files[i] for i in _selection(len(files), start, nth, max_frames)]
        if not self.files:
            raise VideoLoopError(
                "start_frame", start, f"is past the last of the {len(files)} frames in {folder}", "Lower start_frame"
            )
        # Every selected file's header is read now (a fraction of a millisecond each), so a
        # damaged, empty or oversized frame in the middle is refused before any work.
        for path in self.files[1:]:
            image_size(path, setting)
        first, _ = load_image(self.files[0], setting)
        self.info = SourceInfo(
            path=folder,
            kind="folder",
            width=first.shape[1],
            height=first.shape[0],
            frame_count=len(self.files),
            source_frame_count=len(files),
            names=[p.stem for p in self.files],
        )

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            image, alpha = load_image(path, self.setting)
            yield Frame(i, path.stem, image, alpha, path)


class ImageSource(FrameSource):
    """One image, repeated max_frames times (for animating a still)."""

    def __init__(self, path: Path, max_frames: int | None, setting: str) -> None:
        self.path = path
        self.setting = setting
        image, _ = load_image(path, setting)
        count = max_frames or 1
        self.info = SourceInfo(
            path=path,
            kind="image",
            width=image.shape[1],
            height=image.shape[0],
            frame_count=count,
            source_frame_count=1,
            names=[f"{i + 1:06d}" for i in range(count)],
        )

    def __iter__(self) -> Iterator[Frame]:
        image, alpha = load_image(self.path, self.setting)
        for i in range(self.info.frame_count):
            yield Frame(i, f"{i + 1:06d}", image, alpha, self.path)


class VideoSource(FrameSource):
    """A video file. Variable frame rate clips are mapped onto a constant-rate timeline."""

    def __init__(self, path: Path, start: int, nth: int, max_frames: int | None, setting: str) -> None:
        self.path = path
        self.setting = setting
        pts, time_base, rate, (width, height), has_audio = _demux(path, setting)
        t0 = pts[0]
        self.slot_source, vfr = _constant_rate_slots(pts, time_base, rate, path.name)
        self.pts = pts
        self.selected = _selection(len(self.slot_source), start, nth, max_frames)
        if len(self.selected) == 0:
            raise VideoLoopError(
                "start_frame",
                start,
                f"is past the last of the {len(self.slot_source)} frames of {path.name}",
                "Lower start_frame",
            )
        rotation = self._probe_rotation()
        if rotation in (90, 270, -90):
            width, height = height, width
        self.rotation = rotation
        self.info = SourceInfo(
            path=path,
            kind="video",
            width=width,
            height=height,
            frame_count=len(self.selected),
            source_frame_count=len(self.slot_source),
            fps=rate,
            duration=len(self.slot_source) / float(rate),
            rotation=rotation,
            has_audio=has_audio,
            variable_frame_rate=vfr,
            start_time=self.selected[0] / float(rate),
            time_origin=float(t0 * time_base),
            names=[f"{i + 1:06d}" for i in self.selected],
        )

    def _probe_rotation(self) -> int:
        import av

        with av.open(str(self.path)) as container:
            for frame in container.decode(video=0):
                return round(getattr(frame, "rotation", 0) or 0) % 360
        return 0

    def __iter__(self) -> Iterator[Frame]:
        for vframe, targets in self._decoded():
            image = self._to_array(vframe)
            for out_index in targets:
                yield Frame(out_index, self.info.names[out_index], image)

    def verify(self) -> None:
        for _ in self._decoded():  # decoded, not converted: about 0.6 ms a frame at 512x512
            pass

    def _decoded(self) -> Iterator[tuple[Any, list[int]]]:
        """Each decoded video frame that is selected, with the output indices it fills."""
        import av

        wanted: dict[int, list[int]] = {}
        for out_index, slot in enumerate(self.selected):
            wanted.setdefault(int(self.slot_source[slot]), []).append(out_index)
        last_needed = max(wanted)
        pts_rank = {p: i for i, p in enumerate(self.pts)}
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = 0
            try:
                for vframe in container.decode(stream):
                    source_index = pts_rank.get(vframe.pts, decoded)
                    decoded += 1
                    targets = wanted.get(source_index)
                    if targets:
                        yield vframe, targets
                    if source_index >= last_needed:
                        break
            except av.error.FFmpegError as exc:
                raise VideoLoopError(
                    self.setting,
                    str(self.path),
                    f"could not be decoded past frame {decoded} ({exc})",
                    "The file may be truncated; re-export it",
                ) from None
        if decoded <= last_needed:
            raise VideoLoopError(
                self.setting,
                str(self.path),
                f"ended after {decoded} frames although {last_needed + 1} were expected",
                "The file may be truncated; re-export it, or set max_frames",
            )

    def _to_array(self, vframe: object) -> np.ndarray:
        rgb = vframe.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
        # The display matrix turns counter-clockwise; np.rot90 does the same for k > 0.
        if self.rotation:
            rgb = np.rot90(rgb, k=self.rotation // 90)
        return np.ascontiguousarray(rgb, dtype=np.float32) / 255.0


def _fps_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator} ({float(rate):.3f})"


def open_source(
    path: str | Path,
    *,
    start_frame: int = 0,
    extract_nth_frame: int = 1,
    max_frames: int | None = None,
    setting: str = "input_directory",
) -> FrameSource:
    """Opens a video file, a folder of images or one image. Raises VideoLoopError on bad input."""
    if extract_nth_frame < 1:
        raise VideoLoopError(
            "extract_nth_frame", extract_nth_frame, "must be 1 or more", "1 keeps every frame, 2 every second frame"
        )
    if max_frames is not None and max_frames < 1:
        raise VideoLoopError("max_frames", max_frames, "must be 1 or more", "Leave it empty to use every frame")
    if start_frame < 0:
        raise VideoLoopError("start_frame", start_frame, "must be 0 or more", "")
    text = str(path).strip()
    if not text:
        raise VideoLoopError(setting, text, "is empty", "Give a video file, a folder of frames or an image")
    p = Path(text).expanduser()
    if not p.exists():
        raise VideoLoopError(setting, text, "does not exist", "Check the path (copy it from your file manager)")
    if p.is_dir():
        return FolderSource(p, start_frame, extract_nth_frame, max_frames, setting)
    if p.stat().st_size == 0:
        raise VideoLoopError(setting, text, "is an empty (zero-byte) file", "Give a complete video or image")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(p, max_frames, setting)
    return VideoSource(p, start_frame, extract_nth_frame, max_frames, setting)


def _demux(path: Path, setting: str) -> tuple[list[int], Fraction, Fraction, tuple[int, int], bool]:
    """A video's frame timestamps (sorted), time base, frame rate, size and whether it has sound.
    Demuxing without decoding is cheap and gives the exact frame count and timing, which
    containers such as WebM do not store in their headers."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoLoopError(
            setting, str(path), f"cannot be opened as a video ({exc})",
            "Check that the file is a complete video, or convert it",
        ) from None  # fmt: skip
    with container:
        if not container.streams.video:
            raise VideoLoopError(
                setting, str(path), "has no video stream",
                "Give a video file with pictures, a folder of frames, or an image",
            )  # fmt: skip
        stream = container.streams.video[0]
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    pts.append(packet.pts)
        except av.error.FFmpegError as exc:
            raise VideoLoopError(setting, str(path), f"is damaged ({exc})", "Re-export or repair the video") from None
        if not pts:
            raise VideoLoopError(setting, str(path), "contains no video frames", "Re-export the video")
        pts.sort()
        time_base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            rate = Fraction(len(pts) - 1, 1) / (float((pts[-1] - pts[0]) * time_base) or 1)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not 0 < width * height <= MAX_PIXELS:
            raise VideoLoopError(
                setting, str(path), f"has frames of {width}x{height} pixels; at most {MAX_PIXELS:,} pixels are read",
                "Scale the video down first",
            )  # fmt: skip
        return pts, time_base, Fraction(rate).limit_denominator(1001000), (width, height), bool(container.streams.audio)


def _constant_rate_slots(pts: list[int], time_base: Fraction, rate: Fraction, name: str) -> tuple[np.ndarray, bool]:
    """Which frame each slot of a constant-rate timeline shows (the latest that started by
    then), and whether the clip's frame rate varies; a constant-rate clip maps one to one."""
    deltas = np.diff(np.asarray(pts, dtype=np.int64))
    vfr = bool(len(deltas) > 1 and deltas.max() - deltas.min() > max(1, 0.1 * float(np.median(deltas))))
    if not vfr:
        return np.arange(len(pts)), False
    frame_seconds = [float((p - pts[0]) * time_base) for p in pts]
    duration = frame_seconds[-1] + 1 / float(rate)
    slots = round(duration * float(rate))
    times = np.arange(slots) / float(rate)
    slot_source = np.searchsorted(np.asarray(frame_seconds) - 1e-6, times, side="right") - 1
    log.info(
        "%s has a variable frame rate (%d frames); it is read at a constant %s fps (%d frames), "
        "repeating or dropping frames to keep the timing", name, len(frame_seconds), _fps_text(rate), slots,
    )  # fmt: skip
    return np.clip(slot_source, 0, len(frame_seconds) - 1), True
