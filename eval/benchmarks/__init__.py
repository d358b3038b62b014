"""Streaming benchmarks as their authors publish them: one module per format, each reading its
files, asking its questions with its official prompts, and scoring as its official script does.

- ``jsonl`` (:mod:`.jsonl`): ours;
- ``ovo`` (:mod:`.ovo`): OVO-Bench, every task, forward active responding included;
- ``streamingbench`` (:mod:`.streamingbench`): StreamingBench's real, omni, sqa and proactive files;
- ``ovbench`` (:mod:`.ovbench`): OVBench, streaming and lmms-eval layouts.

A new format is a module here with a :class:`BenchmarkFormat` subclass decorated with
:func:`register_benchmark`, imported below.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videollama3.errors import AnnotationError
from videollama3.questions import RecordLog

from . import jsonl, ovbench, ovo, streamingbench  # noqa: F401  (each registers its format)
from .base import BENCHMARKS, Benchmark, BenchmarkFormat, VideoSet, register_benchmark

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkFormat", "VideoSet", "load_benchmark", "register_benchmark"]


def load_benchmark(kind: str, paths: str | Path | Sequence[str | Path], video_root: str | Path,
                   skip_bad: bool = False, check_videos: bool = True) -> Benchmark:
    """Read annotation files of format ``kind``, in order, into one :class:`Benchmark`.

    Videos named by several files are streamed once, with all their questions; question ids are
    unique over the files, and :attr:`TimedQuestion.order` numbers questions in file order.

    Args:
        kind: a registered format (:data:`BENCHMARKS`).
        paths: one annotation file or several.
        video_root: the folder the files' video paths are relative to.
        skip_bad: report bad records (and missing videos) and go on instead of stopping.
        check_videos: False: do not look for the videos (``video_root / name`` as named), to read
            what files hold without their videos (:mod:`scripts.placeholder_videos`).

    Raises:
        AnnotationError: for an unknown format, a file that cannot be read, or (without
            ``skip_bad``) a bad record, naming the file and the record.
    """
    if kind not in BENCHMARKS:
        raise AnnotationError(f"unknown benchmark format {kind!r}; known: {', '.join(BENCHMARKS)}")
    fmt = BENCHMARKS[kind]
    videos, skipped = VideoSet(video_root, check_videos), []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        log = RecordLog(path, skip_bad)
        fmt.load(Path(path), videos, log)
        skipped += log.skipped
    found = [v for v in videos.videos.values() if v.questions]
    for v in found:
        v.questions.sort(key=lambda q: (q.time, q.order))
    return Benchmark(found, fmt, skipped, videos.system_prompt)
