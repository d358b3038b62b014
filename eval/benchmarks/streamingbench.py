"""``streamingbench``: StreamingBench (Lin et al., "StreamingBench: Assessing the Gap for MLLMs to
Achieve Streaming Video Understanding", 2024; THUNLP-MT/StreamingBench), its
``src/data/questions_{real,omni,sqa,proactive}.json`` and the ``*_stream.json`` variants.

Every file is a list of videos ``{video_path, questions: [...]}`` (``sqa``: a list of such lists, one
per video); a question's ``time_stamp`` is ``HH:MM:SS`` (or ``H:MM:SS``) from the start of the video.

- real-time visual (``real``), omni-source (``omni``) and sequential (``sqa``) questions are
  multiple choice (``options`` ``"A. ..."``; the sqa file's without letters), the answer a letter,
  asked with the official prompt (``src/benchmark/StreamingBench.py``); ``sqa`` questions carry the
  earlier questions of their video and their ground-truth answers as context, in file order, as
  ``StreamingBenchSQA.py`` writes it.
- omni questions of the omni-source task types (:data:`AUDIO_TASKS`: emotion, scene, source
  discrimination, multimodal alignment) need the audio track; our model is video-only, so they are
  asked but scored apart ("needs audio"), never mixed into the video-only numbers.
- proactive output (``ground_truth_time_stamp``, ``ground_truth_output``, no options): from one
  second after ``time_stamp`` to four seconds after the ground-truth time the model is polled each
  second with "Is it the right time to output ...? yes or no"; at the first "yes" the question is
  asked at that moment (``StreamingBenchProactive.py``).

Scoring follows ``src/data/count.py``: a multiple-choice reply is correct when its first character is
the answer letter, and an empty reply is left out of the counts; a proactive reply is on time when the
last exchange is within 2 s of the ground-truth time, and correct when it is on time and contains the
ground-truth output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videollama3.questions import LETTERS, Poll, RecordLog, TimedQuestion, answer_letter, option_list, read_json_list, text_field

from .base import BenchmarkFormat, VideoSet, percent, register_benchmark

FILE_KINDS = ("real", "omni", "sqa", "proactive")
AUDIO_TASKS = ("Emotion Recognition", "Scene Understanding", "Source Discrimination", "Multimodal Alignment")
# the paper's table: its columns, by group, with the file task types they come from
PAPER_COLUMNS = {
    "Real-Time Visual Understanding": {
        "OP": "Object Recognition", "CR": "Causal Reasoning", "CS": "Clips Summarize", "ATP": "Attribute Recognition",
        "EU": "Event Understanding", "TR": "Text-Rich Understanding", "PR": "Prospective Reasoning",
        "SU": "Spatial Understanding", "ACP": "Action Recognition", "CT": "Counting"},
    "Omni-Source Understanding (needs audio)": {
        "ER": "Emotion Recognition", "SCU": "Scene Understanding", "SD": "Source Discrimination",
        "MA": "Multimodal Alignment"},
    "Contextual Understanding": {
        "ACU": "Anomaly Context Understanding", "MCU": "Misleading Context Understanding",
        "SQA": "Sequential Question Answering", "PO": "Proactive Output"},
}
PROACTIVE_TOLERANCE_S = 2
PROACTIVE_AFTER_S = 4

_ASSISTANT = "You are an advanced video question-answering AI assistant. "
_CHOOSE = ("choosing from the four options provided. Respond with only the letter (A, B, C, or D) of the "
           "correct option.\n\n")
CHOICE_PROMPT = (_ASSISTANT + "You have been provided with some frames from the video and a multiple-choice question "
                 "related to the video. Your task is to carefully analyze the video and provide the best answer to "
                 "question, " + _CHOOSE + "Question: {question}\n\nOptions:\n{options}\n\nThe best option is:")
SQA_PROMPT = (_ASSISTANT + "You have been provided with a video and a multiple-choice question related to the video. "
              "Your task is to carefully analyze the video and the provided context to answer the question, " + _CHOOSE
              + "{context}\n\nHere is the question. Answer it and don't confuse it with the previous conversation.\n"
              "Question: {question}\n\nOptions:\n{options}\n\nThe best option is:")
PROACTIVE_PROMPT = ("You are an advanced image question-answering AI assistant. You have been provided with images and "
                    "a question related to the images. Your task is to carefully analyze the images and provide the "
                    "answer to the question. You need to carefully confirm whether the images content meet the "
                    "conditions of the question, and then output the correct content.\n\nQuestion: {}\n\nThe answer is:\n")
SQA_CONTEXT = ("Here are the contextual information related to the video. Please answer the questions based on the "
               "contextual information: ")


def clock_seconds(value: Any, what: str) -> int:
    """``"HH:MM:SS"`` (any number of ``:`` fields) as seconds, as StreamingBench reads it.

    Raises:
        ValueError: naming ``what``, for anything else.
    """
    if not isinstance(value, str) or not re.fullmatch(r"\d+(:\d+)*", value.strip()):
        raise ValueError(f"{what} must be a time as HH:MM:SS, got {value!r}")
    return sum(int(x) * 60 ** i for i, x in enumerate(reversed(value.strip().split(":"))))


def file_kind(path: Path, data: list[Any]) -> str:
    """``real`` / ``omni`` / ``sqa`` / ``proactive``: from the file name (``questions_omni_stream.json``),
    else from its content (a list of lists is sqa, ``ground_truth_time_stamp`` is proactive)."""
    for kind in FILE_KINDS:
        if re.search(rf"(^|_){kind}(_|$)", path.stem):
            return kind
    if data and all(isinstance(v, list) for v in data):
        return "sqa"
    first = next((q for v in data if isinstance(v, dict) for q in v.get("questions") or [] if isinstance(q, dict)), {})
    return "proactive" if "ground_truth_time_stamp" in first else "real"


def _lettered(options: list[str]) -> list[str]:
    return [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]


@register_benchmark
class StreamingBenchFormat(BenchmarkFormat):
    """StreamingBench's question files (real, omni, sqa, proactive, and the ``*_stream`` variants)."""

    name = "streamingbench"
    help = "StreamingBench questions_{real,omni,sqa,proactive}[_stream].json"

    def load(self, path: Path, videos: VideoSet, log: RecordLog) -> None:
        """A list of ``{"video_path", "questions": [...]}`` objects (sqa: a list of such lists, one per video,
        each question asked with the earlier ones of its video as context); the kind from the file
        (:func:`file_kind`)."""
        data = read_json_list(path, "StreamingBench videos")
        kind = file_kind(path, data)
        groups = data if kind == "sqa" else [[v] for v in data]
        for g, group in enumerate(groups):
            context: list[str] = []  # sqa: the earlier questions of the video, in file order
            for s, record in enumerate(group if isinstance(group, list) else [group]):
                place = f"video {g}" + (f" part {s}" if kind == "sqa" else "")
                if not isinstance(record, dict) or not isinstance(record.get("questions"), list) \
                        or not isinstance(record.get("video_path"), str):
                    log.bad(place, "expected an object with 'video_path' and a 'questions' list")
                    continue
                video = videos.video(record["video_path"], log, place)
                for k, q in enumerate(record["questions"]):
                    rid, qid = f"{place} question {k}", f"{path.stem}:{g}" + (f".{s}" if kind == "sqa" else "") + f":{k}"
                    question = log.attempt(rid, lambda: self._question(q, kind, qid, context))
                    if question is not None and video is not None:
                        videos.add(video, question, log, rid)

    @staticmethod
    def _question(q: Any, kind: str, qid: str, context: list[str]) -> TimedQuestion:
        if not isinstance(q, dict):
            raise ValueError("not an object")
        text, task = text_field(q.get("question"), "question"), text_field(q.get("task_type"), "task_type")
        time = clock_seconds(q.get("time_stamp"), "time_stamp")
        extra: dict[str, Any] = {"file": kind, "time_stamp": q["time_stamp"]}
        if kind == "proactive":
            due = clock_seconds(q.get("ground_truth_time_stamp"), "ground_truth_time_stamp")
            output = text_field(q.get("ground_truth_output"), "ground_truth_output")
            times = range(time + 1, due + PROACTIVE_AFTER_S + 1)  # one a second; cut at the video's end when run
            if not times:
                raise ValueError(f"ground_truth_time_stamp {q['ground_truth_time_stamp']} is more than "
                                 f"{PROACTIVE_AFTER_S} s before time_stamp {q['time_stamp']}: nothing to poll")
            query = PROACTIVE_PROMPT.format(f'{text} Is it the right time to output "{output}"? '
                                            "You can only answer yes or no.")
            return TimedQuestion(id=qid, time=float(time), question=text, answer=output, task=task, subtask=kind,
                                 extra={**extra, "ground_truth_time": due, "ground_truth_output": output},
                                 poll=Poll(times, query))
        options = option_list(q.get("options"))
        if len(options) < 2:
            raise ValueError("a multiple-choice question needs at least 2 options")
        answer = answer_letter(q.get("answer"), options)
        if kind == "sqa":
            extra["context"] = (SQA_CONTEXT if context else "") + "".join(context)
            context.append(f"At timestamp {q['time_stamp']}, the following question and answer occurred: Question: "
                           f"{text}; Options: {', '.join(_lettered(options))}; Answer: {q['answer']}; ")
        needs_audio = kind == "omni" and task in AUDIO_TASKS
        if needs_audio:
            extra["needs_audio"] = True
        return TimedQuestion(id=qid, time=float(time), question=text, options=options, answer=answer, task=task,
                             subtask=kind + (" (needs audio)" if needs_audio else ""), extra=extra)

    def prompt(self, question: TimedQuestion) -> str:
        """The official prompt of the question's file (the proactive question itself, once a poll said yes)."""
        if question.poll is not None:
            return PROACTIVE_PROMPT.format(question.question)
        options = "\n".join(_lettered(question.options))
        if "context" in question.extra:
            return SQA_PROMPT.format(context=question.extra["context"], question=question.question, options=options)
        return CHOICE_PROMPT.format(question=question.question, options=options)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """``count.py``'s rules: first character equals the answer letter (an empty or missing reply
        is left out); proactive: ``on_time`` within 2 s, correct when on time with the output said."""
        reply = record.get("prediction")
        if record.get("polls") is not None:
            last = record.get("last_time")
            on_time = last is not None and abs(last - record["extra"]["ground_truth_time"]) <= PROACTIVE_TOLERANCE_S
            said = reply is not None and record["extra"]["ground_truth_output"] in reply
            return {"correct": on_time and said, "on_time": on_time}
        if not reply:
            return {"correct": None}
        return {"correct": reply[0] == record["answer"]}

    def table(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """``{"files": {kind: {"tasks": {task: counts}, "all": counts}}, "columns": the paper's columns
        {group: {abbreviation: accuracy}}, "video_only": counts over questions that need no audio,
        "needs_audio": counts over those that do}``; counts are ``{correct, total, accuracy}``, and a
        proactive task's also ``{on_time, on_time_accuracy}``."""
        files: dict[str, dict[str, dict[str, int]]] = {}
        for r in records:
            scored = self.score(r)
            if scored["correct"] is None:
                continue
            kind = r["extra"]["file"]
            for key in (r["task"], "all"):
                c = files.setdefault(kind, {}).setdefault(key, {"correct": 0, "total": 0})
                c["correct"] += bool(scored["correct"])
                c["total"] += 1
                if "on_time" in scored:
                    c["on_time"] = c.get("on_time", 0) + bool(scored["on_time"])
        if not files:
            return None

        def counts(c: dict[str, int]) -> dict[str, Any]:
            out = {**c, "accuracy": percent(c["correct"], c["total"])}
            if "on_time" in c:
                out["on_time_accuracy"] = percent(c["on_time"], c["total"])
            return out

        table = {"files": {k: {"tasks": {t: counts(c) for t, c in sorted(v.items()) if t != "all"},
                               "all": counts(v["all"])} for k, v in files.items()}}
        by_task: dict[str, list[int]] = {}
        audio, video_only = [0, 0], [0, 0]
        for kind, tasks in files.items():
            for task, c in tasks.items():
                if task == "all":
                    continue
                t = by_task.setdefault(task, [0, 0])
                t[0], t[1] = t[0] + c["correct"], t[1] + c["total"]
                bucket = audio if kind == "omni" and task in AUDIO_TASKS else video_only
                bucket[0], bucket[1] = bucket[0] + c["correct"], bucket[1] + c["total"]
        table["columns"] = {group: {abbr: percent(*by_task[task]) if task in by_task else None
                                    for abbr, task in cols.items()} for group, cols in PAPER_COLUMNS.items()}
        table["video_only"] = {"correct": video_only[0], "total": video_only[1], "accuracy": percent(*video_only)}
        table["needs_audio"] = {"correct": audio[0], "total": audio[1], "accuracy": percent(*audio)}
        return table

    def table_lines(self, table: dict[str, Any]) -> list[str]:
        """The paper's table (by group, columns abbreviated as it does), then per file and task type."""
        lines = ["## StreamingBench", ""]
        for group, cols in table["columns"].items():
            lines += [f"**{group}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                      "| " + " | ".join("-" if v is None else str(v) for v in cols.values()) + " |", ""]
        v, a = table["video_only"], table["needs_audio"]
        lines.append(f"- video-only questions: {v['accuracy']} % ({v['correct']} / {v['total']})")
        if a["total"]:
            lines.append(f"- questions that need the audio track (our model is video-only): "
                         f"{a['accuracy']} % ({a['correct']} / {a['total']}), not in the number above")
        lines += ["", "| file | task type | correct | total | accuracy % | on time % |", "|---|---|---|---|---|---|"]
        for kind, f in table["files"].items():
            for task, c in [*f["tasks"].items(), ("all", f["all"])]:
                lines.append(f"| {kind} | {task} | {c['correct']} | {c['total']} | {c['accuracy']} | "
                             f"{c.get('on_time_accuracy', '')} |")
        return lines + [""]

