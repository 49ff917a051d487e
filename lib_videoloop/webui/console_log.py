"""The run's own lines (plan:, disk:, loop n/N done, the run folder) in the WebUI's console.

AUTOMATIC1111 and Forge set up logging only when started with --log-level (or
SD_WEBUI_LOG_LEVEL) (modules/logging_config.py). Otherwise the root logger stays at WARNING:
with no handler, or with the plain one that the first module-level logging.warning() call
adds (the WebUI's own sampler autocorrection makes one on every job), so a user never saw how
many generations a job makes or what it writes. Where the WebUI was asked for INFO or more,
its handlers and format stand.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

PACKAGE = "lib_videoloop"


class _ConsoleHandler(logging.StreamHandler):
    """Lines written through tqdm, as the WebUI's own handler does, so that a progress bar on
    the console is not cut in two (tqdm is one of the WebUI's own requirements)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # a log line must never stop a run
            self.handleError(record)


def show_run_lines() -> None:
    """From now on the package's INFO lines reach the console, through a handler of its own
    (not passed on to the root's, which would print them twice), unless the WebUI's logging
    already lets them through or an earlier call set this up."""
    logger = logging.getLogger(PACKAGE)
    if logger.getEffectiveLevel() <= logging.INFO or logger.handlers:
        return
    handler = _ConsoleHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("Video Loopback: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
