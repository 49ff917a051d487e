"""What one frame's generation asks for: shared by the plan (planning.py) and the backend's
request (backends/), so the two never drift apart."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Sampling:
    """The values a frame's schedules give for its generation, seeds included."""

    prompt: str
    negative_prompt: str
    seed: int
    subseed: int
    subseed_strength: float
    denoising_strength: float
    steps: int
    cfg_scale: float
    batch_size: int
    n_iter: int

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    def call_key(self) -> tuple[Any, ...]:
        """What frames must have in common to share one generation call: everything but their
        prompts and seeds, which a batch takes per item (and their init images and masks)."""
        return (
            self.denoising_strength,
            self.steps,
            self.cfg_scale,
            self.subseed_strength,
            self.batch_size,
            self.n_iter,
        )

    def sampling(self) -> dict[str, Any]:
        """These fields alone, to build a request from a plan."""
        return {f.name: getattr(self, f.name) for f in fields(Sampling)}
