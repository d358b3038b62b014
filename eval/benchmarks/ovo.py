"""``ovo``: OVO-Bench (Li et al., "OVO-Bench: How Far is Your Video-LLMs from Real-World Online Video
Understanding?", CVPR 2025; JoeLeelyf/OVO-Bench), its ``data/ovo_bench_new.json``.

- Backward tracing (EPM, ASI, HLD) and real-time perception (OCR, ACR, ATR, STU, FPD, OJR):
  ``{id, task, video, realtime (s), question, options, gt (option index)}``, asked at ``realtime``
  with the official prompt (:func:`videollama3.questions.format_question` style ``ovo``).
- Forward active responding (REC, SSR, CRR): each ``test_info`` probe ``{realtime, count | type
  (0 no / 1 yes), step?}`` is a question asked at its ``realtime`` in the same single pass over the
  video (the official scripts cut one clip per probe), with the official REC / SSR / CRR prompt.

Scoring follows ``utils/OVOBenchScore.py``: backward / real-time answers are correct when the
ground-truth letter occurs in the reply; REC when the reply's digits, joined, equal the count;
SSR / CRR when the reply is ``Y`` / ``N`` for yes / no, or contains ``Yes`` / ``No``. The table
averages tasks within each group, and the overall is the mean of the three group averages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from videollama3.questions import (
    RecordLog,
    TimedQuestion,
    answer_letter,
    option_list,
    read_json_list,
    seconds,
    text_field,
)

from .base import BenchmarkFormat, VideoSet, mean, percent, register_benchmark

BACKWARD = ("EPM", "ASI", "HLD")
REALTIME = ("OCR", "ACR", "ATR", "STU", "FPD", "OJR")
FORWARD = ("REC", "SSR", "CRR")
GROUPS = {"real-time": REALTIME, "backward": BACKWARD, "forward": FORWARD}  # the paper's column order

_NO_EXTRA = "Do not include any additional text or explanation in your response."
_YES_NO = "Answer only with \u201cYes\u201d or \u201cNo\u201d."
REC_PROMPT = ("\nYou're watching a video in which people may perform a certain type of action repetively. \n"
              "The person performing this kind of action are referred to as 'they' in the following statement.\n"
              "You're task is to count how many times have different people in the video perform this kind of "
              "action in total.\nOne complete motion counts as one. \nNow, answer the following question: {}\n"
              "Provide your answer as a single number (e.g., 0, 1, 2, 3\u2026) indicating the total count.\n"
              f"{_NO_EXTRA}\n")
SSR_PROMPT = ("\nYou're watching a tutorial video which contain a sequential of steps. \n"
              "The following is one step from the whole procedures: \n{}\n"
              "Your task is to determine if the man or woman in the video is currently performing this step.\n"
              f"{_YES_NO}\n{_NO_EXTRA}\n")
CRR_PROMPT = ("\nYou're responsible of answering questions based on the video content. \n"
              "The following question are relevant to the latest frames, i.e. the end of the video.\n{}\n"
              "Decide whether existing visual content, especially latest frames, i.e. frames that near the end of "
              "the video, provide enough information for answering the question.\n"
              f"{_YES_NO}\n{_NO_EXTRA}\n")
FORWARD_PROMPTS = {"REC": REC_PROMPT, "SSR": SSR_PROMPT, "CRR": CRR_PROMPT}


def _group(task: str) -> str:
    return next(g for g, tasks in GROUPS.items() if task in tasks)


@register_benchmark
class OvoFormat(BenchmarkFormat):
    """OVO-Bench's ``ovo_bench_new.json``: every task, forward probes included."""

    name = "ovo"
    help = "OVO-Bench ovo_bench_new.json (backward, real-time and forward active-responding tasks)"
    prompt_style = "ovo"

    def load(self, path: Path, videos: VideoSet, log: RecordLog) -> None:
        """A list of records, each naming its ``video`` under ``--video-root``: a backward or real-time
        task's record is one multiple-choice question at its ``realtime``; a forward task's (REC, SSR,
        CRR) gives one question per probe of its ``test_info``, each asked at the probe's time."""
        for n, r in enumerate(read_json_list(path, "OVO-Bench records")):
            rid = f"record {n} (id {r.get('id')!r})" if isinstance(r, dict) else f"record {n}"
            questions = log.attempt(rid, lambda: self._questions(r, n))
            video = videos.video(r["video"], log, rid) if questions else None
            for q in questions if video is not None else []:
                videos.add(video, q, log, rid)

    def _questions(self, r: Any, n: int) -> list[TimedQuestion]:
        if not isinstance(r, dict):
            raise ValueError("not an object")
        task = str(r.get("task"))
        if task not in BACKWARD + REALTIME + FORWARD:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(BACKWARD + REALTIME + FORWARD)})")
        questions = self._forward(r, task) if task in FORWARD else [self._choice(r, task, n)]
        if not isinstance(r.get("video"), str):
            raise ValueError("no 'video' path")
        return questions

    @staticmethod
    def _choice(r: dict[str, Any], task: str, n: int) -> TimedQuestion:
        options = option_list(r.get("options"))
        if len(options) < 2:
            raise ValueError("a multiple-choice question needs at least 2 options")
        if "gt" not in r and "answer" not in r:
            raise ValueError("no 'gt' (option index) or 'answer'")
        return TimedQuestion(
            id=str(r.get("id", n)), time=seconds(r.get("realtime"), "realtime"),
            question=text_field(r.get("question"), "question"), options=options,
            answer=answer_letter(r["gt"] if "gt" in r else r["answer"], options), task=task, subtask=_group(task))

    @staticmethod
    def _forward(r: dict[str, Any], task: str) -> list[TimedQuestion]:
        probes = r.get("test_info")
        if not isinstance(probes, list) or not probes:
            raise ValueError("a forward active-responding record needs a non-empty 'test_info' list")
        if "id" not in r:
            raise ValueError("no 'id'")
        questions = []
        for i, p in enumerate(probes):
            if not isinstance(p, dict):
                raise ValueError(f"test_info {i} is not an object")
            if task == "REC":
                text = f"How many times did they {text_field(r['activity'], 'activity')}?"
                count = p["count"]
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise ValueError(f"test_info {i}: count must be a non-negative integer, got {count!r}")
                answer, extra = str(count), {"count": count}
            else:
                text = text_field(p["step"] if task == "SSR" else r["question"], "step" if task == "SSR" else "question")
                if p.get("type") not in (0, 1) or isinstance(p.get("type"), bool):
                    raise ValueError(f"test_info {i}: type must be 0 (no) or 1 (yes), got {p.get('type')!r}")
                answer, extra = ("Yes" if p["type"] else "No"), {"type": p["type"]}
            questions.append(TimedQuestion(
                id=f"{r['id']}#{i}", time=seconds(p.get("realtime"), f"test_info {i} realtime"), question=text,
                answer=answer, task=task, subtask="forward", extra={"record": r["id"], "probe": i, **extra}))
        return questions

    def prompt(self, question: TimedQuestion) -> str:
        """The official prompt: :data:`REC_PROMPT` / :data:`SSR_PROMPT` / :data:`CRR_PROMPT` for forward
        probes, else the backward / real-time one (``format_question(q, "ovo")``)."""
        if question.task in FORWARD_PROMPTS:
            return FORWARD_PROMPTS[question.task].format(question.question)
        return super().prompt(question)

    def score(self, record: dict[str, Any]) -> dict[str, Any]:
        """``utils/OVOBenchScore.py``'s rules; a missing reply (``--no-model``) is not scored."""
        reply, task = record.get("prediction"), record["task"]
        if reply is None:
            return {"correct": None}
        if task == "REC":
            return {"correct": "".join(re.findall(r"\d+", reply)) == str(record["extra"]["count"])}
        if task in ("SSR", "CRR"):
            said = record["extra"]["type"]
            if (reply == "N" and said == 0) or (reply == "Y" and said == 1):
                return {"correct": True}
            return {"correct": ("Yes" if said else "No") in reply}
        return {"correct": record["answer"] in reply}

    def table(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """``{"tasks": {task: {correct, total, accuracy}}, "groups": {group: mean task accuracy},
        "overall": mean of the group averages, "complete": all three groups present}`` (percent)."""
        counts: dict[str, list[int]] = {}
        for r in records:
            correct = self.score(r)["correct"]
            if correct is not None:
                c = counts.setdefault(r["task"], [0, 0])
                c[0], c[1] = c[0] + bool(correct), c[1] + 1
        if not counts:
            return None
        tasks = {t: {"correct": c, "total": n, "accuracy": percent(c, n)}
                 for g in GROUPS.values() for t in g if t in counts for c, n in [counts[t]]}
        groups = {g: mean([tasks[t]["accuracy"] for t in ts if t in tasks]) for g, ts in GROUPS.items()}
        return {"tasks": tasks, "groups": groups, "overall": mean(list(groups.values())),
                "complete": all(v is not None for v in groups.values())}

    def table_lines(self, table: dict[str, Any]) -> list[str]:
        """OVO-Bench's table: real-time, backward and forward tasks with their averages, then the overall."""
        def cell(value: float | None) -> str:
            return "-" if value is None else str(value)

        head, cells = [], []
        for group, tasks in GROUPS.items():
            head += [t for t in tasks] + [f"{group} avg"]
            cells += [cell(table["tasks"].get(t, {}).get("accuracy")) for t in tasks] + [cell(table["groups"][group])]
        head.append("overall")
        cells.append(cell(table["overall"]))
        lines = ["## OVO-Bench", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(cells) + " |", ""]
        if not table["complete"]:
            lines += ["The overall is the mean of the groups present; OVO-Bench's own overall needs all three.", ""]
        lines += ["| task | correct | total | accuracy % |", "|---|---|---|---|"]
        lines += [f"| {t} | {v['correct']} | {v['total']} | {v['accuracy']} |" for t, v in table["tasks"].items()]
        return lines + [""]

