"""``vl3mem answer``: answer questions on a streaming video; the flags and error handling
every ``vl3mem`` command shares.

Bad input (missing or broken video, bad question time, unknown memory, an
unreachable model) exits with status 2 and one line on stderr. A video whose
decoding breaks off half way answers the questions it reached, reports where
decoding stopped, and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import QuestionError, UsageError, VideoError, report_errors
from .options import check_device, check_output_path


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    # peft still calls transformers' old name for it; nothing for the user to act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    transformers.logging.disable_progress_bar()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


class _Question(argparse.Action):
    """``-q TEXT``: a new question, asked at the end unless an ``--at`` follows it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        namespace.asked = [*namespace.asked, [value, None]]


class _At(argparse.Action):
    """``--at SECONDS``: the time of the ``-q`` just before it (a reader of the command line pairs them so)."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        if not namespace.asked:
            namespace.pairing_error = f"--at {value} comes before any -q; write -q TEXT --at SECONDS"
        elif namespace.asked[-1][1] is not None:
            namespace.pairing_error = (f"-q {namespace.asked[-1][0]!r} has two --at times "
                                       f"({namespace.asked[-1][1]} and {value}); give each -q one --at")
        else:
            namespace.asked[-1][1] = value


def _read_questions(args: argparse.Namespace, required: bool = True) -> list[tuple[str, float | None]]:
    """``[(question, time or None)]`` from ``-q/--at`` (each ``--at`` the time of the ``-q`` before it)
    and ``--questions``.

    Raises:
        UsageError: for an ``--at`` without its ``-q``, or no question at all.
        QuestionError: for a bad questions file (naming the line: not a JSON object, a field other than
            ``question`` and ``time``, a time that is not seconds) or a question with a special token.
    """
    from .questions import check_fields, read_text, text_field

    if args.pairing_error:
        raise UsageError(args.pairing_error)
    questions: list[tuple[str, float | None]] = []
    for text, t in args.asked:
        try:
            questions.append((text_field(text, "the question"), t))
        except ValueError as e:
            raise QuestionError(f"-q {text!r}: {e}") from None
    if args.questions:
        for n, line in enumerate(read_text(args.questions).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError(f"a {type(record).__name__}")
                check_fields(record, ("question", "time"))  # a misspelt time ("at") would ask it at the end
                t = record.get("time")
                if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
                    raise TypeError(f"'time' must be seconds or null, got {t!r}")
                questions.append((text_field(record.get("question"), "'question'"), t))
            except (json.JSONDecodeError, TypeError, ValueError) as e:
                raise QuestionError(
                    f"{args.questions} line {n}: expected a JSON object with 'question' (and optional 'time' in "
                    f"seconds): {e}"
                ) from None
    if not questions and required:
        raise UsageError("no question given; use -q TEXT (and --at SECONDS) or --questions FILE.jsonl")
    return questions


def load_spec_from_args(args: argparse.Namespace):
    """The :class:`~videollama3.loading.LoadSpec` of ``--model``, ``--adapter`` and the memory flags;
    its warnings go to stderr.

    Raises:
        UsageError, MemoryConfigError, CheckpointError: see :func:`~videollama3.loading.resolve_load_spec`.
    """
    from .loading import resolve_load_spec
    from .options import parse_memory_options

    spec = resolve_load_spec(args.model, args.memory, parse_memory_options(args.memory_option), args.memory_config,
                             getattr(args, "adapter", None), system_prompt=not args.no_system_prompt)
    for warning in spec.warnings:
        print(f"vl3mem: warning: {warning}", file=sys.stderr)
    return spec


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _print_answer(a: dict[str, Any]) -> None:
    print(f"\n[{a['time']:.1f}s] Q: {a['question']}")
    if a.get("note"):
        print(f"  ({a['note']})")
    print(f"  A: {a['answer']}")
    print(f"  latency {a['latency_s'] * 1000:.0f} ms, {a['visual_tokens']} visual tokens, {a['frames_seen']} frames seen")
    for name, times in a["tiers"].items():
        shown = ", ".join(f"{t[0]:.1f}-{t[1]:.1f}s" if isinstance(t, list) else f"{t:.1f}s" for t in times)
        print(f"  {name:>6}: {shown or '-'}")


def cmd_answer(args: argparse.Namespace) -> int:
    """Stream a video, answer each question when the stream reaches its time."""
    # the flags and the video before the imports below (transformers' model code): a bad flag or a missing
    # video fails in 3 s, not 5.5
    check_run_arguments(args)
    from .live import is_live_source
    from .video import open_video

    if args.output:
        check_output_path(args.output, "--output")
    live = is_live_source(args.video) or args.realtime or args.interactive
    # one open: the duration checks the questions, then the frames stream
    video = None if live else open_video(args.video, args.frame_rate)
    try:
        from tqdm import tqdm

        from .loading import load_session
        from .session import check_question_time, pipelined, run_stream

        threads = apply_torch_threads(args)
        spec = load_spec_from_args(args)
        if video is None:
            return _answer_live(args, spec, threads)
        info = video.info
        questions = [(q, check_question_time(t, info.duration) if t is not None else None)
                     for q, t in _read_questions(args)]
        session = load_session(spec, device=args.device, dtype=model_dtype(args), frame_tokens=args.frame_tokens)
        session.encode_batch = args.encode_batch or session.encode_batch
    except BaseException:
        if video is not None:
            video.close()
        raise
    expected = math.ceil(info.duration * args.fps) if info.duration else None
    with tqdm(total=expected, unit="frame", desc="streaming", disable=args.quiet, file=sys.stderr) as bar:
        frames = video.frames(fps=args.fps)
        started = time.perf_counter()
        result = run_stream(session, pipelined(session, frames, args.decode_ahead, threads), questions,
                            args.max_new_tokens, on_frame=lambda: bar.update(1))
        wall = time.perf_counter() - started
    stopped_at = result.stopped_at
    if result.error:
        print(f"vl3mem: warning: {result.error}", file=sys.stderr)
    answers = {i: {**a.to_dict(), "asked_at": questions[i][1]} for i, a in result.answers.items()}

    ordered = [answers[i] for i in sorted(answers)]
    for a in ordered:
        _print_answer(a)
    unanswered = [{"question": q, "asked_at": t} for i, (q, t) in enumerate(questions) if i not in answers]
    for u in unanswered:
        at, before = ("end", "the end of the video") if u["asked_at"] is None else (f"{u['asked_at']:.1f}s", "this time")
        print(f"\n[{at}] Q: {u['question']}\n  not answered: decoding stopped at {stopped_at:.2f}s, before {before}")
    if args.output:
        report = {
            "video": str(args.video), "duration_s": info.duration, "model": spec.model,
            "dtype": str(session.model.model.dtype).removeprefix("torch."),
            "adapter": str(spec.checkpoint.path) if spec.checkpoint else None, "memory": spec.memory,
            "memory_options": spec.memory_options, "memory_stats": _json_safe(session.memory.stats()),
            "fps": args.fps, "frames_encoded": session.frames_seen, "throughput": session.throughput(wall),
            "answers": ordered,
            "unanswered": unanswered, "decoding_stopped_at": stopped_at,
        }
        try:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(report, indent=2))
        except OSError as e:  # the answers are printed above: nothing computed is lost
            raise UsageError(f"cannot write --output {args.output} ({e.strerror}); the answers are printed above") from None
    return 1 if stopped_at is not None else 0


QUESTION_LINE_BYTES = 1 << 16
"""Longest line ``--interactive`` takes as a question (64 KiB); a longer one is skipped, never held whole."""


def question_lines(stream: BinaryIO, warn: Callable[[str], None]) -> Iterator[str]:
    """The non-blank lines of a question stream (a terminal, a file, a FIFO), stripped, as they arrive.

    A line that is not UTF-8 text, or longer than :data:`QUESTION_LINE_BYTES`, is skipped with
    ``warn(message)`` naming its line number: one bad line never ends the questions after it, and a
    stream with no newline never fills the memory.
    """
    number = 0
    while raw := stream.readline(QUESTION_LINE_BYTES + 1):
        number += 1
        if len(raw) > QUESTION_LINE_BYTES and not raw.endswith(b"\n"):  # read the rest of it away
            while (rest := stream.readline(QUESTION_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            warn(f"question line {number} is longer than {QUESTION_LINE_BYTES} bytes; skipped")
            continue
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            warn(f"question line {number} is not UTF-8 text (byte {e.start + 1}); skipped")
            continue
        if line:
            yield line


def _interactive_questions(path: str | None) -> Any:
    """A queue the lines of ``path`` (or standard input) arrive in, as they are typed (read by a
    daemon thread: it ends with the run), through :func:`question_lines`.

    Raises:
        UsageError: when ``path`` cannot be opened (a FIFO is opened by the thread: opening one waits
            for its writer).
    """
    import queue
    import stat
    import threading

    lines: queue.Queue = queue.Queue()
    stream: BinaryIO | None = None  # a FIFO is opened by the thread: opening one waits for its writer
    if path is None:
        stream = sys.stdin.buffer
    elif not (Path(path).exists() and stat.S_ISFIFO(Path(path).stat().st_mode)):
        try:
            stream = open(path, "rb")  # noqa: SIM115  (read by the thread, closed when it ends)
        except OSError as e:
            raise UsageError(f"cannot read --ask-from {path} ({e.strerror}); give a file or a FIFO") from None

    def warn(message: str) -> None:
        print(f"vl3mem: warning: {message}", file=sys.stderr)

    def read() -> None:
        try:
            with (open(path, "rb") if stream is None else stream) as source:  # a FIFO stays open
                for line in question_lines(source, warn):
                    lines.put(line)
        except OSError as e:  # a FIFO that cannot be opened, a terminal that went away: the stream goes on
            warn(f"questions can no longer be read from {path or 'standard input'} ({e.strerror or e}); the stream "
                 "goes on without them")

    threading.Thread(target=read, name="vl3mem-questions", daemon=True).start()
    return lines


def _answer_live(args: argparse.Namespace, spec, threads: int | None) -> int:
    """``vl3mem answer`` on a live source (or a file at its own pace, or with ``--interactive``): frames
    from a :class:`~videollama3.live.LiveSource`, questions at their ``--at`` stream times and, with
    ``--interactive``, whenever a line arrives, each answered from the memory at that moment; torch at
    ``threads`` (:func:`apply_torch_threads`) while the source runs."""
    import queue

    from .live import LiveSource, is_live_source
    from .loading import load_session
    from .questions import text_field
    from .session import pipelined, run_stream

    if args.video == "-" and args.interactive and not args.ask_from:
        raise UsageError("the video comes on standard input, so questions cannot: give --ask-from FILE (a file or "
                         "a FIFO that a script writes lines to)")
    questions = _read_questions(args, required=not args.interactive)
    source = LiveSource(args.video, fps=args.fps, realtime=args.realtime,
                        drop=args.realtime or is_live_source(args.video),
                        read_timeout=args.read_timeout, duration=args.duration, frame_rate=args.frame_rate)
    try:
        typed = _interactive_questions(args.ask_from) if args.interactive else None  # before a model loads
        session = load_session(spec, device=args.device, dtype=model_dtype(args), frame_tokens=args.frame_tokens)
    except BaseException:
        source.close()
        raise
    session.encode_batch = 1  # answers come at once: frames are not held back for a batch
    answered: list[dict[str, Any]] = []

    def answer(text: str) -> None:
        try:
            a = session.ask(text_field(text, "the question"), max_new_tokens=args.max_new_tokens)
        except (ValueError, QuestionError) as e:
            print(f"vl3mem: question not asked: {e}", file=sys.stderr)
            return
        answered.append(a.to_dict())
        _print_answer(answered[-1])

    def answer_typed() -> None:
        """Answer the lines typed so far, from the memory now (once it holds a frame)."""
        while typed is not None and session.frames_seen:
            try:
                answer(typed.get_nowait())
            except queue.Empty:
                return

    def frames():
        for item in source:
            answer_typed()
            yield item

    started = time.perf_counter()
    status = _LiveStatus(session, source, enabled=not args.quiet and sys.stderr.isatty())
    interrupted = False
    try:
        with status:
            result = run_stream(session, pipelined(session, frames(), 0, threads), questions, args.max_new_tokens,
                                on_frame=status.update)
        for i in sorted(result.answers):
            answered.append({**result.answers[i].to_dict(), "asked_at": questions[i][1]})
            asked_at, last = questions[i][1], session.time or 0.0
            if asked_at is not None and asked_at >= last + 1 / args.fps:  # the stream ended before its time came
                answered[-1]["note"] = (f"asked for {asked_at:.1f}s, but the stream ended first (its last frame at "
                                        f"{last:.1f}s): answered from the final memory")
            _print_answer(answered[-1])
        answer_typed()  # lines typed after the last frame: from the final memory
        error = result.error
    except KeyboardInterrupt:
        interrupted, error = True, None
    finally:
        source.close()
    stats = source.stats
    print(f"\n{session.frames_seen} frames seen ({stats.dropped} dropped while encoding was behind, "
          f"{stats.decoded} decoded), {len(answered)} questions answered, stream time {session.time or 0.0:.1f} s"
          + (" (interrupted)" if interrupted else ""))
    if args.output:
        report = {"source": args.video, "model": spec.model, "dtype": str(session.model.model.dtype).removeprefix("torch."),
                  "memory": spec.memory, "fps": args.fps,
                  "frames_encoded": session.frames_seen, "live": vars(stats), "answers": answered,
                  "throughput": session.throughput(time.perf_counter() - started), "error": error}
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(_json_safe(report), indent=2))
    if error:
        if not answered:
            raise VideoError(error, args.video)
        print(f"vl3mem: warning: {error}", file=sys.stderr)
        return 1
    return 0


class _LiveStatus:
    """A status line on the terminal (rich): stream time, frames/s, drops, what each tier holds."""

    def __init__(self, session, source, enabled: bool) -> None:
        self.session, self.source, self.enabled = session, source, enabled
        self.started = time.perf_counter()
        self._live = None

    def __enter__(self):
        if self.enabled:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # rich comes with the demo extra
                self.enabled = False
            else:
                self._live = Live("", console=Console(stderr=True), refresh_per_second=4, transient=True)
                self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self) -> None:
        if self._live is None:
            return
        from .session import tier_layout

        rate = self.session.frames_seen / max(time.perf_counter() - self.started, 1e-9)
        tiers = "  ".join(f"{name} {len(held)}" for name, held in tier_layout(self.session.memory).items())
        self._live.update(f"t {self.session.time or 0.0:.1f} s  {rate:.1f} frames/s  dropped "
                          f"{self.source.stats.dropped}  |  {tiers}")


def cmd_convert(args: argparse.Namespace) -> int:
    """Write a native VideoLLaMA3 folder from a DAMO remote-code checkpoint (folder or hub id)."""
    import torch

    from .conversion import convert_checkpoint
    from .loading import local_checkpoint

    dtype = getattr(torch, args.dtype) if args.dtype else None
    dst = convert_checkpoint(local_checkpoint(args.src), args.dst, dtype=dtype, progress=not args.quiet)
    print(f"wrote {dst}: load it with VideoLlama3ForConditionalGeneration.from_pretrained({str(dst)!r}) "
          f"or --model {dst}")
    return 0


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--adapter`` and ``--no-system-prompt`` (shared by answer and eval)."""
    p.add_argument("--model", default=None,
                   help="'tiny', a hub id or a local folder, native or DAMO's remote-code layout (default: the "
                        "--adapter's base model, else DAMO-NLP-SG/VideoLLaMA3-7B; DAMO-NLP-SG/VideoLLaMA3-2B for "
                        "small GPUs)")
    p.add_argument("--adapter", metavar="DIR",
                   help="fine-tuned checkpoint from vl3mem train (or its output folder: the latest checkpoint), "
                        "loaded on top of the model, with the memory it was trained with unless --memory says otherwise")
    p.add_argument("--no-system-prompt", action="store_true",
                   help="drop the system prompt a DAMO checkpoint was trained with (on by default for them)")
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                   help="the model's weights and computation: auto (default) is bfloat16 on a CUDA GPU and float32 "
                        "on the CPU; float16 for GPUs without bfloat16 (before Ampere), bfloat16 on the CPU halves "
                        "the memory of a real checkpoint")


DTYPES = ("float32", "bfloat16", "float16")
"""The ``torch`` dtypes ``--dtype`` names (``answer``, ``eval``, ``serve`` add ``auto``; ``convert`` casts to one)."""


def model_dtype(args: argparse.Namespace) -> Any:
    """The ``torch.dtype`` that ``--dtype`` names, or None for ``auto`` (the device's default,
    :func:`~videollama3.loading.load_checkpoint`)."""
    import torch

    return None if args.dtype == "auto" else getattr(torch, args.dtype)


def add_frame_arguments(p: argparse.ArgumentParser) -> None:
    """``--frame-tokens``, ``--decode-ahead`` and ``--encode-batch`` (shared by answer and eval)."""
    from .preprocess import FRAME_TOKENS

    p.add_argument("--frame-tokens", type=int, default=FRAME_TOKENS,
                   help=f"token budget per frame; frames keep their aspect ratio within it, as the native video "
                        f"processor resizes them (default {FRAME_TOKENS}: a 16:9 frame is a 9x16 token grid)")
    p.add_argument("--decode-ahead", type=int, default=8, metavar="N",
                   help="decode and preprocess in two background threads, each up to N frames ahead of encoding "
                        "(default 8; 0: decode, preprocess and encode in turn)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch threads for preprocessing, encoding and generation (default: torch's, one per core; "
                        "on the CPU with --decode-ahead, one core is left to the decoding threads until the video "
                        "ends)")
    p.add_argument("--encode-batch", type=int, default=None, metavar="N",
                   help="frames between two question times encoded in batches of N, with the same tokens as one "
                        "at a time (default 8; 32 on a CUDA GPU)")


def check_run_arguments(args: argparse.Namespace) -> None:
    """Check the numbers and device shared by ``answer`` and ``eval`` before any work.

    Raises:
        UsageError: naming the flag: ``--frame-tokens`` below a 2x2 grid, ``--fps`` or ``--frame-rate``
            not positive and finite, ``--max-new-tokens`` below 1, ``--limit`` below 0, a ``--device`` torch does not
            know or CUDA where there is none.
    """
    from .preprocess import MIN_FRAME_TOKENS

    if args.frame_tokens < MIN_FRAME_TOKENS:
        raise UsageError(f"--frame-tokens must be at least {MIN_FRAME_TOKENS} (a 2x2 token grid), got {args.frame_tokens}")
    if not 0 < args.fps < math.inf:
        raise UsageError(f"--fps must be a positive, finite number of frames per second, got {args.fps}")
    if args.frame_rate is not None and not 0 < args.frame_rate < math.inf:
        raise UsageError(f"--frame-rate must be a positive, finite number of frames per second, got {args.frame_rate}")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    for flag in ("duration", "read_timeout"):
        value = getattr(args, flag, None)
        if value is not None and not 0 < value < math.inf:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive, finite number of seconds, got {value}")
    if args.encode_batch is not None and args.encode_batch < 1:
        raise UsageError(f"--encode-batch must be a number of frames >= 1, got {args.encode_batch}")
    if args.decode_ahead < 0:
        raise UsageError(f"--decode-ahead must be a number of frames >= 0, got {args.decode_ahead}")
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UsageError(f"--torch-threads must be a number of threads >= 1, got {args.torch_threads}")
    if getattr(args, "limit", None) is not None and args.limit < 0:
        raise UsageError(f"--limit must be a number of questions >= 0, got {args.limit}")
    if args.device is not None:
        check_device(args.device, "--device")


def apply_torch_threads(args: argparse.Namespace, device: str | None = None) -> int | None:
    """Set torch's intra-op threads to ``--torch-threads`` when given (for the whole run), and return the
    threads to encode with while frames are decoded ahead (for :func:`~videollama3.session.pipelined`):
    None with ``--torch-threads`` or off the CPU, else :func:`~videollama3.video.encoder_threads` for
    ``device`` (default ``--device``), a core left to the decoding threads."""
    import torch

    from .video import encoder_threads

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
        return None
    return encoder_threads(device or args.device, args.decode_ahead)


def add_memory_arguments(p: argparse.ArgumentParser) -> None:
    """``--memory``, ``--memory-option``, ``--memory-config`` (shared by answer, eval and train)."""
    from .options import memory_names

    p.add_argument("--memory", default=None,
                   help=f"memory backend: {', '.join(memory_names())} (default hierarchical; none: every frame, "
                        "no FeatureAdapter: the native model)")
    p.add_argument("--memory-option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. num_recent=4 or memory_capacities=8,4,1 (repeatable)")
    p.add_argument("--memory-config", metavar="FILE",
                   help="YAML/JSON file: {memory: NAME, options: {...}} (command-line flags win)")


def add_commands(sub) -> None:
    """Add ``answer`` and ``convert`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("answer", help="answer questions on a video while it streams")
    p.add_argument("video", metavar="SOURCE",
                   help="video file (anything FFmpeg reads), a folder of numbered images (with --frame-rate), a URL "
                        "(rtsp://, http(s)://, udp://, HLS), a camera (/dev/video0) or - (a stream on standard input)")
    p.add_argument("-q", "--question", action=_Question, dest="asked", help="question text (repeatable)")
    p.add_argument("--at", action=_At, type=float, dest="asked",
                   help="time in seconds of the -q just before it (a question without one is asked at the end)")
    p.set_defaults(asked=[], pairing_error=None)
    p.add_argument("--questions", help="JSONL file of {\"question\": ..., \"time\": seconds (optional)}")
    add_model_arguments(p)
    add_memory_arguments(p)
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--frame-rate", type=float, default=None,
                   help="frames per second the images of a frame-folder SOURCE were taken at (required for a folder)")
    live = p.add_argument_group("live sources")
    live.add_argument("--interactive", action="store_true",
                      help="read questions from the terminal (or --ask-from) while the stream plays; each is answered "
                           "from the memory at the moment it arrives")
    live.add_argument("--ask-from", metavar="FILE", help="with --interactive: read question lines from FILE (a FIFO)")
    live.add_argument("--realtime", action="store_true", help="play a file at its own pace, as a live source")
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of stream time")
    live.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                      help="a source that sends nothing for S seconds has stopped (default 10)")
    add_frame_arguments(p)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--output", help="write the answers as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_answer)
    c = sub.add_parser("convert", help="write a native VideoLLaMA3 folder from a DAMO remote-code checkpoint")
    c.add_argument("src", help="DAMO checkpoint: a local folder or a hub id (e.g. DAMO-NLP-SG/VideoLLaMA3-7B)")
    c.add_argument("dst", help="folder to write (new, or empty)")
    c.add_argument("--dtype", choices=DTYPES, help="cast the weights (default: keep)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    """``vl3mem`` with this layer's commands (``answer``, ``convert``); the console script
    (:mod:`vl3mem.cli`) adds ``eval``, ``train`` and ``bench``."""
    parser = argparse.ArgumentParser(prog="vl3mem", description="Streaming video questions with VideoLLaMA3 and a bounded memory.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse ``argv`` with ``parser`` (default :func:`build_parser`) and run the command.

    Bad input exits with status 2 and one line on stderr (:func:`report_errors`); returns the exit status.
    """
    args = (parser or build_parser()).parse_args(argv)
    _quiet_libraries()
    return report_errors(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
