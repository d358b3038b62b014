"""What every benchmark format shares: the loaded :class:`Benchmark`, the :class:`VideoSet` loaders
fill, and the :class:`BenchmarkFormat` a format implements (read its files, write its prompts, score
its answers as its official script does, lay out its table).

A new benchmark is one module in this package: a :class:`BenchmarkFormat` subclass and a
:func:`register_benchmark` line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from videollama3.questions import RecordLog, TimedQuestion, VideoQuestions, format_question, resolve_video


@dataclass
class Benchmark:
    """The questions of a run, by video.

    Attributes:
        videos: videos with at least one usable question, each with its questions in time order.
        format: the :class:`BenchmarkFormat` that read them (prompts, scoring, table).
        skipped: ``"file: record: why"`` lines for each record left out with ``skip_bad``.
        system_prompt: the system message the benchmark's official evaluation sets (None: the model's own).
    """

    videos: list[VideoQuestions]
    format: BenchmarkFormat
    skipped: list[str] = field(default_factory=list)
    system_prompt: str | None = None

    @property
    def num_questions(self) -> int:
        """Questions over all videos."""
        return sum(len(v.questions) for v in self.videos)

    def limit(self, n: int) -> None:
        """Keep the first ``n`` questions in file order (:attr:`TimedQuestion.order`), drop videos left empty."""
        kept = sorted(q.order for v in self.videos for q in v.questions)[:max(n, 0)]
        last = kept[-1] if kept else -1
        for video in self.videos:
            video.questions = [q for q in video.questions if q.order <= last]
        self.videos = [v for v in self.videos if v.questions]


class VideoSet:
    """The videos named by a run's annotation files, filled by a format's :meth:`BenchmarkFormat.load`.

    Question ids are unique over all the files of a run; each question added gets its file-order
    position (:attr:`TimedQuestion.order`).

    Args:
        video_root: the folder the files' video paths are relative to.
        check_videos: resolve each video under the root (a missing one is a bad record); False
            takes ``video_root / name`` as it is, to read what a file holds without its videos.
    """

    def __init__(self, video_root: str | Path, check_videos: bool = True) -> None:
        self.video_root = Path(video_root)
        self.check_videos = check_videos
        self.videos: dict[Path, VideoQuestions] = {}
        self.system_prompt: str | None = None
        self._ids: dict[str, str] = {}

    def video(self, name: str, log: RecordLog, record: str, fps: float | None = None,
              frame_rate: float | None = None, start: float = 0.0, end: float | None = None) -> VideoQuestions | None:
        """The video ``name`` (a file or a frame folder under the root), created on first use; None
        (reported to ``log``) when it does not exist, or when an earlier record streams it otherwise
        (:meth:`at`).

        Raises:
            AnnotationError: for a missing video or other settings, unless ``log.skip_bad``.
        """
        try:
            path = resolve_video(self.video_root, name) if self.check_videos else self.video_root / name
        except FileNotFoundError:
            log.bad(record, f"video {name!r} not found under {self.video_root}")
            return None
        return self.at_or_bad(path, log, record, fps, frame_rate, start, end)

    def at_or_bad(self, path: Path, log: RecordLog, record: str, fps: float | None = None,
                  frame_rate: float | None = None, start: float = 0.0, end: float | None = None
                  ) -> VideoQuestions | None:
        """:meth:`at`, with a video already given other settings reported to ``log`` as a bad record (None).

        Raises:
            AnnotationError: for other settings, unless ``log.skip_bad``.
        """
        try:
            return self.at(path, fps, frame_rate, start, end)
        except ValueError as e:
            log.bad(record, str(e))
            return None

    def at(self, path: Path, fps: float | None = None, frame_rate: float | None = None, start: float = 0.0,
           end: float | None = None) -> VideoQuestions:
        """The video at ``path`` (already resolved), created on first use with these settings: the
        questions on one video share one pass over it.

        Raises:
            ValueError: when it was created with other settings (another sampling rate, frame rate or
                window): one pass cannot stream it both ways, and taking the first would answer these
                questions from frames their record did not ask for.
        """
        video = self.videos.get(path)
        if video is None:
            video = self.videos[path] = VideoQuestions(path, fps, [], frame_rate=frame_rate, start=start, end=end)
        asked, held = (fps, frame_rate, start, end), (video.fps, video.frame_rate, video.start, video.end)
        if asked != held:
            described = ", ".join(f"{k} {a!r} (before: {b!r})" for k, a, b in
                                  zip(("fps", "frame rate", "start", "end"), asked, held) if a != b)
            raise ValueError(f"{path.name} was already given with other settings: {described}; the questions on "
                             "one video share one pass over it")
        return video

    def add(self, video: VideoQuestions, question: TimedQuestion, log: RecordLog, record: str) -> bool:
        """Add ``question`` to ``video``; a repeated id, or a time before the part of the video streamed
        (``video.start``: its answer would see no frame), is a bad record (reported to ``log``).

        Raises:
            AnnotationError: for a bad record, unless ``log.skip_bad``.
        """
        if question.id in self._ids:
            log.bad(record, f"question id {question.id!r} is used twice (first at {self._ids[question.id]}); "
                            "give every question its own id")
            return False
        if question.time < video.start:
            log.bad(record, f"at {question.time:.6g}s it is before the part of the video streamed, which starts at "
                            f"{video.start:.6g}s: its answer would see no frame")
            return False
        self._ids[question.id] = f"{log.path.name}: {record}"
        question.order = len(self._ids) - 1
        video.questions.append(question)
        return True


class BenchmarkFormat(ABC):
    """One benchmark's file format, prompts, scoring and table.

    Attributes:
        name: the ``--benchmark`` value.
        help: one line for ``--help``.
        prompt_style: the :func:`~videollama3.questions.format_question` style of its
            multiple-choice questions.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    prompt_style: ClassVar[str] = "jsonl"

    @abstractmethod
    def load(self, path: Path, videos: VideoSet, log: RecordLog) -> None:
        """Read ``path`` and add its questions to ``videos``; a bad record goes to ``log``.

        Raises:
            AnnotationError: for a file that cannot be read, or a bad record unless ``log.skip_bad``.
        """

    def prompt(self, question: TimedQuestion) -> str:
        """The text asked for ``question`` (default: its multiple-choice prompt in :attr:`prompt_style`)."""
        return format_question(question, self.prompt_style)

    @abstractmethod
    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """Score one prediction record as the benchmark's official script does.

        Args:
            record: a prediction record: ``prediction`` (text or None), ``answer``, ``options``,
                ``task``, ``extra`` (and ``polls`` / ``last_time`` for polled questions).

        Returns:
            ``{"correct": True / False, or None when the official script leaves the answer out of
            its counts, ...}``: format-specific fields may follow.
        """

    def table(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The benchmark's own result table over scored ``records`` (None: the generic accuracy table only)."""
        return None

    def table_lines(self, table: dict[str, Any]) -> list[str]:
        """``table`` as markdown lines for ``report.md``."""
        return []


BENCHMARKS: dict[str, BenchmarkFormat] = {}


def register_benchmark(format_class: type[BenchmarkFormat]) -> type[BenchmarkFormat]:
    """Make ``format_class`` available as ``--benchmark format_class.name`` (a class decorator).

    Raises:
        ValueError: when the name is taken.
    """
    if format_class.name in BENCHMARKS:
        raise ValueError(f"benchmark format {format_class.name!r} is registered twice")
    BENCHMARKS[format_class.name] = format_class()
    return format_class


def percent(correct: float, total: int) -> float | None:
    """``100 * correct / total`` rounded to 2 places (None for no question)."""
    return round(100.0 * correct / total, 2) if total else None


def mean(values: list[float | None]) -> float | None:
    """Mean of the values that are not None, rounded to 2 places (None when there are none)."""
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None
