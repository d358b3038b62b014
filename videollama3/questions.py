"""Timed questions on videos: the data that evaluation (``eval/``) and training (``train/``) share.

- :class:`TimedQuestion` / :class:`VideoQuestions`: a question asked at a stream time, and a
  video with its questions;
- :class:`RecordLog`: a bad record stops with an :class:`~videollama3.errors.AnnotationError`
  naming the file and record, or, with ``skip_bad``, is reported and left out;
- :func:`read_json_list` / :func:`read_json_lines` / :func:`read_json_records`: the one JSON
  and JSON-lines reader;
- :func:`resolve_video`: a record's video under a root folder;
- :func:`read_jsonl_records`: our JSONL format (one video and its questions per line);
- :func:`format_question`: a multiple-choice question written as each benchmark asks it,
  and :func:`answer_letter` / :func:`strip_letter` for the answers and options of the files.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import AnnotationError
from .options import read_config_text
from .processing import RESERVED_TOKENS

T = TypeVar("T")
VIDEO_EXTENSIONS = ("", ".mp4", ".mkv", ".webm", ".avi", ".mov")
LETTERS = string.ascii_uppercase
INSTRUCTION = "Answer with the option's letter from the given choices directly."
PROMPT_STYLES = ("jsonl", "ovo", "ovbench")


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
        order: position in the annotation files (file order, across files), for ``--limit``.
        extra: what a benchmark's prompt and scoring read besides these fields (JSON values:
            OVO-Bench's count or yes/no type, StreamingBench's dialogue context...); it is kept in
            the prediction record so a predictions file can be scored again.
        poll: for a question the model must answer on its own when the moment comes
            (StreamingBench's proactive output), when and how it is asked; None for the others.
    """

    id: str
    time: float
    question: str
    options: list[str] = field(default_factory=list)
    answer: str = ""
    task: str = "all"
    subtask: str | None = None
    evidence: tuple[float, float] | None = None
    order: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    poll: Poll | None = None


@dataclass
class Poll:
    """How a proactive question is asked: at each of ``times`` (seconds, increasing) the model is
    asked ``query`` from the memory at that moment, until its reply contains ``trigger`` (compared in
    lower case); then the question itself is asked at that same moment, and polling stops.

    Attributes:
        times: poll times in seconds, increasing; polls past the end of the video are not asked. A
            ``range`` for polls at a fixed step (StreamingBench's, one a second): it costs nothing however
            far an annotation's ground truth lies, and the evaluation cuts it at the end of the video
            without walking it.
        query: the text of each poll.
        trigger: the reply that means "now" (``"yes"``).
    """

    times: Sequence[float]
    query: str
    trigger: str = "yes"


@dataclass
class VideoQuestions:
    """A video and its questions, sorted by time.

    Attributes:
        video: path of the video file.
        fps: frames sampled per second (None: the run's default).
        questions: in time order.
        source: where it was read (``"line 3"``), for messages; None when merged.
        frame_rate: frames per second of a frame-folder video's images (None: the run's
            ``--frame-rate``); a video file's own rate comes from its container.
        start / end: the part of the video streamed, in seconds of the video (``end`` None: to
            the end); frames keep the video's timestamps.
    """

    video: Path
    fps: float | None
    questions: list[TimedQuestion]
    source: str | None = None
    frame_rate: float | None = None
    start: float = 0.0
    end: float | None = None


class RecordLog:
    """The bad records of one file: each raises, or is kept as a ``"file: record: why"`` line with ``skip_bad``.

    Args:
        path: the file read.
        skip_bad: report bad records and go on instead of stopping.
    """

    def __init__(self, path: str | Path, skip_bad: bool = False) -> None:
        self.path, self.skip_bad = Path(path), skip_bad
        self.skipped: list[str] = []
        self._ids: dict[str, str] = {}

    def first_use(self, question_id: str, record: str) -> bool:
        """Whether ``question_id`` is new in this file. A repeat (``1`` and ``"1"`` are the same id)
        is a bad record naming both places, reported as :meth:`bad` reports it.

        Raises:
            AnnotationError: for a repeated id, unless ``skip_bad``.
        """
        if question_id in self._ids:
            self.bad(record, f"question id {question_id!r} is used twice (first at {self._ids[question_id]}); "
                             "give every question its own id")
            return False
        self._ids[question_id] = record
        return True

    def attempt(self, record: str, build: Callable[[], T]) -> T | None:
        """``build()``, or None when it raises ``KeyError`` (a missing field), ``ValueError`` or
        ``TypeError`` (a bad value): that is reported as :meth:`bad` reports it.

        Raises:
            AnnotationError: for a bad record, unless ``skip_bad``.
        """
        try:
            return build()
        except KeyError as e:
            self.bad(record, f"missing field {e}")
        except (ValueError, TypeError) as e:
            self.bad(record, str(e))
        return None

    def bad(self, record: str, why: str) -> None:
        """Report record ``record`` as unusable because of ``why``.

        Raises:
            AnnotationError: naming the file and the record, unless ``skip_bad``.
        """
        message = f"{self.path}: {record}: {why}"
        if not self.skip_bad:
            raise AnnotationError(message + " (use --skip-bad to report it and go on)")
        self.skipped.append(message)


# ------------------------------------------------------------------- reading
def read_text(path: str | Path) -> str:
    """The text of an annotation file (UTF-8).

    Raises:
        AnnotationError: when it does not exist, cannot be read, or is not UTF-8 text.
    """
    return read_config_text(path, AnnotationError, "annotation file")


def read_json_list(path: str | Path, what: str) -> list[Any]:
    """A JSON file holding a list of ``what``.

    Raises:
        AnnotationError: for a missing file, invalid JSON or a document that is not a list.
    """
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of {what}, got {type(data).__name__}")
    return data


def read_json_lines(path: str | Path, log: RecordLog) -> Iterator[tuple[int, Any]]:
    """``(line number from 1, value)`` of each non-blank line of a JSON-lines file.

    A line that does not parse goes to ``log`` as ``line N: does not parse as JSON`` (an error,
    or skipped with ``skip_bad``).

    Raises:
        AnnotationError: for a missing file, or a bad line without ``skip_bad``.
    """
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            log.bad(f"line {n}", f"does not parse as JSON ({e.msg})")


def read_json_records(path: str | Path, log: RecordLog) -> list[Any]:
    """Records of a file that is either one JSON document (a list of records, or one record)
    or JSON lines (one record per line).

    Raises:
        AnnotationError: see :func:`read_json_lines`.
    """
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError:
        return [record for _, record in read_json_lines(path, log)]
    return data if isinstance(data, list) else [data]


def resolve_video(root: str | Path, name: str) -> Path:
    """``root / name``: a video file (trying the usual video extensions when ``name`` has none)
    or a frame folder (:class:`videollama3.video.FrameFolder`).

    Raises:
        FileNotFoundError: with ``name`` as its argument, when no such file or folder exists.
    """
    for ext in VIDEO_EXTENSIONS:
        path = Path(root) / f"{name}{ext}"
        if path.is_file() or (not ext and path.is_dir() and name not in ("", ".")):
            return path
    raise FileNotFoundError(name)


# ------------------------------------------------------------------- values
def seconds(value: Any, what: str) -> float:
    """``value`` as a finite, non-negative number of seconds.

    Raises:
        ValueError: naming ``what``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def text_field(value: Any, what: str) -> str:
    """``value`` as user text: a non-empty string without the model's special tokens.

    Raises:
        ValueError: naming ``what``, for anything else (``null``, a number, a list, ``<|video_pad|>``...).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be non-empty text, got {value!r}")
    for token in RESERVED_TOKENS:
        if token in value:
            raise ValueError(f"{what} contains the special token {token}; remove it (it is reserved for the model's prompt)")
    return value


def option_list(value: Any) -> list[str]:
    """The options of a multiple-choice record (letters stripped), or ``[]`` when it has none.

    Raises:
        ValueError: for options that are not a list of texts (a string would split into letters), or
            more of them than there are letters to name them (26).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"options must be a list of texts, got {type(value).__name__} {value!r:.60}")
    if len(value) > len(LETTERS):
        raise ValueError(f"{len(value)} options, but a multiple-choice question has at most {len(LETTERS)} (A to Z)")
    return [strip_letter(text_field(o, f"option {i}")) for i, o in enumerate(value)]


def answer_letter(answer: Any, options: list[str]) -> str:
    """The answer as a letter: a letter, ``"B. text"``, an option index or an option's text.

    Raises:
        ValueError: when it names no option.
    """
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


def strip_letter(option: str) -> str:
    """``"A. red"`` / ``"(A) red"`` / ``"A) red"`` -> ``"red"``."""
    return re.sub(r"^\s*\(?[A-Z]\s*[.:)]\s*", "", str(option)).strip()


def evidence_window(value: Any) -> tuple[float, float] | None:
    """``[start_s, end_s]`` as a tuple (None stays None).

    Raises:
        ValueError: for anything but two ordered, non-negative numbers.
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"evidence must be [start_s, end_s], got {value!r}")
    start, end = seconds(value[0], "evidence start"), seconds(value[1], "evidence end")
    if end < start:
        raise ValueError(f"evidence end {end} is before its start {start}")
    return start, end


# -------------------------------------------------------------- our format
JSONL_RECORD_FIELDS = ("video", "fps", "questions")
"""The fields of a line of our JSONL format (:func:`read_jsonl_records`)."""

JSONL_QUESTION_FIELDS = ("id", "time", "question", "options", "answer", "task", "subtask", "evidence")
"""The fields of a question of our JSONL format (:func:`read_jsonl_records`)."""


def check_fields(record: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Raise ValueError naming the keys of ``record`` that are not ``fields``: a misspelt optional field
    (``"evidance"``) would otherwise be dropped without a word."""
    unknown = [k for k in record if k not in fields]
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"(the fields are {', '.join(fields)})")


def read_jsonl_records(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> tuple[list[VideoQuestions], list[str]]:
    """Read our JSONL format line by line: ``{"video": path, "fps": 1 (optional), "questions":
    [{"id", "time" (s), "question", "options" (optional list), "answer" (letter or text), "task",
    "subtask" (optional), "evidence" (optional [start_s, end_s])}]}``.

    Evaluation merges lines on the same video; training reads a line as one conversation
    (its questions, in file order, are the turns).

    Returns:
        ``(one VideoQuestions per usable line, in file order; skipped-record lines)``.

    Raises:
        AnnotationError: for a missing file, a line that does not parse, a missing video or
            a bad record (naming the file, the line and the question; a field not in
            :data:`JSONL_RECORD_FIELDS` / :data:`JSONL_QUESTION_FIELDS` is one); with ``skip_bad`` bad
            records are returned as skipped instead.
    """
    log = RecordLog(path, skip_bad)
    records: list[VideoQuestions] = []
    for n, record in read_json_lines(path, log):
        try:
            if not isinstance(record, dict) or "video" not in record or not isinstance(record.get("questions"), list):
                raise ValueError("expected an object with 'video' and a 'questions' list")
            check_fields(record, JSONL_RECORD_FIELDS)
            fps = record.get("fps")
            if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf):
                raise ValueError(f"fps must be a positive, finite number of frames per second, got {fps!r}")
            video = VideoQuestions(resolve_video(video_root, str(record["video"])), fps, [], f"line {n}")
            records.append(video)
        except FileNotFoundError as e:
            log.bad(f"line {n}", f"video {e.args[0]!r} not found under {video_root}")
            continue
        except ValueError as e:
            log.bad(f"line {n}", str(e))
            continue
        for k, q in enumerate(record["questions"]):
            qid = str(q.get("id", f"{record['video']}#{k}")) if isinstance(q, dict) else f"{record['video']}#{k}"
            if not log.first_use(qid, f"line {n} question {qid}"):  # raises its own one line
                continue
            try:
                if not isinstance(q, dict) or q.get("question") in (None, ""):
                    raise ValueError("no question text")
                check_fields(q, JSONL_QUESTION_FIELDS)
                question = text_field(q["question"], "question")
                if "time" not in q:
                    raise ValueError("no 'time' (seconds)")
                options = option_list(q.get("options"))
                answer = q.get("answer")
                if answer is None:
                    raise ValueError("no answer")
                if not isinstance(answer, int) or isinstance(answer, bool):
                    answer = text_field(answer, "answer")
                if not options and re.fullmatch(r"\(?[A-Za-z]\)?", str(answer).strip()):
                    raise ValueError(f"answer {answer!r} is a letter but the question has no options")
                video.questions.append(TimedQuestion(
                    id=qid, time=seconds(q["time"], "time"), question=question, options=options,
                    answer=answer_letter(answer, options) if options else str(answer), task=str(q.get("task", "all")),
                    subtask=q.get("subtask"), evidence=evidence_window(q.get("evidence")),
                ))
            except ValueError as e:
                log.bad(f"line {n} question {qid}", str(e))
    return [r for r in records if r.questions], log.skipped


# ----------------------------------------------------------------- prompts
OVO_RESPOND = ("Respond only with the letter corresponding to your chosen option (e.g., A, B, C). \n"
               "Do not include any additional text or explanation in your response.")


def format_question(question: TimedQuestion, style: str = "jsonl") -> str:
    """The text asked for a multiple-choice ``question``, as each benchmark's own evaluation asks it.

    Styles:

    - ``ovo``: OVO-Bench's backward / real-time prompt (``constant.py`` of JoeLeelyf/OVO-Bench):
      ``Question: ...`` then ``Options:`` with the options on one line as ``A. x; B. y;`` and the
      instruction to answer with the letter only;
    - ``ovbench``: OVBench's lmms-eval prompt (VideoChat-Online, ``ovbench_doc_to_text``): the
      question, one ``A. x`` line per option, then :data:`INSTRUCTION`;
    - ``jsonl`` (ours): the question, ``Options:``, ``(A) x`` lines, :data:`INSTRUCTION`.

    An open question (no options) is asked as it is.
    """
    if not question.options:
        return question.question
    if style == "ovo":
        options = "; ".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(question.options)) + ";"
        return f"\nQuestion: {question.question}\nOptions:\n{options}\n\n{OVO_RESPOND}\n"
    if style == "ovbench":
        options = "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(question.options))
        return f"{question.question}\n{options}{INSTRUCTION}"
    options = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(question.options))
    return f"{question.question}\nOptions:\n{options}\n{INSTRUCTION}"
