"""Training conversations: timed question/answer turns on videos, as a ``datasets.Dataset``.

Formats:

- ``jsonl``: the evaluation format (:func:`videollama3.questions.read_jsonl_records`), one
  conversation per line:
  ``{"video", "fps"?, "questions": [{"id"?, "time" (s), "question", "options"?, "answer"}]}``.
  Turns are taken in time order; a multiple-choice answer is trained as its letter,
  asked with the options written as ``vl3mem eval`` writes them.
- ``videochat_online``: VideoChat-Online's online format (Huang et al., "Online Video
  Understanding: OVBench and VideoChat-Online", CVPR 2025): a JSON list (or JSONL) of
  ``{"id"?, "video", "fps"?, "conversations": [{"from": "human", "timestamps": t, "value":
  "<video>\\nQ"}, {"from": "gpt", "value": "A"}, ...]}``. ``timestamps`` is seconds, or
  ``[start, end]`` (the question is asked at ``end``); a question without one is asked at
  the previous question's time, or at the end of the video for the first. ``<video>`` /
  ``<image>`` placeholders are dropped: the memory stands in for the video.

Each row of the dataset is one turn: ``record`` (conversation index), ``turn``, ``id``,
``video`` (path), ``fps``, ``time`` (s), ``question`` (the text asked), ``answer``. Rows of
a conversation are contiguous and in time order. Only paths and times are held: frames
are decoded while training streams each video (:mod:`train.samples`).

Bad input (a missing video, an answer without a question, a question without an answer,
a turn beyond the end of its video or earlier than the turn before) raises
:class:`~videollama3.errors.AnnotationError` naming the file and record; with ``skip_bad`` the record
is reported in :attr:`TrainingData.skipped` and left out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videollama3.errors import AnnotationError, VideoError
from videollama3.questions import (
    RecordLog,
    format_question,
    read_json_records,
    read_jsonl_records,
    resolve_video,
    text_field,
)
from videollama3.video import probe_video

from .config import DataConfig

PLACEHOLDER = re.compile(r"<(video|image)>\s*")
COLUMNS = ("record", "turn", "id", "video", "fps", "time", "question", "answer")


@dataclass
class TrainingData:
    """What :func:`load_training_data` returns.

    Attributes:
        dataset: ``datasets.Dataset`` of turns (columns in the module docstring).
        skipped: ``"file: record: why"`` for each record left out with ``skip_bad``.
    """

    dataset: Any
    skipped: list[str] = field(default_factory=list)

    @property
    def num_records(self) -> int:
        """Conversations."""
        return len(set(self.dataset["record"]))


class _Records:
    """Collects conversations as rows, checking their times against their videos."""

    def __init__(self, path: Path, skip_bad: bool) -> None:
        self.log = RecordLog(path, skip_bad)
        self.bad = self.log.bad
        self.rows: list[dict[str, Any]] = []
        self._durations: dict[Path, float] = {}
        self._count = 0

    def duration(self, video: Path) -> float:
        if video not in self._durations:
            self._durations[video] = probe_video(video).duration
        return self._durations[video]

    def add(self, record: str, video: Path, fps: float, turns: list[tuple[str, float | None, str, str]]) -> None:
        """Add one conversation: ``turns`` = ``[(id, time or None, question, answer)]`` in order."""
        try:
            duration = self.duration(video)
        except VideoError as e:
            self.bad(record, str(e))
            return
        rows, previous = [], None
        for k, (tid, t, question, answer) in enumerate(turns):
            t = (previous if previous is not None else duration) if t is None else t
            if duration and t > duration + 1e-6:
                self.bad(f"{record} turn {k} ({tid})", f"time {t:.2f}s is beyond the end of {video.name} "
                                                       f"({duration:.2f}s)")
                return
            if previous is not None and t < previous:
                self.bad(f"{record} turn {k} ({tid})", f"time {t:.2f}s is earlier than the turn before "
                                                       f"({previous:.2f}s); a stream only goes forward")
                return
            previous = t
            rows.append({"record": self._count, "turn": k, "id": tid, "video": str(video), "fps": float(fps),
                         "time": float(t), "question": question, "answer": answer})
        self.rows += rows
        self._count += 1


def _load_jsonl(config: DataConfig) -> _Records:
    path = Path(config.path)
    records = _Records(path, config.skip_bad)
    videos, skipped = read_jsonl_records(path, config.video_root, config.skip_bad)
    records.log.skipped += skipped
    for video in videos:
        turns = sorted(video.questions, key=lambda q: q.time)  # stable: file order at equal times
        records.add(f"{video.source} ({video.video.name})", video.video, video.fps or config.fps,
                    [(q.id, q.time, format_question(q, config.prompt_style), q.answer) for q in turns])
    return records


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"timestamps must be seconds >= 0 or [start, end], got {value!r}")
    return float(value)


def _load_videochat_online(config: DataConfig) -> _Records:
    path = Path(config.path)
    records = _Records(path, config.skip_bad)
    for n, r in enumerate(read_json_records(path, records.log)):
        name = f"record {n}" + (f" (id {r['id']!r})" if isinstance(r, dict) and "id" in r else "")
        try:
            if not isinstance(r, dict) or "video" not in r or not isinstance(r.get("conversations"), list):
                raise ValueError("expected an object with 'video' and a 'conversations' list")
            fps = r.get("fps", config.fps)
            if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
                raise ValueError(f"fps must be a positive, finite number of frames per second, got {fps!r}")
            if not records.log.first_use(str(r.get("id", n)), name):
                continue
            video = resolve_video(Path(config.video_root), str(r["video"]))
            turns, question = [], None
            for k, message in enumerate(r["conversations"]):
                speaker = message.get("from") if isinstance(message, dict) else None
                value = message.get("value") if speaker else ""
                if speaker and not isinstance(value, str):
                    raise ValueError(f"turn {k}: 'value' must be text, got {value!r}")
                text = PLACEHOLDER.sub("", value).strip()
                if text:
                    text_field(text, f"turn {k}")
                if speaker == "human":
                    if question is not None:
                        raise ValueError(f"turn {k - 1} is a question without an answer")
                    if not text:
                        raise ValueError(f"turn {k} has no question text")
                    question = (k, _seconds(message.get("timestamps")), text)
                elif speaker == "gpt":
                    if question is None:
                        raise ValueError(f"turn {k} is an answer without a question")
                    if not text:
                        raise ValueError(f"turn {k} has an empty answer")
                    turns.append((f"{r.get('id', n)}#{question[0]}", question[1], question[2], text))
                    question = None
                else:
                    raise ValueError(f"turn {k}: 'from' must be 'human' or 'gpt', got {speaker!r}")
            if question is not None:
                raise ValueError(f"turn {question[0]} is a question without an answer")
            if not turns:
                raise ValueError("no question/answer turn")
        except FileNotFoundError as e:
            records.bad(name, f"video {e.args[0]!r} not found under {config.video_root}")
            continue
        except ValueError as e:
            records.bad(name, str(e))
            continue
        records.add(name, video, float(fps), turns)
    return records


def load_training_data(config: DataConfig) -> TrainingData:
    """Load and check the conversations of ``config`` (see the module docstring).

    Every video is probed once (not decoded) to check the turn times.

    Raises:
        AnnotationError: for a missing or unparsable file, a bad record (naming it),
            or no usable turn at all.
    """
    from datasets import Dataset

    loader = _load_jsonl if config.format == "jsonl" else _load_videochat_online
    records = loader(config)
    skipped = records.log.skipped
    if not records.rows:
        raise AnnotationError(f"{config.path}: no usable turn" + (f" ({len(skipped)} records skipped)"
                                                                 if skipped else ""))
    dataset = Dataset.from_dict({c: [row[c] for row in records.rows] for c in COLUMNS})
    return TrainingData(dataset, skipped)
