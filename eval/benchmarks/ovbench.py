"""``ovbench``: OVBench (Huang et al., "Online Video Understanding: OVBench and VideoChat-Online",
CVPR 2025; MCG-NJU/VideoChat-Online), in both of its published layouts (told apart by their records):

- streaming (read by ``eval/evaluate_online_stream_single.py``): a list of videos ``{video_id, fps,
  clip [start_s, end_s], questions: [{middle_frame_timestamp, question, options ["A. ..."], answer
  (letter), answer_type, sub_answer_type}]}``. ``fps`` is the frame rate of a frame folder's images
  (sampling stays ``--fps``); only the ``clip`` part of the video is streamed, with the video's own
  timestamps; each question is asked at ``middle_frame_timestamp`` as ``Question at {t}s: ...`` with
  ``(A) ...`` options and ``Answer:``, under the official system prompt (:data:`STREAM_SYSTEM_PROMPT`).
- lmms-eval (``lmms-eval-ovbench/.../json/{ava,coin,hirest,tao}.json``): one record per question
  ``{video, question, candidates, answer (the option's text), answer_type, sub_answer_type, start,
  end, fps?, middle_frame_timestamp}``. ``[start, end]`` is the input window the official reader
  gives the model (not evidence), in the video's (or frame folder's) own time, so the question is
  asked at ``end``; ``middle_frame_timestamp - end`` is the source's clip offset (AVA's frame
  folders begin 895 s into the movie) and is kept with the record. ``fps`` is again the frame rate
  of a frame folder. Asked as ``ovbench_doc_to_text`` writes it.

Scoring follows the official ``mcq_acc`` (both layouts): reply and ground truth are reduced to an
option letter (``B. ...`` at the start, else the first lone A-E after punctuation is cleaned) or to
the cleaned text, and compared. The streaming table averages the accuracy of each (task, sub-task)
pair; the lmms-eval one is the accuracy over answered questions (an empty reply is left out).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from videollama3.questions import (
    LETTERS,
    RecordLog,
    TimedQuestion,
    answer_letter,
    option_list,
    read_json_list,
    seconds,
    text_field,
)

from .base import BenchmarkFormat, VideoSet, mean, percent, register_benchmark

STREAM_SYSTEM_PROMPT = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail "
                        "and movement of objects, and the action and pose of persons. Based on your observations, "
                        "select the best option that accurately addresses the question.\n")
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")


def mcq_key(text: str) -> str:
    """What OVBench's ``mcq_acc`` compares: the option letter of ``text`` (upper case) when it starts
    ``X. ...`` or holds a lone letter A-E once punctuation is cleaned, else the cleaned, lower-case text."""
    m = re.match(r"^([A-E])\.\s*(.+)$", text.strip(), re.IGNORECASE)
    if m:
        return m.group(1).upper()
    t = text.replace("\n", " ").replace("\t", " ").strip()
    cleaned = t
    for p in _PUNCTUATION:  # removed where spaced (or digits use comma groups), else a space
        spaced = p + " " in t or " " + p in t or re.search(r"(\d)(,)(\d)", t) is not None
        cleaned = cleaned.replace(p, "" if spaced else " ")
    cleaned = re.sub(r"(?!<=\d)(\.)(?!\d)", "", cleaned, count=32)  # the official passes re.UNICODE (32) as the count
    cleaned = cleaned.strip("'").strip('"').strip(")").strip("(").strip().lower()
    letter = re.search(r"\b([A-E])\b", cleaned, re.IGNORECASE)
    return letter.group(1).upper() if letter else cleaned


def _frame_rate(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"fps (the frame rate of the frames) must be a positive number, got {value!r}")
    return float(value)


@register_benchmark
class OvBenchFormat(BenchmarkFormat):
    """OVBench: the streaming layout and the lmms-eval layout."""

    name = "ovbench"
    help = "OVBench (VideoChat-Online): streaming videos-with-questions JSON, or lmms-eval {ava,coin,hirest,tao}.json"
    prompt_style = "ovbench"

    def load(self, path: Path, videos: VideoSet, log: RecordLog) -> None:
        """The streaming layout (records with ``questions``, asked with OVBench's streaming system prompt)
        or lmms-eval's (one question a record), told apart by the records."""
        data = read_json_list(path, "OVBench records")
        if any(isinstance(r, dict) and "questions" in r for r in data):
            videos.system_prompt = STREAM_SYSTEM_PROMPT
            self._load_stream(data, videos, log)
        else:
            self._load_lmms(path, data, videos, log)

    def _load_stream(self, data: list[Any], videos: VideoSet, log: RecordLog) -> None:
        for n, r in enumerate(data):
            vid = r.get("video_id") if isinstance(r, dict) else None
            try:
                if not isinstance(r, dict) or not isinstance(vid, str) or not isinstance(r.get("questions"), list):
                    raise ValueError("expected an object with 'video_id' and a 'questions' list")
                clip = r.get("clip")
                if clip is not None and (not isinstance(clip, list) or len(clip) != 2):
                    raise ValueError(f"clip must be [start_s, end_s], got {clip!r}")
                start, end = (seconds(clip[0], "clip start"), seconds(clip[1], "clip end")) if clip else (0.0, None)
                if end is not None and end < start:
                    raise ValueError(f"clip end {end:.6g}s is before its start {start:.6g}s")
                frame_rate = _frame_rate(r.get("fps"))
            except ValueError as e:
                log.bad(f"video {n}", str(e))
                continue
            video = videos.video(vid, log, f"video {n} ({vid!r})", frame_rate=frame_rate, start=start, end=end)
            for k, q in enumerate(r["questions"]):
                rid = f"video {vid!r} question {k}"
                question = log.attempt(rid, lambda: self._stream_question(vid, k, q))
                if question is not None and video is not None:
                    videos.add(video, question, log, rid)

    @staticmethod
    def _stream_question(vid: str, k: int, q: Any) -> TimedQuestion:
        if not isinstance(q, dict):
            raise ValueError("not an object")
        options = option_list(q.get("options"))
        if len(options) < 2:
            raise ValueError("a multiple-choice question needs at least 2 options")
        t = q.get("middle_frame_timestamp")
        return TimedQuestion(
            id=f"{vid}#{k}", time=seconds(t, "middle_frame_timestamp"),
            question=text_field(q.get("question"), "question"), options=options,
            answer=answer_letter(q["answer"], options), task=str(q.get("answer_type", "all")),
            subtask=q.get("sub_answer_type"), extra={"layout": "stream", "time_text": str(t)})

    def _load_lmms(self, path: Path, data: list[Any], videos: VideoSet, log: RecordLog) -> None:
        for n, r in enumerate(data):
            built = log.attempt(f"record {n}", lambda: self._lmms_question(path, n, r))
            video = videos.video(r["video"], log, f"record {n}", frame_rate=built[1]) if built else None
            if video is not None:
                videos.add(video, built[0], log, f"record {n}")

    @staticmethod
    def _lmms_question(path: Path, n: int, r: Any) -> tuple[TimedQuestion, float | None]:
        if not isinstance(r, dict) or not isinstance(r.get("video"), str):
            raise ValueError("expected an object with a 'video' (a question of the lmms-eval layout)")
        options = option_list(r.get("candidates"))
        if len(options) < 2:
            raise ValueError("a multiple-choice question needs at least 2 candidates")
        answer = r.get("answer")
        if answer not in r["candidates"]:  # the official takes the first candidate equal to it
            raise ValueError(f"answer {answer!r} is none of the candidates")
        start, end = seconds(r.get("start"), "start"), seconds(r.get("end"), "end")
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        middle = r.get("middle_frame_timestamp")
        offset = seconds(middle, "middle_frame_timestamp") - end if middle is not None else None
        question = TimedQuestion(
            id=f"{path.stem}:{n}", time=end, question=text_field(r.get("question"), "question"),
            options=options, answer=LETTERS[r["candidates"].index(answer)],
            task=str(r.get("answer_type", "all")), subtask=r.get("sub_answer_type"),
            extra={"layout": "lmms", "window": [start, end], "clip_offset": offset})
        return question, _frame_rate(r.get("fps"))

    def prompt(self, question: TimedQuestion) -> str:
        """Streaming layout: ``Question at {t}s: ...`` / ``Options:`` / ``(A) ...`` lines / ``Answer:``;
        lmms-eval layout: :func:`~videollama3.questions.format_question` style ``ovbench``."""
        if question.extra.get("layout") != "stream":
            return super().prompt(question)
        options = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(question.options))
        return f"Question at {question.extra['time_text']}s: {question.question}\nOptions:\n{options}\nAnswer:"

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """``mcq_acc``: :func:`mcq_key` of the reply equals that of the ground truth (streaming:
        ``(X) option text``; lmms-eval: the letter). None for a missing reply, and, in the lmms-eval
        layout, for an empty one (its aggregation leaves those out)."""
        reply = record.get("prediction")
        stream = record["extra"].get("layout") == "stream"
        if reply is None or (reply == "" and not stream):
            return {"correct": None}
        letter = record["answer"]
        truth = f"({letter}) {record['options'][LETTERS.index(letter)]}" if stream else letter
        return {"correct": mcq_key(reply) == mcq_key(truth)}

    def table(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """``{"pairs": {"task/sub-task": {correct, total, accuracy}}, "avg": mean over the pairs
        (the streaming script's Avg), "micro": accuracy over all answered (lmms-eval's), "total"}``."""
        pairs: dict[str, list[int]] = {}
        for r in records:
            correct = self.score(r)["correct"]
            if correct is not None:
                c = pairs.setdefault(f"{r['task']}/{r.get('subtask')}", [0, 0])
                c[0], c[1] = c[0] + bool(correct), c[1] + 1
        if not pairs:
            return None
        table = {k: {"correct": c, "total": n, "accuracy": percent(c, n)} for k, (c, n) in sorted(pairs.items())}
        total = sum(n for _, n in pairs.values())
        return {"pairs": table, "avg": mean([v["accuracy"] for v in table.values()]),
                "micro": percent(sum(c for c, _ in pairs.values()), total), "total": total}

    def table_lines(self, table: dict[str, Any]) -> list[str]:
        """Per (task, sub-task), then the streaming Avg and the lmms-eval accuracy."""
        lines = ["## OVBench", "", "| task / sub-task | correct | total | accuracy % |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['correct']} | {v['total']} | {v['accuracy']} |" for k, v in table["pairs"].items()]
        return lines + [f"| **Avg** (mean over task / sub-task, the streaming script's) | | {table['total']} | "
                        f"{table['avg']} |", f"| **accuracy** (over answered, lmms-eval's) | | {table['total']} | "
                        f"{table['micro']} |", ""]
