"""One pass per video: frames encoded once, each question answered from the memory at its time.

The protocol is :func:`videollama3.session.run_stream`'s: a question at ``t`` is
asked after every frame with timestamp ``<= t`` and before any later frame is
pushed, so nothing after ``t`` reaches its answer. Published streaming
evaluators re-encode the whole prefix for every question instead.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memory_bank import MemoryEntry
from videollama3.errors import AnnotationError, QuestionError, UsageError
from videollama3.questions import Poll, RecordLog, TimedQuestion, VideoQuestions
from videollama3.session import StreamingSession, pipelined, run_stream, tier_layout
from videollama3.video import open_video

from .benchmarks import BenchmarkFormat

PREDICTIONS = "predictions.jsonl"
LATE_S = 1.0
"""Seconds past the end of the video a question time may be (benchmarks give whole seconds, the
official evaluators cut the video at its end): such a question is asked after the last frame."""
UNKNOWN_DURATION_POLL_S = 24 * 3600.0
"""Seconds of stream a proactive question is polled for, from its first poll, in a video whose container
does not give its duration (a raw stream): the one case where its polls cannot be cut at the end."""


def poll_times(poll: Poll, duration: float) -> list[float]:
    """The times ``poll`` is asked at in a video of ``duration`` seconds (0.0: unknown): those not past
    the end (:data:`LATE_S` after it), else not past :data:`UNKNOWN_DURATION_POLL_S` after the first.
    Found by bisection, so a ``range`` reaching far past the video is cut without being walked."""
    if not poll.times:
        return []
    limit = duration + LATE_S if duration else poll.times[0] + UNKNOWN_DURATION_POLL_S
    return [float(t) for t in poll.times[: bisect.bisect_right(poll.times, limit)]]


def frames_inside(entry: MemoryEntry, start: float, end: float) -> float:
    """The share of ``entry``'s frames whose time lies in ``[start, end]`` (seconds), from 0 to 1.

    A merged entry summarises the run of frames ``frame_index .. last_frame_index``; its frames are
    taken as evenly spaced between ``timestamp`` and ``end_timestamp`` (frames are sampled at a fixed
    rate), so a summary of 500 frames holding one frame of the window gives 1/500.
    """
    span = entry.last_frame_index - entry.frame_index + 1
    if span <= 1 or entry.end_timestamp <= entry.timestamp:
        return float(start <= entry.timestamp <= end)
    step = (entry.end_timestamp - entry.timestamp) / (span - 1)
    first = max(0, math.ceil((start - entry.timestamp) / step - 1e-9))
    last = min(span - 1, math.floor((end - entry.timestamp) / step + 1e-9))
    return max(0, last - first + 1) / span


def evidence_weight(entries: list[MemoryEntry], evidence: tuple[float, float]) -> float:
    """The share of the memory's content built from frames inside ``evidence``: each entry's tokens
    weighted by :func:`frames_inside`, over all tokens held (0.0 for an empty memory).

    Unlike "kept at all", it cannot be 100 % by a summary that spans the whole past: a long tier
    holding 1 window frame among 500 adds 1/500 of its tokens.
    """
    total = sum(e.num_tokens for e in entries)
    if not total:
        return 0.0
    return sum(e.num_tokens * frames_inside(e, *evidence) for e in entries) / total


def retention(
    entries: list[MemoryEntry], tier_names: tuple[str, ...], evidence: tuple[float, float] | None
) -> dict[str, Any] | None:
    """Whether the memory still holds something built from a frame inside ``evidence``, and how much.

    Args:
        entries: the readout the question was answered from.
        tier_names: the backend's tier names (for the tier holding the evidence).
        evidence: ``(start_s, end_s)``, or None.

    Returns:
        None without evidence, else ``{"kept_own": a frame of the window is held as its own
        entry, "kept_any": ... or inside a merged summary whose span meets the window
        (:meth:`MemoryEntry.covers`), "only_merged": kept only inside a summary, "tier": the
        tier holding it (the sharpest one) or None, "weight": :func:`evidence_weight`}``.
    """
    if evidence is None:
        return None
    start, end = evidence
    hits = sorted((e for e in entries if e.covers(start, end)), key=lambda e: (e.is_merged, e.tier))
    own = [e for e in hits if not e.is_merged]
    return {"kept_own": bool(own), "kept_any": bool(hits), "only_merged": bool(hits and not own),
            "tier": tier_names[hits[0].tier] if hits else None, "weight": round(evidence_weight(entries, evidence), 6)}


@dataclass
class PredictionStore:
    """Append-only ``predictions.jsonl`` in ``output_dir`` (one shard file per process when distributed).

    A run killed while writing leaves a torn last line; before its first append a store cuts
    it off (that record is answered again), so no record is ever glued onto a broken one.

    Attributes:
        output_dir: the run's folder.
        rank / world_size: this process and how many there are.
    """

    output_dir: Path
    rank: int = 0
    world_size: int = 1
    _repaired: bool = field(default=False, init=False, repr=False)

    @property
    def path(self) -> Path:
        """Where this process appends."""
        if self.world_size == 1:
            return self.output_dir / PREDICTIONS
        return self.output_dir / "shards" / f"predictions.rank{self.rank}.jsonl"

    def shard_paths(self) -> list[Path]:
        """Every shard file present."""
        return sorted((self.output_dir / "shards").glob("predictions.rank*.jsonl"))

    def load(self) -> set[str]:
        """Ids of questions already answered in this folder (merged file and shards)."""
        return {r["id"] for p in [self.output_dir / PREDICTIONS, *self.shard_paths()] for r in read_records(p)}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and flush it (a killed run loses nothing written but the line it was writing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._repaired:
            cut_torn_tail(self.path)
            self._repaired = True
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def merge(self) -> list[dict[str, Any]]:
        """Append the shards' new records to ``predictions.jsonl``, delete the shards; return all records."""
        main = self.output_dir / PREDICTIONS
        records = read_records(main)
        seen = {r["id"] for r in records}
        new = [r for p in self.shard_paths() for r in read_records(p) if r["id"] not in seen and not seen.add(r["id"])]
        if new:
            cut_torn_tail(main)
            with main.open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in new)
        for p in self.shard_paths():
            p.unlink()
        if (self.output_dir / "shards").is_dir() and not any((self.output_dir / "shards").iterdir()):
            (self.output_dir / "shards").rmdir()
        return records + new


def cut_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline (a line a killed run left half written); return the bytes cut."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
    return len(data) - keep


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a predictions file (empty when it does not exist); a torn last line (a run killed
    while writing, no newline yet) is left out: its question is answered again.

    Raises:
        UsageError: for a complete line that is not a JSON object with an ``id`` (the file was
            edited or is not ours), naming the file and line.
    """
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # torn: no newline after it yet
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict) or "id" not in record:
            raise UsageError(f"{path} line {n} is not a prediction record (a JSON object with an id); "
                             "remove the line, or evaluate into another --output-dir")
        records.append(record)
    return records


def first_of_each_id(records) -> list[dict[str, Any]]:
    """``records`` in order, each question id once (its first record): a summary counts every question once."""
    seen: set[str] = set()
    return [r for r in records if not (r["id"] in seen or seen.add(r["id"]))]


class _Unanswerable(Exception):
    """A question the model refused (:class:`~videollama3.errors.QuestionError`), already reported."""


class _Poller:
    """The polls of one proactive question (:class:`~videollama3.questions.Poll`) during a pass."""

    def __init__(self, question: TimedQuestion) -> None:
        self.question = question
        self.history: list[dict[str, Any]] = []
        self.latency = 0.0
        self.finished = False


def evaluate_video(
    session: StreamingSession,
    video: VideoQuestions,
    fps: float,
    store: PredictionStore,
    benchmark: BenchmarkFormat,
    no_model: bool = False,
    max_new_tokens: int = 16,
    on_frame=None,
    skip_bad: bool = False,
    decode_ahead: int = 8,
    frame_rate: float | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Stream ``video`` once through ``session`` and answer its questions not yet in ``store``.

    The video is opened once: its duration checks the question times, then its frames stream
    (only ``video.start .. video.end`` when the benchmark gives a clip). Each question is asked
    with ``benchmark``'s prompt at its time and its record scored by ``benchmark``. A question with
    a :class:`~videollama3.questions.Poll` is polled at each poll time until the reply says yes, then
    asked; its record holds the polls, ``answered_at`` and ``last_time`` (the time of the last
    exchange: the last poll time when no poll said yes, as the official loop ends there).

    Args:
        session: a session on the model and memory backend under test (reset here).
        video: the video and its questions.
        fps: sampling rate when the annotation gives none.
        store: where records go; questions already in it are not asked again
            (the video is still streamed, since the memory must be rebuilt).
        benchmark: the format: prompts and scoring.
        no_model: do not call the language model: record only what the memory holds.
        max_new_tokens: generation budget per answer.
        on_frame: progress callback.
        skip_bad: report a question past the end of the video, or one the model cannot take (a prompt
            beyond its context), instead of stopping; it stays unanswered.
        decode_ahead: frames decoded ahead in a background thread (0: in turn with encoding).
        frame_rate: frames per second of a frame-folder video when the annotation gives none.
        threads: torch's intra-op threads while frames come (None: as they are), back to what they
            were after the last frame (:func:`~videollama3.session.pipelined`).

    Returns:
        ``{"asked": n, "unanswered": [ids], "skipped": [messages], "error": message or None}``.

    Raises:
        AnnotationError: for a question time more than :data:`LATE_S` past the end of the video, a
            question due before the first frame of the part streamed (a clip's start between two frames),
            or a question the model refuses (:meth:`~videollama3.session.StreamingSession.ask`'s
            QuestionError: a prompt beyond its context), unless ``skip_bad``.
        VideoError: for a video that cannot be opened.
    """
    done = store.load()
    if all(q.id in done for q in video.questions):
        return {"asked": 0, "unanswered": [], "skipped": [], "error": None}
    reader = open_video(video.video, video.frame_rate or frame_rate)
    duration = reader.info.duration
    late = [q for q in video.questions if q.id not in done and q.poll is None and duration and q.time > duration + LATE_S]
    log = RecordLog(video.video, skip_bad)
    try:
        for q in late:
            log.bad(f"question {q.id}", f"at {q.time:.6g}s it is beyond the end of the video ({duration:.2f}s)")
    except AnnotationError:
        reader.close()
        raise
    # every question in time order: one answered by an earlier run is not asked again, but what asking
    # did to the memory (fifo's prompted frames, lru's use counts) is replayed, so later answers match
    questions = [q for q in video.questions if q not in late]
    replayed = _replayed_polls(store, questions, done)
    events = sorted(((t, q) for q in questions
                     for t in ([q.time] if q.poll is None else poll_times(q.poll, duration))),
                    key=lambda e: (e[0], e[1].order))
    pollers = {q.id: _Poller(q) for q in questions if q.poll is not None and q.id not in done}
    refused: set[str] = set()  # questions the model could not take (with skip_bad)
    session.reset()
    names = session.memory.memory_tier_names

    def record(q: TimedQuestion, entries: list[MemoryEntry], prediction: str | None, latency: float,
               **fields: Any) -> dict[str, Any]:
        r = {
            **{k: v for k, v in asdict(q).items() if k not in ("evidence", "poll")},
            "evidence": list(q.evidence) if q.evidence else None, **fields,
            "video": str(video.video), "asked_at": session.time, "frames_seen": session.frames_seen,
            "prediction": prediction, "latency_s": latency,
            "visual_tokens": sum(e.num_tokens for e in entries), "memory_bytes": session.memory.stats()["bytes"],
            "tiers": tier_layout(session.memory, entries), "tier_names": list(names),
            "retention": retention(entries, names, q.evidence),
        }
        r.update(benchmark.score(r))
        store.append(r)
        return r

    def reply(q: TimedQuestion, text: str, entries: list[MemoryEntry]) -> str | None:
        if no_model:
            return None
        try:
            return session.ask(text, max_new_tokens=max_new_tokens, entries=entries).answer
        except QuestionError as e:  # e.g. a prompt beyond the model's context: stop, or report it and go on
            log.bad(f"question {q.id}", str(e))
            raise _Unanswerable from None

    def finish(poller: _Poller, entries: list[MemoryEntry], prediction: str | None, answered_at: float | None):
        poller.finished = True
        return record(poller.question, entries, prediction, poller.latency, polls=poller.history,
                      answered_at=answered_at,
                      last_time=answered_at if answered_at is not None else float(poller.question.poll.times[-1]))

    def ask(i: int) -> dict[str, Any] | None:
        try:
            return ask_event(i)
        except _Unanswerable:  # reported in log.skipped; the question stays unanswered, its later polls unasked
            refused.add(events[i][1].id)
            return None

    def ask_event(i: int) -> dict[str, Any] | None:
        t, q = events[i]
        if q.id in done:
            if q.poll is None or t in replayed.get(q.id, ()):
                session.question_readout()
            return None
        if q.poll is None:
            if not session.frames_seen:  # due before the first frame of the part streamed: nothing to answer from
                log.bad(f"question {q.id}", f"at {t:.6g}s no frame of the part of the video streamed (from "
                                            f"{video.start:.6g}s) has come yet; its answer would see no frame")
                raise _Unanswerable
            start = time.perf_counter()
            entries = session.question_readout()
            prediction = reply(q, benchmark.prompt(q), entries)
            return record(q, entries, prediction, time.perf_counter() - start)
        poller = pollers[q.id]
        if poller.finished or q.id in refused:
            return None
        start = time.perf_counter()
        entries = session.question_readout()
        said = reply(q, q.poll.query, entries)
        poller.history.append({"time": t, "response": said})
        if said is not None and q.poll.trigger in said.strip().lower():
            answer = reply(q, benchmark.prompt(q), entries)
            poller.latency += time.perf_counter() - start
            return finish(poller, entries, answer, t)
        poller.latency += time.perf_counter() - start
        return finish(poller, entries, said, None) if t == q.poll.times[-1] else None

    frames = reader.frames(fps=video.fps or fps, start=video.start, end=video.end)
    frames = pipelined(session, frames, decode_ahead, threads)
    result = run_stream(session, frames, [(q.question, t) for t, q in events], on_frame=on_frame, ask=ask)
    if result.error is None:  # polls past the end of the video: the last reply stands, as the official loop
        for poller in pollers.values():  # would get it again from the same last frames
            if not poller.finished and poller.history and poller.question.id not in refused:
                finish(poller, session.memory.readout(), poller.history[-1]["response"], None)
    answered = {r["id"] for r in result.answers.values() if r is not None}
    unanswered = [q.id for q in questions if q.id not in done and q.id not in answered
                  and not (q.id in pollers and pollers[q.id].finished)]
    asked = len(answered) + sum(p.finished and p.question.id not in answered for p in pollers.values())
    return {"asked": asked, "unanswered": unanswered, "skipped": log.skipped, "error": result.error}


def _replayed_polls(store: PredictionStore, questions: list[TimedQuestion], done: set[str]) -> dict[str, set[float]]:
    """``{question id: poll times}`` of the polls an earlier run asked for its answered proactive
    questions: those readouts are taken again on resume, the others not."""
    polled = {q.id for q in questions if q.poll is not None and q.id in done}
    if not polled:
        return {}
    return {r["id"]: {p["time"] for p in r.get("polls") or []}
            for path in [store.output_dir / PREDICTIONS, *store.shard_paths()] for r in read_records(path)
            if r["id"] in polled}
