"""Benchmarks: scripts that print numbers (``vl3mem bench TARGET``, or ``python -m benchmarks.NAME``).

They sit outside the library packages and import any layer. Sample videos are looked up
in ``data/videos/`` (``scripts/get_sample_videos.sh`` fetches them there) under the current
folder, then under the repository this package was installed from; a missing video is one
clear error naming the flag that gives another.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videollama3.errors import UsageError, report_errors

VIDEO_FOLDERS = (Path.cwd() / "data" / "videos", Path(__file__).resolve().parents[1] / "data" / "videos")


class BenchmarkInputError(UsageError):
    """A benchmark input that is missing or unusable; the message names the flag to pass."""


def sample_video(name: str) -> Path:
    """The sample video ``name`` in ``data/videos/`` (current folder first, then the source tree);
    the path under the current folder when it is in neither (:func:`existing_video` reports it)."""
    for folder in VIDEO_FOLDERS:
        if (folder / name).is_file():
            return folder / name
    return VIDEO_FOLDERS[0] / name


def existing_video(path: str | Path, flag: str) -> Path:
    """``path`` when it is a file.

    Raises:
        BenchmarkInputError: naming ``flag`` and the script that fetches the samples.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkInputError(f"no video at {path}; run scripts/get_sample_videos.sh (it writes data/videos/) "
                                  f"or pass {flag} PATH")
    return path


def add_video_arguments(parser: argparse.ArgumentParser, videos: list[str], fps: float) -> None:
    """``--videos`` (sample videos by default), ``--model`` (tiny), ``--device`` (cpu) and ``--fps``."""
    parser.add_argument("--videos", nargs="+", default=[str(sample_video(v)) for v in videos],
                        help=f"default: {', '.join(videos)} in data/videos/")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=float, default=fps, help=f"frames sampled per second (default {fps:g})")


def device_sync(device: Any) -> Callable[[], None]:
    """What a timer calls before reading the clock, so that work queued on ``device`` (a ``torch.device``
    or its name) is counted: ``torch.cuda.synchronize`` on a CUDA device, nothing elsewhere."""
    import torch

    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def run_as_script(main: Callable[[list[str]], Any]) -> int:
    """``python -m benchmarks.NAME ARGS``: ``main(ARGS)``, with bad input one line on stderr and exit status 2
    (:func:`videollama3.errors.report_errors`), as ``vl3mem bench`` prints it, not a traceback. Returns the
    exit status."""

    def run() -> int:
        main(sys.argv[1:])  # the numbers are printed; what it returns is for callers in Python
        return 0

    return report_errors(run)
