"""Streaming benchmarks as one internal form: videos, each with its timed questions.

Formats:

- ``jsonl`` (ours): one line per video, ``{"video": path, "fps": 1, "questions": [{"id",
  "time" (s), "question", "options" (optional list), "answer" (letter or text), "task",
  "subtask" (optional), "evidence" (optional [start_s, end_s])}]}``;
- ``ovo``: OVO-Bench (Li et al., "OVO-Bench: How Far is Your Video-LLMs from Real-World
  Online Video Understanding?", CVPR 2025), its ``ovo_bench_new.json``: a list of
  ``{id, task, video, realtime (s), question, options, gt (index)}``; backward (EPM, ASI,
  HLD) and real-time (STU, OJR, ATR, ACR, OCR, FPD) tasks. Forward active-responding
  tasks (REC, SSR, CRR) are skipped and counted;
- ``ovbench``: OVBench streaming format (VideoChat-Online, Huang et al., CVPR 2025): a
  list of ``{video_id, fps, questions: [{middle_frame_timestamp, question, options
  ["A. ...", ...], answer, answer_type, sub_answer_type, start?, end?}]}``.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videollama3.errors import QuestionError

BENCHMARKS = ("jsonl", "ovo", "ovbench")
OVO_BACKWARD = ("EPM", "ASI", "HLD")
OVO_REALTIME = ("STU", "OJR", "ATR", "ACR", "OCR", "FPD")
OVO_FORWARD = ("REC", "SSR", "CRR")
VIDEO_EXTENSIONS = ("", ".mp4", ".mkv", ".webm", ".avi", ".mov")
LETTERS = string.ascii_uppercase


class AnnotationError(QuestionError):
    """A benchmark file or record that cannot be used; the message names the file and record."""


@dataclass
class TimedQuestion:
    """One question asked at a stream time.

    Attributes:
        id: unique within the benchmark.
        time: seconds from the start of the video; the answer may use frames up to it.
        question: the text.
        options: option texts without their letters (empty for open questions).
        answer: the correct letter (``"A"``...) when there are options, else the reference text.
        task / subtask: labels for per-task accuracy.
        evidence: ``(start_s, end_s)`` of the frames that hold the answer, when known.
    """

    id: str
    time: float
    question: str
    options: list[str] = field(default_factory=list)
    answer: str = ""
    task: str = "all"
    subtask: str | None = None
    evidence: tuple[float, float] | None = None


@dataclass
class VideoQuestions:
    """A video and its questions, sorted by time.

    Attributes:
        video: path of the video file.
        fps: frames sampled per second (None: the evaluation's default).
        questions: in time order.
        source: where it was read (``"line 3"``), for messages; None when merged.
    """

    video: Path
    fps: float | None
    questions: list[TimedQuestion]
    source: str | None = None


@dataclass
class Benchmark:
    """What a loader returns.

    Attributes:
        videos: videos with at least one usable question.
        skipped: ``"file: record: why"`` lines for each record left out with ``skip_bad``.
        skipped_tasks: ``{task: count}`` of questions of tasks this evaluation does not run
            (OVO-Bench forward active-responding tasks).
    """

    videos: list[VideoQuestions]
    skipped: list[str] = field(default_factory=list)
    skipped_tasks: dict[str, int] = field(default_factory=dict)

    @property
    def num_questions(self) -> int:
        """Questions over all videos."""
        return sum(len(v.questions) for v in self.videos)


def resolve_video(root: Path, name: str) -> Path:
    """``root / name``, trying the usual video extensions when ``name`` has none.

    Raises:
        FileNotFoundError: with ``name`` as its argument, when no such file exists.
    """
    for ext in VIDEO_EXTENSIONS:
        path = root / f"{name}{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(name)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _letter(answer: Any, options: list[str]) -> str:
    """The answer as a letter: a letter, ``"B. text"``, an index or an option's text."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(options):
            raise ValueError(f"answer index {answer} is outside the {len(options)} options")
        return LETTERS[answer]
    text = str(answer).strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?(?:[.:)]\s*.*)?", text, flags=re.DOTALL)
    if m and (len(text) == 1 or not text[1:2].isalpha()):
        letter = m.group(1).upper()
        if LETTERS.index(letter) >= len(options):
            raise ValueError(f"answer {text!r} names option {letter} but there are {len(options)} options")
        return letter
    for i, option in enumerate(options):
        if option.strip().lower() == text.lower():
            return LETTERS[i]
    raise ValueError(f"answer {text!r} is neither an option letter nor one of the options")


def _strip_letter(option: str) -> str:
    """``"A. red"`` / ``"(A) red"`` / ``"A) red"`` -> ``"red"``."""
    return re.sub(r"^\s*\(?[A-Z]\s*[.:)]\s*", "", str(option)).strip()


def _evidence(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"evidence must be [start_s, end_s], got {value!r}")
    start, end = _number(value[0], "evidence start"), _number(value[1], "evidence end")
    if end < start:
        raise ValueError(f"evidence end {end} is before its start {start}")
    return start, end


class _Loader:
    """Collects videos and bad records of one file; raises or skips."""

    def __init__(self, path: Path, video_root: Path, skip_bad: bool) -> None:
        self.path, self.video_root, self.skip_bad = path, video_root, skip_bad
        self.videos: dict[Path, VideoQuestions] = {}
        self.skipped: list[str] = []
        self.skipped_tasks: dict[str, int] = {}

    def bad(self, record: str, why: str) -> None:
        message = f"{self.path}: {record}: {why}"
        if not self.skip_bad:
            raise AnnotationError(message + " (use --skip-bad to report it and go on)")
        self.skipped.append(message)

    def video(self, name: str, fps: float | None) -> VideoQuestions:
        path = resolve_video(self.video_root, name)
        if path not in self.videos:
            self.videos[path] = VideoQuestions(path, fps, [])
        return self.videos[path]

    def result(self) -> Benchmark:
        videos = [v for v in self.videos.values() if v.questions]
        for v in videos:
            v.questions.sort(key=lambda q: (q.time, q.id))
        return Benchmark(videos, self.skipped, self.skipped_tasks)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise AnnotationError(f"no such annotation file: {path}")
    return path.read_text()


def _read_list(path: Path, what: str) -> list[Any]:
    """A JSON file holding a list of ``what``."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of {what}, got {type(data).__name__}")
    return data


def read_jsonl_records(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Read our JSONL format line by line, one :class:`VideoQuestions` per line (not merged).

    Training reads a line as one conversation (its questions, in file order, are
    the turns); :func:`load_jsonl` merges lines on the same video.

    Raises:
        AnnotationError: for a missing file, a line that does not parse, a missing video,
            a bad record (naming the file, the line and the question); with ``skip_bad``
            bad records are listed in :attr:`Benchmark.skipped` instead.
    """
    path = Path(path)
    loader = _Loader(path, Path(video_root), skip_bad)
    records: list[VideoQuestions] = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "video" not in record or not isinstance(record.get("questions"), list):
                raise ValueError("expected an object with 'video' and a 'questions' list")
            fps = record.get("fps")
            if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
                raise ValueError(f"fps must be a positive number, got {fps!r}")
            video = VideoQuestions(resolve_video(loader.video_root, str(record["video"])), fps, [], f"line {n}")
            records.append(video)
        except json.JSONDecodeError as e:
            loader.bad(f"line {n}", f"does not parse as JSON ({e.msg})")
            continue
        except FileNotFoundError as e:
            loader.bad(f"line {n}", f"video {e.args[0]!r} not found under {loader.video_root}")
            continue
        except ValueError as e:
            loader.bad(f"line {n}", str(e))
            continue
        for k, q in enumerate(record["questions"]):
            qid = str(q.get("id", f"{record['video']}#{k}")) if isinstance(q, dict) else f"{record['video']}#{k}"
            try:
                if not isinstance(q, dict) or not str(q.get("question", "")).strip():
                    raise ValueError("no question text")
                if "time" not in q:
                    raise ValueError("no 'time' (seconds)")
                options = [_strip_letter(o) for o in q.get("options") or []]
                answer = q.get("answer")
                if answer is None:
                    raise ValueError("no answer")
                if not options and re.fullmatch(r"\(?[A-Za-z]\)?", str(answer).strip()):
                    raise ValueError(f"answer {answer!r} is a letter but the question has no options")
                video.questions.append(TimedQuestion(
                    id=qid, time=_number(q["time"], "time"), question=str(q["question"]), options=options,
                    answer=_letter(answer, options) if options else str(answer), task=str(q.get("task", "all")),
                    subtask=q.get("subtask"), evidence=_evidence(q.get("evidence")),
                ))
            except ValueError as e:
                loader.bad(f"line {n} question {qid}", str(e))
    return Benchmark([r for r in records if r.questions], loader.skipped)


def load_jsonl(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load our JSONL format (module docstring), lines on the same video merged, questions
    in time order. Videos are relative to ``video_root``.

    Raises:
        AnnotationError: see :func:`read_jsonl_records`.
    """
    records = read_jsonl_records(path, video_root, skip_bad)
    merged: dict[Path, VideoQuestions] = {}
    for r in records.videos:
        merged.setdefault(r.video, VideoQuestions(r.video, r.fps, [])).questions.extend(r.questions)
    for v in merged.values():
        v.questions.sort(key=lambda q: (q.time, q.id))
    return Benchmark(list(merged.values()), records.skipped)


def load_ovo(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load OVO-Bench's ``ovo_bench_new.json`` (backward and real-time tasks).

    Forward active-responding tasks (REC, SSR, CRR) are counted in
    :attr:`Benchmark.skipped_tasks`, not loaded.

    Raises:
        AnnotationError: see :func:`load_jsonl`.
    """
    path = Path(path)
    loader = _Loader(path, Path(video_root), skip_bad)
    for n, r in enumerate(_read_list(path, "OVO-Bench records")):
        rid = f"record {n} (id {r.get('id')!r})" if isinstance(r, dict) else f"record {n}"
        try:
            if not isinstance(r, dict):
                raise ValueError("not an object")
            task = str(r.get("task"))
            if task in OVO_FORWARD:
                loader.skipped_tasks[task] = loader.skipped_tasks.get(task, 0) + 1
                continue
            if task not in OVO_BACKWARD + OVO_REALTIME:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(OVO_BACKWARD + OVO_REALTIME + OVO_FORWARD)})")
            options = [_strip_letter(o) for o in r.get("options") or []]
            if len(options) < 2:
                raise ValueError("a multiple-choice question needs at least 2 options")
            if "gt" not in r and "answer" not in r:
                raise ValueError("no 'gt' (option index) or 'answer'")
            answer = _letter(r["gt"] if "gt" in r else r["answer"], options)
            question = TimedQuestion(
                id=str(r.get("id", n)), time=_number(r.get("realtime"), "realtime"), question=str(r["question"]),
                options=options, answer=answer, task=task,
                subtask="backward" if task in OVO_BACKWARD else "real-time",
            )
            loader.video(str(r["video"]), None).questions.append(question)
        except FileNotFoundError as e:
            loader.bad(rid, f"video {e.args[0]!r} not found under {loader.video_root}")
        except (KeyError, ValueError) as e:
            loader.bad(rid, str(e) if isinstance(e, ValueError) else f"missing field {e}")
    return loader.result()


def load_ovbench(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load OVBench's streaming format (VideoChat-Online).

    Raises:
        AnnotationError: see :func:`load_jsonl`.
    """
    path = Path(path)
    loader = _Loader(path, Path(video_root), skip_bad)
    for n, r in enumerate(_read_list(path, "OVBench videos")):
        vid = r.get("video_id") if isinstance(r, dict) else None
        try:
            if not isinstance(r, dict) or vid is None or not isinstance(r.get("questions"), list):
                raise ValueError("expected an object with 'video_id' and a 'questions' list")
            fps = r.get("fps")
            video = loader.video(str(vid), float(fps) if fps else None)
        except FileNotFoundError as e:
            loader.bad(f"video {n} ({vid!r})", f"video {e.args[0]!r} not found under {loader.video_root}")
            continue
        except ValueError as e:
            loader.bad(f"video {n}", str(e))
            continue
        for k, q in enumerate(r["questions"]):
            qid = f"{vid}#{k}"
            try:
                if not isinstance(q, dict):
                    raise ValueError("not an object")
                options = [_strip_letter(o) for o in q.get("options") or []]
                if len(options) < 2:
                    raise ValueError("a multiple-choice question needs at least 2 options")
                evidence = None
                if q.get("start") is not None and q.get("end") is not None:
                    evidence = _evidence([q["start"], q["end"]])
                video.questions.append(TimedQuestion(
                    id=qid, time=_number(q.get("middle_frame_timestamp"), "middle_frame_timestamp"),
                    question=str(q["question"]), options=options, answer=_letter(q["answer"], options),
                    task=str(q.get("answer_type", "all")), subtask=q.get("sub_answer_type"), evidence=evidence,
                ))
            except KeyError as e:
                loader.bad(f"video {vid!r} question {k}", f"missing field {e}")
            except ValueError as e:
                loader.bad(f"video {vid!r} question {k}", str(e))
    return loader.result()


LOADERS = {"jsonl": load_jsonl, "ovo": load_ovo, "ovbench": load_ovbench}


def load_benchmark(kind: str, path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load ``path`` in format ``kind`` (``jsonl``, ``ovo`` or ``ovbench``).

    Raises:
        AnnotationError: for an unknown format or bad annotations (see the loaders).
    """
    if kind not in LOADERS:
        raise AnnotationError(f"unknown benchmark format {kind!r}; known: {', '.join(BENCHMARKS)}")
    return LOADERS[kind](path, video_root, skip_bad)
