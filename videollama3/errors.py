"""Errors of the VideoLLaMA3 hook, the streaming session and the CLI.

All are :class:`ValueError` subclasses carrying a one-line message meant for the
user; the CLI prints it and exits with status 2 (:func:`report_errors`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from memory_bank import MemoryBankError


class VideoError(ValueError):
    """A video that cannot be opened or decoded (missing, not a video, empty, truncated).

    Attributes:
        path: the video's path.
        stopped_at: seconds of video decoded before the failure (None when it
            failed before the first frame).
    """

    def __init__(self, message: str, path: str = "", stopped_at: float | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.stopped_at = stopped_at


class ModelLoadError(ValueError):
    """A model or tokenizer that cannot be loaded (unreachable hub id, bad folder)."""


class QuestionError(ValueError):
    """A question that cannot be asked (time outside the video, empty text, bad file)."""


class CheckpointError(ValueError):
    """A fine-tuned checkpoint folder that cannot be read or does not fit the model."""


class UsageError(ValueError):
    """A command-line argument or setting that makes no sense (the message says which and why)."""


class AnnotationError(QuestionError):
    """A timed-question file or record that cannot be used; the message names the file and record."""


USER_ERRORS = (VideoError, ModelLoadError, QuestionError, MemoryBankError, UsageError, CheckpointError)
"""What bad input raises (eval's and train's errors, and the benchmarks', derive from these): the command
line prints each as one line, never a traceback."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a library's may span several), or its class name when empty."""
    return " ".join(str(error).split()) or error.__class__.__name__


def report_errors(run: Callable[[], int | None]) -> int:
    """``run()``'s exit status (None: 0); bad input (:data:`USER_ERRORS`) is one line ``vl3mem: error: ...``
    on stderr and status 2, an interrupt one line and status 130."""
    try:
        return run() or 0
    except USER_ERRORS as e:
        print(f"vl3mem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vl3mem: interrupted", file=sys.stderr)
        return 130
