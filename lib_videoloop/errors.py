"""The one exception family for mistakes a user can make and fix."""

from __future__ import annotations

from typing import Any


class VideoLoopError(Exception):
    """A problem with a setting or an input file, phrased for the person who set it.

    The message always names the setting (or path), the offending value and what to do.
    """

    def __init__(
        self,
        setting: str,
        value: Any,
        problem: str,
        fix: str = "",
        *,
        frame: int | None = None,
        loop: int | None = None,
    ) -> None:
        self.setting = setting
        self.value = value
        self.problem = problem
        self.fix = fix
        self.frame = frame
        self.loop = loop
        where = ""
        if frame is not None or loop is not None:
            parts = []
            if frame is not None:
                parts.append(f"frame {frame}")
            if loop is not None:
                parts.append(f"loop {loop}")
            where = f" (at {', '.join(parts)})"
        text = f"{setting} = {short(value)}{where}: {problem}"
        if fix:
            text += f". {fix}"
        super().__init__(text)


class WorkersLost(VideoLoopError):
    """No worker is left to make the frames; the run folder stays resumable."""


class InterruptedRun(Exception):
    """Raised inside the engine when the user asked to stop; the run folder stays resumable."""


def short(value: Any, limit: int = 200, *, quote: bool = True) -> str:
    """repr(value) (or str with quote=False), cut to limit characters: a message never quotes
    a huge value in full."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
