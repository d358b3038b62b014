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

import math
from dataclasses import dataclass, field
from pathlib import Path

from videollama3.errors import AnnotationError
from videollama3.questions import (
    RecordLog,
    TimedQuestion,
    VideoQuestions,
    answer_letter,
    evidence_window,
    read_json_list,
    read_jsonl_records,
    resolve_video,
    option_list,
    seconds,
    text_field,
)

BENCHMARKS = ("jsonl", "ovo", "ovbench")
OVO_BACKWARD = ("EPM", "ASI", "HLD")
OVO_REALTIME = ("STU", "OJR", "ATR", "ACR", "OCR", "FPD")
OVO_FORWARD = ("REC", "SSR", "CRR")


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


class _Videos:
    """The videos of one file, each with its questions, in order of first appearance."""

    def __init__(self, video_root: Path) -> None:
        self.video_root = video_root
        self.videos: dict[Path, VideoQuestions] = {}

    def get(self, name: str, fps: float | None) -> VideoQuestions:
        path = resolve_video(self.video_root, name)
        if path not in self.videos:
            self.videos[path] = VideoQuestions(path, fps, [])
        return self.videos[path]

    def result(self, log: RecordLog, skipped_tasks: dict[str, int] | None = None) -> Benchmark:
        videos = [v for v in self.videos.values() if v.questions]
        for v in videos:
            v.questions.sort(key=lambda q: (q.time, q.id))
        return Benchmark(videos, log.skipped, skipped_tasks or {})


def load_jsonl(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load our JSONL format (:func:`videollama3.questions.read_jsonl_records`), lines on the same
    video merged, questions in time order. Videos are relative to ``video_root``.

    Raises:
        AnnotationError: for a missing file or a bad record, naming it (unless ``skip_bad``).
    """
    records, skipped = read_jsonl_records(path, video_root, skip_bad)
    merged: dict[Path, VideoQuestions] = {}
    for r in records:
        merged.setdefault(r.video, VideoQuestions(r.video, r.fps, [])).questions.extend(r.questions)
    for v in merged.values():
        v.questions.sort(key=lambda q: (q.time, q.id))
    return Benchmark(list(merged.values()), skipped)


def load_ovo(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load OVO-Bench's ``ovo_bench_new.json`` (backward and real-time tasks).

    Forward active-responding tasks (REC, SSR, CRR) are counted in
    :attr:`Benchmark.skipped_tasks`, not loaded.

    Raises:
        AnnotationError: see :func:`load_jsonl`.
    """
    log, videos, skipped_tasks = RecordLog(path, skip_bad), _Videos(Path(video_root)), {}
    for n, r in enumerate(read_json_list(path, "OVO-Bench records")):
        rid = f"record {n} (id {r.get('id')!r})" if isinstance(r, dict) else f"record {n}"
        try:
            if not isinstance(r, dict):
                raise ValueError("not an object")
            task = str(r.get("task"))
            if task in OVO_FORWARD:
                skipped_tasks[task] = skipped_tasks.get(task, 0) + 1
                continue
            if task not in OVO_BACKWARD + OVO_REALTIME:
                raise ValueError(f"unknown task {task!r} (known: {', '.join(OVO_BACKWARD + OVO_REALTIME + OVO_FORWARD)})")
            options = option_list(r.get("options"))
            if len(options) < 2:
                raise ValueError("a multiple-choice question needs at least 2 options")
            if "gt" not in r and "answer" not in r:
                raise ValueError("no 'gt' (option index) or 'answer'")
            answer = answer_letter(r["gt"] if "gt" in r else r["answer"], options)
            if not log.first_use(str(r.get("id", n)), rid):
                continue
            question = TimedQuestion(
                id=str(r.get("id", n)), time=seconds(r.get("realtime"), "realtime"),
                question=text_field(r.get("question"), "question"),
                options=options, answer=answer, task=task,
                subtask="backward" if task in OVO_BACKWARD else "real-time",
            )
            videos.get(str(r["video"]), None).questions.append(question)
        except FileNotFoundError as e:
            log.bad(rid, f"video {e.args[0]!r} not found under {video_root}")
        except (KeyError, ValueError) as e:
            log.bad(rid, str(e) if isinstance(e, ValueError) else f"missing field {e}")
    return videos.result(log, skipped_tasks)


def load_ovbench(path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load OVBench's streaming format (VideoChat-Online).

    Raises:
        AnnotationError: see :func:`load_jsonl`.
    """
    log, videos = RecordLog(path, skip_bad), _Videos(Path(video_root))
    for n, r in enumerate(read_json_list(path, "OVBench videos")):
        vid = r.get("video_id") if isinstance(r, dict) else None
        try:
            if not isinstance(r, dict) or vid is None or not isinstance(r.get("questions"), list):
                raise ValueError("expected an object with 'video_id' and a 'questions' list")
            fps = r.get("fps")
            if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf):
                raise ValueError(f"fps must be a positive, finite number of frames per second, got {fps!r}")
            video = videos.get(str(vid), float(fps) if fps else None)
        except FileNotFoundError as e:
            log.bad(f"video {n} ({vid!r})", f"video {e.args[0]!r} not found under {video_root}")
            continue
        except ValueError as e:
            log.bad(f"video {n}", str(e))
            continue
        for k, q in enumerate(r["questions"]):
            qid = f"{vid}#{k}"
            try:
                if not log.first_use(qid, f"video {n} ({vid!r}) question {k}"):
                    continue
                if not isinstance(q, dict):
                    raise ValueError("not an object")
                options = option_list(q.get("options"))
                if len(options) < 2:
                    raise ValueError("a multiple-choice question needs at least 2 options")
                evidence = None
                if q.get("start") is not None and q.get("end") is not None:
                    evidence = evidence_window([q["start"], q["end"]])
                video.questions.append(TimedQuestion(
                    id=qid, time=seconds(q.get("middle_frame_timestamp"), "middle_frame_timestamp"),
                    question=text_field(q.get("question"), "question"), options=options,
                    answer=answer_letter(q["answer"], options),
                    task=str(q.get("answer_type", "all")), subtask=q.get("sub_answer_type"), evidence=evidence,
                ))
            except KeyError as e:
                log.bad(f"video {vid!r} question {k}", f"missing field {e}")
            except ValueError as e:
                log.bad(f"video {vid!r} question {k}", str(e))
    return videos.result(log)


LOADERS = {"jsonl": load_jsonl, "ovo": load_ovo, "ovbench": load_ovbench}


def load_benchmark(kind: str, path: str | Path, video_root: str | Path, skip_bad: bool = False) -> Benchmark:
    """Load ``path`` in format ``kind`` (``jsonl``, ``ovo`` or ``ovbench``).

    Raises:
        AnnotationError: for an unknown format or bad annotations (see the loaders).
    """
    if kind not in LOADERS:
        raise AnnotationError(f"unknown benchmark format {kind!r}; known: {', '.join(BENCHMARKS)}")
    return LOADERS[kind](path, video_root, skip_bad)
