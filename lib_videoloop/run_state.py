"""What a run records about itself beside its settings: the "run" object in settings.json.

Written once when the run folder is made (and when a model is added), read back on resume. The
keys are those earlier versions wrote, so older run folders still resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from lib_videoloop.config import Settings
from lib_videoloop.media.sources import SourceInfo
from lib_videoloop.media.store import FrameStore
from lib_videoloop.media.writer import SourceClock


@dataclass
class SourceRecord:
    """The input as it was when the run began (for the video's timing and sound)."""

    path: str
    kind: str  # "video", "folder" or "image"
    fps: str | None  # exact, e.g. "30000/1001"
    width: int
    height: int
    frame_count: int  # frames in the source, before selection
    has_audio: bool = False
    start_time: float = 0.0
    time_origin: float = 0.0
    rotation: int = 0
    variable_frame_rate: bool = False
    names: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, info: SourceInfo) -> SourceRecord:
        return cls(
            path=str(info.path),
            kind=info.kind,
            fps=str(info.fps) if info.fps else None,
            width=info.width,
            height=info.height,
            frame_count=info.source_frame_count,
            has_audio=info.has_audio,
            start_time=info.start_time,
            time_origin=info.time_origin,
            rotation=info.rotation,
            variable_frame_rate=info.variable_frame_rate,
            names=list(info.names),
        )

    @property
    def rate(self) -> Fraction | None:
        return Fraction(self.fps) if self.fps else None

    @property
    def clock(self) -> SourceClock:
        return SourceClock(Path(self.path), self.rate, self.time_origin + self.start_time, self.has_audio)


@dataclass
class RunState:
    frame_count: int  # frames selected from the input
    width: int  # the working size
    height: int
    seed: int  # the seeds used (a typed -1 is replaced by the one drawn)
    subseed: int
    seed_as_typed: int
    subseed_as_typed: int
    source: SourceRecord
    txt_prompts: list[tuple[str | None, str | None]] | None = None  # read_prompt_from_txt
    references: list[str] = field(default_factory=list)  # run-folder sub-folders of reference frames
    models: list[str] = field(default_factory=list)  # every model that made frames, in order
    # Frames per generation call, as first chosen (frames_per_call, or the backend's choice): a
    # resumed run groups its frames the same way, so that they come out the same.
    frames_per_call: int = 0

    @property
    def frame_pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        values = dict(data)
        values["source"] = SourceRecord(**values.get("source", {}))
        if values.get("txt_prompts"):
            values["txt_prompts"] = [tuple(pair) for pair in values["txt_prompts"]]
        return cls(**values)


@dataclass(frozen=True)
class RunFolder:
    """A run folder this process holds: its files, the settings it runs with, and its record."""

    store: FrameStore
    settings: Settings
    state: RunState
