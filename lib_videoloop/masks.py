"""Per-frame inpainting masks: a folder of masks, one mask file, or the frames' alpha channel.

Masks are binarised with mask_threshold (white = repaint) and resized like the frames. Every
frame's mask is resolved before generation starts; frames without one are listed in the error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib_videoloop.errors import VideoLoopError
from lib_videoloop.media.images import is_image_file, load_image
from lib_videoloop.media.resize import resize_frame
from lib_videoloop.media.sources import Frame, natural_key


class MaskSource:
    """Finds the mask of each input frame."""

    def __init__(self, mask_directory: str, threshold: int, frame_kind: str) -> None:
        self.threshold = threshold
        self.frame_kind = frame_kind
        self.folder: dict[str, Path] | None = None
        self.by_number: dict[int, Path] = {}
        self.single: np.ndarray | None = None
        text = (mask_directory or "").strip()
        if not text:
            return  # alpha channel of each frame
        path = Path(text).expanduser()
        if not path.exists():
            raise VideoLoopError(
                "mask_directory",
                text,
                "does not exist",
                "Give a folder of masks, one mask image, or leave it empty to use the frames' alpha channel",
            )
        if path.is_dir():
            files = sorted((p for p in path.iterdir() if is_image_file(p)), key=natural_key)
            if not files:
                raise VideoLoopError(
                    "mask_directory",
                    text,
                    "holds no image files",
                    "Put one mask per frame in it (same file names as the frames)",
                )
            self.folder = {p.stem: p for p in files}
            for p in files:
                digits = "".join(ch for ch in p.stem if ch.isdigit())
                if digits:
                    self.by_number.setdefault(int(digits), p)
        else:
            self.single = self._binarise(*load_image(path, "mask_directory"))

    def verify(self, names: list[str]) -> None:
        """Decodes the mask file of each frame (by its name, as mask_for finds it) and keeps
        none: a damaged one refuses the run before anything is made."""
        if self.folder is None:
            return  # one mask, decoded already, or the frames' alpha, decoded with the frames
        for name in names:
            path = self._path_for(name, int(name) if self.frame_kind == "video" else None)
            if path is not None:
                load_image(path, "mask_directory")

    def _path_for(self, name: str, source_number: int | None) -> Path | None:
        """The mask file of a frame of the folder: by its name, or by its video frame number."""
        assert self.folder is not None
        path = self.folder.get(name)
        if path is None and source_number is not None:
            path = self.by_number.get(source_number)
        return path

    def _binarise(self, rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
        # A mask image's alpha, when it has one, says where to paint (as the WebUI reads RGBA masks).
        grey = alpha if alpha is not None else rgb.mean(axis=2)
        return (grey * 255.0 > self.threshold).astype(np.float32)

    def mask_for(self, frame: Frame, source_number: int | None) -> np.ndarray | None:
        """The binarised mask at the frame's own size, or None when the frame has none."""
        if self.single is not None:
            return self.single
        if self.folder is not None:
            path = self._path_for(frame.name, source_number)
            if path is None:
                return None
            return self._binarise(*load_image(path, "mask_directory"))
        if frame.alpha is None:
            return None
        return (frame.alpha * 255.0 > self.threshold).astype(np.float32)


def fit_mask(mask: np.ndarray, width: int, height: int, resize_mode: int) -> np.ndarray:
    """Resizes like the frames, then binarises again (resampling blurs the edge)."""
    return (resize_frame(mask, width, height, resize_mode) > 0.5).astype(np.float32)


def missing_masks_error(names: Iterable[str], mask_directory: str) -> VideoLoopError:
    names = list(names)
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    where = mask_directory or "(the frames' alpha channel)"
    return VideoLoopError(
        "mask_directory",
        where,
        f"{len(names)} frame(s) have no mask: {shown}",
        "Add a mask with the same file name (or frame number) for each, or turn use_mask off",
    )
