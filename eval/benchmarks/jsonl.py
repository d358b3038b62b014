"""``jsonl``: our format, one video and its timed questions per line
(:func:`videollama3.questions.read_jsonl_records`); scored by the option letter the answer chose
(:func:`eval.answers.parse_letter`), or by the reference text inside an open answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videollama3.questions import RecordLog, read_jsonl_records

from ..answers import score_answer
from .base import BenchmarkFormat, VideoSet, register_benchmark


@register_benchmark
class JsonlFormat(BenchmarkFormat):
    """Our JSONL format: ``{"video", "fps"?, "questions": [{"id", "time", "question", "options"?,
    "answer", "task", "subtask"?, "evidence"?}]}`` per line; lines on one video are merged."""

    name = "jsonl"
    help = "ours: one video and its timed questions per line"
    prompt_style = "jsonl"

    def load(self, path: Path, videos: VideoSet, log: RecordLog) -> None:
        """One JSON object a line: a video (``video`` under ``--video-root``, optional ``fps``) and its timed
        questions (:func:`videollama3.questions.read_jsonl_records`)."""
        records, skipped = read_jsonl_records(path, videos.video_root, log.skip_bad)
        log.skipped += skipped
        for r in records:
            video = videos.at_or_bad(r.video, log, r.source or r.video.name, fps=r.fps)
            if video is None:
                continue
            for q in r.questions:
                videos.add(video, q, log, f"{r.source} question {q.id}")

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """By letter with options (:func:`eval.answers.parse_letter`), else the normalised reference
        text inside the prediction; None without a prediction (``--no-model``)."""
        if record.get("prediction") is None:
            return {"correct": None, "pred_letter": None}
        letter, correct = score_answer(record["prediction"], record.get("options") or [], record["answer"])
        return {"correct": correct, "pred_letter": letter}
