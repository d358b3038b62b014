"""StreamingSession: push frames as they arrive, ask questions at any moment."""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from memory_bank import MemoryBackend, MemoryBankError, MemoryEntry

from .errors import QuestionError, VideoError
from .modeling import VideoLlama3WithMemory, memory_tokens
from .preprocess import FRAME_TOKENS, preprocess_frames
from .processing import MemoryProcessor


@dataclass
class Answer:
    """One answered question and the memory state it was answered from.

    Attributes:
        question: the text asked.
        time: stream time of the question, seconds (the last frame pushed).
        answer: generated text.
        latency_s: wall time of :meth:`StreamingSession.ask`, seconds.
        visual_tokens: visual tokens given to the language model.
        frames_seen: frames pushed before the question.
        tiers: ``{tier name: [frame timestamps (s) of its entries]}``; a merged
            entry appears as ``[start, end]``.
    """

    question: str
    time: float
    answer: str
    latency_s: float
    visual_tokens: int
    frames_seen: int
    tiers: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """A decoded frame together with its vision-encoder inputs, made ahead of encoding
    (:meth:`StreamingSession.prepared`, in a thread of its own while earlier frames are encoded).

    Attributes:
        frame: the ``(H, W, 3)`` uint8 RGB frame (backends with pixel criteria read it).
        pixel_values: ``(gh * gw, 3 * p * p)`` (``p`` the encoder's patch size, 14) in the vision encoder's
            dtype, on the CPU (the encoder uploads a batch at a time).
        grid_thw: ``(1, 3)`` long, ``[1, gh, gw]``.
        merge_sizes: ``(1,)`` long.
    """

    frame: np.ndarray | torch.Tensor
    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    merge_sizes: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        """The frame's shape, ``(H, W, 3)``."""
        return tuple(self.frame.shape)

    @staticmethod
    def encoder_inputs(prepared: Sequence[PreparedFrame]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One encoder call's ``(pixel_values, grid_thw, merge_sizes)`` for ``prepared`` frames, in order
        (:meth:`~videollama3.modeling.VideoLlama3WithMemory.encode_frames`): one frame's as they are,
        several concatenated."""
        if len(prepared) == 1:
            return prepared[0].pixel_values, prepared[0].grid_thw, prepared[0].merge_sizes
        return tuple(torch.cat([getattr(p, name) for p in prepared])
                     for name in ("pixel_values", "grid_thw", "merge_sizes"))


def tier_layout(memory: MemoryBackend, entries: Sequence[MemoryEntry] | None = None) -> dict[str, list[Any]]:
    """Frame times held per tier: ``{name: [t, ...]}``, merged entries as ``[start, end]``.

    Args:
        memory: the backend (for its tier names).
        entries: a readout already taken (default: take one; a backend may count
            a readout as a use of its entries, so pass the one you have).
    """
    names = memory.memory_tier_names
    layout: dict[str, list[Any]] = {name: [] for name in names}
    for e in memory.readout() if entries is None else entries:
        layout[names[e.tier]].append(
            [round(e.timestamp, 3), round(e.end_timestamp, 3)] if e.is_merged else round(e.timestamp, 3)
        )
    return layout


TIMED_STAGES = ("decode", "preprocess", "encode", "add", "prompt", "generate", "frames", "questions")


class StreamingSession:
    """One model, its processor, one memory backend and a clock (docs/design.md section 7).

    :meth:`push_frame` preprocesses and encodes that one frame once and adds it
    to the memory (:meth:`push_frames`: several frames preprocessed and encoded in one batch, then
    added one by one in time order); :meth:`ask` answers from the memory readout at the current
    stream time. No frame is encoded twice and nothing pushed after a question
    can influence its answer. Sessions share a model freely: all stream state is
    in the memory and the dialogue.

    Args:
        model: the wrapped VideoLLaMA3 (its adapter sized for this kind of memory).
        processor: the prompt builder of the model's tokenizer.
        memory: a memory backend (see :func:`videollama3.loading.build_session`).
        frame_tokens: token budget per frame: frames keep their aspect ratio within it
            (:func:`~videollama3.preprocess.frame_size`; 144: a 16:9 frame is a 9x16 grid).
        encode_batch: frames encoded together by :func:`question_schedule` between two question
            times (None: :func:`default_encode_batch` of the model's device).

    Raises:
        MemoryConfigError: when the memory's tokens do not fit the model.
        ValueError: when the processor's ``<|video_pad|>`` id is not the model's.
    """

    def __init__(self, model: VideoLlama3WithMemory, processor: MemoryProcessor, memory: MemoryBackend,
                 frame_tokens: int = FRAME_TOKENS, encode_batch: int | None = None) -> None:
        model.check_memory(memory)
        if processor.video_token_id != model.video_token_id:
            raise ValueError(
                f"the tokenizer maps <|video_pad|> to {processor.video_token_id} but the model expects id "
                f"{model.video_token_id}; load the tokenizer that belongs to the checkpoint"
            )
        self.model = model
        self.processor = processor
        self.memory = memory
        self.frame_tokens = frame_tokens
        self.encode_batch = encode_batch or default_encode_batch(model.device)
        self.history: list[tuple[str, str]] = []
        self.timings: dict[str, float] = dict.fromkeys(TIMED_STAGES, 0.0)
        """Seconds spent per stage since the session was made (host time: on a GPU, work queued but
        not finished is counted where it is waited for), and ``frames`` / ``questions`` counts;
        :meth:`throughput` turns them into rates."""

    @property
    def frames_seen(self) -> int:
        """Frames pushed since the last :meth:`reset` (the memory's count)."""
        return self.memory.frames_added

    @property
    def time(self) -> float | None:
        """Stream time in seconds: the last frame's timestamp (None before the first)."""
        return self.memory.last_timestamp

    def reset(self) -> None:
        """Forget the stream: clear the memory (and with it the clock) and the dialogue."""
        self.memory.clear()
        self.history = []

    def push_frame(self, frame: np.ndarray | torch.Tensor, timestamp: float) -> None:
        """Encode one frame and add it to the memory (:meth:`push_frames` of one frame).

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            timestamp: seconds since the start of the stream, not earlier than the last frame's.

        Raises:
            ValueError: for a frame that is not one ``(H, W, 3)`` uint8 image (a batch, an empty
                frame, another dtype) or a timestamp that is not a number.
            MemoryBankError: for a timestamp earlier than the last one (or not finite); the
                session is unchanged.
        """
        self.push_frames([(frame, timestamp)])

    def push_frames(self, frames: Sequence[tuple[np.ndarray | torch.Tensor, float]]) -> None:
        """Preprocess and encode ``frames`` in one batch, then add them to the memory in time order
        (:meth:`~memory_bank.MemoryBackend.add_frames`: one device sync for the batch in the hierarchical
        bank). The tokens equal one-at-a-time encoding: the vision encoder attends within each
        frame only (``grid_thw`` has one row per frame).

        Args:
            frames: ``[(frame (H, W, 3) uint8 RGB, timestamp_s)]`` of one size, in time order; a frame
                may be a :class:`PreparedFrame` (from :meth:`prepared`), whose pixel values are used as
                they are (the same values preprocessing would give).

        Raises:
            ValueError: for a frame that is not one ``(H, W, 3)`` uint8 image, frames of different
                sizes, or a timestamp that is not a number.
            MemoryBankError: for a timestamp earlier than the one before it (or not finite); the
                session is unchanged.
        """
        last = self.time
        for frame, timestamp in frames:
            shape = getattr(frame, "shape", None)
            if shape is None or len(shape) != 3:
                raise ValueError(f"push_frame takes one (H, W, 3) uint8 RGB frame, got shape {shape}; push a batch "
                                 "frame by frame")
            if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float, np.floating, np.integer)):
                raise ValueError(f"timestamp must be a number of seconds, got {timestamp!r}")
            if last is not None and timestamp < last:
                raise MemoryBankError(f"frame at {timestamp:.3f}s arrived after one at {last:.3f}s; push frames in "
                                      "time order")
            last = timestamp
        if not frames:
            return
        if len({tuple(f.shape) for f, _ in frames}) > 1:
            raise ValueError(f"frames of one batch must share a size, got {sorted({tuple(f.shape) for f, _ in frames})}")
        clock, timings = time.perf_counter, self.timings
        t0 = clock()
        # frame by frame (a frame at a time stays in cache: faster than one batch), then one encoder call
        prepared = [f if isinstance(f, PreparedFrame) else self.prepare(f) for f, _ in frames]
        pixel_values, grid_thw, merge_sizes = PreparedFrame.encoder_inputs(prepared)
        frames = [(p.frame, t) for p, (_, t) in zip(prepared, frames)]
        t1 = clock()
        grids = self.model.encode_frames(pixel_values, grid_thw, merge_sizes)
        t2 = clock()
        first = self.frames_seen
        self.memory.add_frames(grids, range(first, first + len(frames)), [t for _, t in frames], [f for f, _ in frames])
        t3 = clock()
        timings["preprocess"] += t1 - t0
        timings["encode"] += t2 - t1
        timings["add"] += t3 - t2
        timings["frames"] += len(frames)

    def prepare(self, frame: np.ndarray | torch.Tensor) -> PreparedFrame:
        """Preprocess one ``(H, W, 3)`` uint8 RGB frame for :meth:`push_frames`, without touching the
        session's state (safe in another thread while this session encodes).

        Raises:
            ValueError: for a frame that is not one ``(H, W, 3)`` uint8 image.
        """
        shape = getattr(frame, "shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(f"prepare takes one (H, W, 3) uint8 RGB frame, got shape {shape}")
        # on the CPU whatever the model's device, as the native processor runs by default (see
        # preprocess.resize_frames): the same pixel values on every machine, and a thread that never
        # waits on the GPU; the encoder uploads them, a batch at a time
        return PreparedFrame(frame, *preprocess_frames(frame, self.frame_tokens, patch_size=self.model.patch_size,
                                                       dtype=self.model.vision_dtype))

    def prepared(self, frames: Iterator[tuple[np.ndarray, float]]) -> Iterator[tuple[PreparedFrame, float]]:
        """``frames`` with each frame preprocessed (:meth:`prepare`), its time counted as ``preprocess``.

        Meant to run ahead in a thread of its own, between decoding and encoding:
        ``read_ahead(session.prepared(read_ahead(frames)))`` (:func:`~videollama3.video.decode_ahead`)
        is a three-stage pipeline, and :func:`pipelined` builds it. Frames that are not ``(H, W, 3)``
        images are passed on unchanged (:meth:`push_frames` refuses them with its own error).
        """
        clock = time.perf_counter
        try:
            for frame, t in frames:
                t0 = clock()
                shape = getattr(frame, "shape", None)
                item = self.prepare(frame) if shape is not None and len(shape) == 3 else frame
                self.timings["preprocess"] += clock() - t0
                yield item, t
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def timed(self, frames: Iterator[tuple[np.ndarray, float]]) -> Iterator[tuple[np.ndarray, float]]:
        """``frames``, counting the time spent waiting for each as ``decode`` (with decoding ahead in
        a thread, only the wait the pipeline could not hide)."""
        iterator = iter(frames)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.timings["decode"] += time.perf_counter() - t0
                yield item
        finally:  # left early: close the source now (a decoding thread, a container), not at garbage collection
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def throughput(self, wall_s: float | None = None) -> dict[str, Any]:
        """Per frame: ms of ``decode`` (waiting), ``preprocess``, ``encode``, ``add``; per question: ms of
        ``prompt`` and ``generate``; and frames per second over ``wall_s`` (default: the summed stages)."""
        t, frames, questions = self.timings, self.timings["frames"], self.timings["questions"]
        busy = sum(t[k] for k in ("decode", "preprocess", "encode", "add", "prompt", "generate"))
        per = (lambda k, n: round(1000 * t[k] / n, 3) if n else None)
        return {"frames": int(frames), "questions": int(questions),
                "frames_per_s": round(frames / (wall_s or busy), 3) if frames and (wall_s or busy) else None,
                "ms_per_frame": {k: per(k, frames) for k in ("decode", "preprocess", "encode", "add")},
                "ms_per_question": {k: per(k, questions) for k in ("prompt", "generate")}}

    def question_readout(self) -> list[MemoryEntry]:
        """The memory readout a question asked now is answered from, with what asking does
        to the memory (:meth:`MemoryBackend.on_question` at the newest frame). :meth:`ask`,
        evaluation without a model and training (``train/``) all take it here, so a model is
        trained on exactly what it sees at inference.

        Returns:
            The entries in time order (empty before the first frame).
        """
        entries = self.memory.readout()
        if self.frames_seen:
            self.memory.on_question(self.memory.last_frame_index)
        return entries

    def ask(self, question: str, max_new_tokens: int = 64, keep_history: bool = False,
            entries: list[MemoryEntry] | None = None, **generate_kwargs) -> Answer:
        """Answer ``question`` from what the memory holds now.

        Args:
            question: non-empty text, without the model's special tokens.
            max_new_tokens: generation budget.
            keep_history: add this turn to the dialogue that later questions see.
            entries: a readout already taken for this question with :meth:`question_readout`
                (default: take it now).
            **generate_kwargs: passed to the native ``generate`` (greedy by default).

        Raises:
            QuestionError: for a question that is not text, is empty, holds a special token or is too long
                for the language model's context with ``max_new_tokens`` (an integer from 1 to that context):
                checked before the readout, so the memory is unchanged. Also, after the readout, when the
                whole prompt (visual tokens, dialogue history and question) and ``max_new_tokens`` exceed
                the context: nothing is generated, and no turn is added to the history.
        """
        if not isinstance(question, str):
            raise QuestionError(f"the question must be text (str), got {type(question).__name__}")
        if not question.strip():
            raise QuestionError("the question is empty; give some text to ask")
        self.processor.check_text(question)
        context = context_length(self.model.model.config.get_text_config())
        try:  # numpy integers too; not bools, floats or text
            budget = -1 if isinstance(max_new_tokens, bool) else operator.index(max_new_tokens)
        except TypeError:
            budget = -1
        if not 1 <= budget <= context:
            raise QuestionError(f"max_new_tokens must be an integer from 1 to the model's context of {context} tokens, "
                                f"got {max_new_tokens!r}")
        max_new_tokens = budget
        question_tokens = len(self.processor.tokenize(question))
        if question_tokens + budget > context:
            raise QuestionError(f"the question is {question_tokens} tokens: with max_new_tokens={budget} it does not fit "
                                f"the model's context of {context} tokens, before any visual token; shorten it")
        start = time.perf_counter()
        if entries is None:
            entries = self.question_readout()
        inputs = self.processor(entries, question, self.history)
        prompt_tokens = inputs["input_ids"].shape[1]
        if prompt_tokens + budget > context:
            raise QuestionError(
                f"the prompt is {prompt_tokens} tokens ({sum(e.num_tokens for e in entries)} of them visual, the rest "
                f"the question and {len(self.history)} earlier turns): with max_new_tokens={budget} it does not fit "
                f"the model's context of {context} tokens; shorten the question, ask without keep_history, or use "
                "a memory that holds fewer tokens")
        tokens, tier_ids = memory_tokens(entries, self.model.memory_width)
        prompted = time.perf_counter()
        generated = self.model.generate(inputs["input_ids"], inputs["attention_mask"], tokens, tier_ids,
                                        max_new_tokens=max_new_tokens, **generate_kwargs)
        self.timings["prompt"] += prompted - start
        self.timings["generate"] += time.perf_counter() - prompted
        self.timings["questions"] += 1
        text = self.processor.decode(generated[0])
        latency = time.perf_counter() - start
        if keep_history:
            self.history.append((question, text))
        return Answer(
            question=question,
            time=self.time if self.time is not None else 0.0,
            answer=text,
            latency_s=latency,
            visual_tokens=sum(e.num_tokens for e in entries),
            frames_seen=self.frames_seen,
            tiers=tier_layout(self.memory, entries),
        )


def context_length(text_config: Any) -> int:
    """Positions the language model takes: ``max_position_embeddings``, or with a RoPE scaling that has a
    ``factor`` (YaRN, linear, dynamic NTK: ``rope_parameters`` / ``rope_scaling`` of the config) that
    factor times ``original_max_position_embeddings`` (else times ``max_position_embeddings``), as the
    scaling extends it. Qwen2.5's YaRN recipe keeps ``max_position_embeddings = 32768`` with
    ``factor = 4`` for 131072 positions."""
    base = int(text_config.max_position_embeddings)
    scaling = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    factor = scaling.get("factor") if isinstance(scaling, dict) else None
    if isinstance(factor, (int, float)) and factor > 1:
        return max(base, int(factor * (scaling.get("original_max_position_embeddings") or base)))
    return base


def check_question_time(t: float, duration: float) -> float:
    """Validate a question time in seconds against the video's duration.

    Raises:
        QuestionError: for a negative, non-finite, or past-the-end time.
    """
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise QuestionError(f"question time must be a number of seconds, got {t!r}") from None
    if not math.isfinite(t) or t < 0:
        raise QuestionError(f"question time {t} s is negative or not finite; times are seconds from the start")
    if duration > 0 and t > duration + 1e-6:
        raise QuestionError(f"question time {t:.6g} s is beyond the end of the video ({duration:.2f} s); "
                            "ask at or before the end")
    return t


@dataclass
class StreamResult:
    """What :func:`run_stream` produced.

    Attributes:
        answers: ``{question position: Answer}`` for every question reached (or what
            the ``ask`` callable of :func:`run_stream` returned).
        stopped_at: seconds decoded before the frame source failed (None when it ran to the end).
        error: the failure's message, when it failed.
    """

    answers: dict[int, Answer]
    stopped_at: float | None = None
    error: str | None = None


def pipelined(session: StreamingSession, frames: Iterator[tuple[np.ndarray, float]], depth: int,
              threads: int | None = None) -> Iterator[tuple[np.ndarray | PreparedFrame, float]]:
    """The frames a stream pushes into ``session``, as a pipeline: ``depth`` 0 reads them in turn
    with encoding; otherwise decoding runs ahead in one thread (several, one GOP each, for a file that
    allows it: :meth:`~videollama3.video.VideoFrames.ahead`) and preprocessing in another
    (:func:`~videollama3.video.decode_ahead` twice, with :meth:`StreamingSession.prepared` between),
    each at most ``depth`` frames ahead, so decoding, preprocessing and encoding overlap. Time spent
    waiting for a frame is counted as ``decode`` (:meth:`StreamingSession.timed`).

    With ``threads``, torch's intra-op threads are set to it while frames come (on the CPU,
    :func:`~videollama3.video.encoder_threads`: a core left to the decoding threads) and set back to
    what they were once the source has ended, broken off or been closed: what is encoded and asked
    after the last frame (the questions at the end of a video, the usual ones) has every core again.
    On 2 cores with the tiny model, the end question of trailer_bbb.mp4 prefills in 17 ms with 2
    threads against 29 with 1.

    Raises:
        ValueError: for ``depth < 0`` or ``threads < 1``; whatever ``frames`` raises, in order.
    """
    from .video import decode_ahead

    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if depth > 0:
        frames = decode_ahead(session.prepared(decode_ahead(frames, depth)), depth)
    if threads is not None:
        frames = _with_torch_threads(frames, threads)
    return session.timed(frames)


def _with_torch_threads(frames: Iterator[tuple[Any, float]], threads: int) -> Iterator[tuple[Any, float]]:
    """``frames``, with torch's intra-op threads at ``threads`` from the first frame asked for until the
    source ends, raises or is closed; then as they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield from frames
    finally:
        torch.set_num_threads(before)


ENCODE_BATCH = 8
"""Frames :func:`question_schedule` encodes together by default on the CPU (and any device but CUDA):
one memory sync for several frames (:meth:`~memory_bank.MemoryBackend.add_frames`). On this 2-core
CPU with the tiny model it is about even or a little ahead (``vl3mem bench pipeline``, medians of 3
to 5 rounds, pipelined: vtest.avi 115 against 103 frames/s one at a time, trailer_bbb.mp4 32-40
against 38). A batch is cut where a question falls due, so it changes nothing a question sees. Live
sources and ``vl3mem serve`` encode one frame at a time (``encode_batch = 1``): a question may come at
any moment."""

ENCODE_BATCH_CUDA = 32
"""Frames encoded together by default on a CUDA GPU. There one frame's encode is bound by the host:
transformers' vision encoder launches about 580 kernels and 130 host-to-device copies per call, for
3.7 ms of GPU work. On an H200 with a randomly initialised model of VideoLLaMA3-2B's shape (bf16,
27-layer vision encoder, 144 tokens per frame), 32 frames of trailer_bbb.mp4 encoded in batches of
1 / 2 / 4 / 8 / 16 / 32 took 23.6 / 15.8 / 10.1 / 6.0 / 4.5 / 3.8 ms per frame (as ``vl3mem bench
encode --device cuda`` measures); the features are bit-identical to one at a time in bf16 and fp32."""


def default_encode_batch(device: torch.device | str) -> int:
    """Frames :func:`question_schedule` encodes together by default on ``device``:
    :data:`ENCODE_BATCH_CUDA` on a CUDA GPU, else :data:`ENCODE_BATCH`."""
    return ENCODE_BATCH_CUDA if torch.device(device).type == "cuda" else ENCODE_BATCH


def question_schedule(
    session: StreamingSession, frames, times: Sequence[float | None], on_frame=None, encode_batch: int | None = None
) -> Iterator[int]:
    """Push frames into ``session`` and yield each question's position when the stream reaches its time.

    A question at time ``q`` is yielded after every frame with timestamp ``<= q``
    and before any later frame is pushed, so whatever the caller does with the
    session then (ask, take a readout) sees nothing after ``q``. Questions without a
    time are yielded after the last frame. This is the one place that orders frames
    and questions, for inference (:func:`run_stream`) and training (``train/``) alike.

    Frames between two question times are encoded in batches of ``encode_batch``
    (:meth:`StreamingSession.push_frames`); a batch is pushed early when a question falls due,
    so batching changes nothing a question sees.

    Args:
        session: a fresh (or continuing) streaming session.
        frames: iterable of ``(frame (H, W, 3) uint8, timestamp_s)`` in time order.
        times: seconds (or None) of each question, in any order.
        on_frame: called with no argument after each frame is added (progress bars).
        encode_batch: frames encoded together (None: ``session.encode_batch``).

    Yields:
        Question positions (indices into ``times``), in time order.

    Raises:
        ValueError: for ``encode_batch`` below 1.
        VideoError: when the frame source fails part way, after yielding the questions
            up to the last decoded frame.
    """
    batch = session.encode_batch if encode_batch is None else encode_batch
    if batch < 1:
        raise ValueError(f"encode_batch must be at least 1, got {batch}")
    order = sorted(range(len(times)), key=lambda i: (times[i] is None, times[i] or 0.0))
    pending: list[tuple[np.ndarray, float]] = []

    def due(now: float | None) -> Iterator[int]:
        while order and (now is None or (times[order[0]] is not None and times[order[0]] < now)):
            yield order.pop(0)

    def flush() -> None:
        if pending:
            session.push_frames(pending)
            if on_frame is not None:
                for _ in pending:
                    on_frame()
            pending.clear()

    try:
        for frame, t in frames:
            if order and times[order[0]] is not None and times[order[0]] < t:
                flush()
                yield from due(t)
            pending.append((frame, t))
            if len(pending) >= batch:
                flush()
    except VideoError:
        flush()
        last = session.time if session.time is not None else -1.0
        yield from due(last + 1e-9)
        raise
    flush()
    yield from due(None)


def run_stream(
    session: StreamingSession,
    frames,
    questions: list[tuple[str, float | None]],
    max_new_tokens: int = 64,
    on_frame=None,
    ask=None,
    **generate_kwargs,
) -> StreamResult:
    """Push frames into ``session`` and ask each question when the stream reaches its time
    (see :func:`question_schedule`: nothing after a question's time reaches its answer).

    Args:
        session: a fresh (or continuing) streaming session.
        frames: iterable of ``(frame (H, W, 3) uint8, timestamp_s)`` in time order; closed (when it
            has ``close``: a :func:`pipelined` stream, whose decoding threads stop) when the stream
            ends, also when a question raises.
        questions: ``[(text, time in seconds or None)]``; questions without a time are
            asked after the last frame.
        max_new_tokens: generation budget per answer.
        on_frame: called with no argument after each frame (progress bars).
        ask: called as ``ask(position)`` instead of ``session.ask`` when given (an
            evaluation that records more than the answer); its result is stored.

    Returns:
        A :class:`StreamResult`. When the frame source raises :class:`VideoError`
        part way, the questions up to the last decoded frame are answered and
        the others are left out.
    """
    answers: dict[int, Answer] = {}
    try:
        for i in question_schedule(session, frames, [t for _, t in questions], on_frame):
            answers[i] = (ask(i) if ask is not None
                          else session.ask(questions[i][0], max_new_tokens=max_new_tokens, **generate_kwargs))
    except VideoError as e:
        stopped = e.stopped_at if e.stopped_at is not None else (session.time or 0.0)
        return StreamResult(answers, stopped_at=stopped, error=str(e))
    finally:  # a question that raised: stop decoding (and give torch its threads back) now, not at garbage collection
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    return StreamResult(answers)
