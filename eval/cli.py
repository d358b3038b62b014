"""``vl3mem eval`` / ``python -m eval`` / ``accelerate launch -m eval``: streaming evaluation.

Distributed: under ``accelerate launch --multi_gpu --num_processes N -m eval ...``
(also on a CPU-only machine, where the processes join a gloo group), or any
launcher that sets ``WORLD_SIZE`` (``torchrun``),
videos are sharded across processes (``videos[rank::world_size]``); each process
appends to its own shard file, and rank 0 merges the shards into
``predictions.jsonl`` and writes the summary once all processes are done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from videollama3.cli import (
    add_frame_arguments,
    add_memory_arguments,
    add_model_arguments,
    apply_torch_threads,
    check_run_arguments,
    load_spec_from_args,
    model_dtype,
)
from videollama3.cli import main as run
from videollama3.errors import UsageError, VideoError
from videollama3.options import check_output_path

from .benchmarks import BENCHMARKS, load_benchmark


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``eval``."""
    p.add_argument("--benchmark", required=True, choices=list(BENCHMARKS),
                   help="annotation format: " + "; ".join(f"{k}: {v.help}" for k, v in BENCHMARKS.items()))
    p.add_argument("--annotations", required=True, nargs="+", metavar="FILE",
                   help="annotation file(s) of that format, as published (several: one run, one report)")
    p.add_argument("--video-root", required=True,
                   help="folder the annotations' video paths (files or frame folders) are relative to")
    add_model_arguments(p)
    add_memory_arguments(p)
    p.add_argument("--fps", type=float, default=1.0, help="sampling rate where the annotations give none (default 1)")
    p.add_argument("--frame-rate", type=float, default=None,
                   help="frames per second of frame-folder videos whose annotation gives none")
    add_frame_arguments(p)
    p.add_argument("--output-dir", default="eval_out", help="predictions.jsonl, summary.json, report.md, plots")
    p.add_argument("--limit", type=int, help="the first N questions of the annotation files, in file order")
    p.add_argument("--no-model", action="store_true",
                   help="do not run the language model: measure evidence retention of the memory only")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--device", default=None, help="torch device (default: this process's accelerator, else cpu)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report bad records, videos that cannot be read and questions the model cannot take (a "
                        "prompt beyond its context), and go on instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_command(sub) -> None:
    """Add ``eval`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("eval", help="streaming benchmark: each question answered from the memory at its time")
    add_arguments(p)
    p.set_defaults(func=cmd_eval)


def process_group() -> tuple[int, int, Any, Any, str | None]:
    """``(rank, world_size, barrier, gather, device)``: accelerate's state when launched by it, else one
    process. ``gather(obj)`` is the list of every process's ``obj`` (picklable), in rank order, on each
    (accelerate's ``gather_object``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState
        from accelerate.utils import gather_object

        state = PartialState(cpu=not torch.cuda.is_available())  # gloo process group on CPU-only machines
        device = None if state.device.type == "cpu" else str(state.device)
        return state.process_index, state.num_processes, state.wait_for_everyone, \
            (lambda obj: gather_object([obj])), device
    return 0, 1, (lambda: None), (lambda obj: [obj]), None


def _check_run(output_dir: Path, settings: dict[str, Any], rank: int) -> None:
    """Refuse to mix runs with other settings in one folder (resume needs the same ones)."""
    path = output_dir / "run.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as e:  # empty, half-written, not UTF-8
            raise UsageError(f"{path} is damaged ({e.__class__.__name__}); remove it (and predictions.jsonl) to "
                             "start over, or use another --output-dir") from None
        if saved != settings:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise UsageError(f"{output_dir} holds a run with other settings ({', '.join(changed)}); "
                             "use another --output-dir, or the same settings to resume")
    elif rank == 0:  # atomically: another process may be reading it right now
        output_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(settings, indent=2))
        partial.replace(path)


@contextmanager
def output_lock(output_dir: Path, rank: int) -> Iterator[None]:
    """Hold an exclusive lock on ``output_dir`` for this process while the block runs (the system
    releases it if the process dies). Two evaluations appending to one folder would write every
    record twice.

    Raises:
        UsageError: when another evaluation holds it.
    """
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(output_dir / f".lock.rank{rank}", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another evaluation is writing to {output_dir}; wait for it to finish, or use "
                             "another --output-dir") from None
        yield
    finally:
        os.close(fd)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation; returns the exit status."""
    check_run_arguments(args)  # before the imports below (transformers' model code): a bad flag fails in 3 s, not 5
    from tqdm import tqdm

    from videollama3.loading import load_session

    from .report import write_outputs
    from .runner import PredictionStore, evaluate_video, first_of_each_id, read_records

    start = time.perf_counter()
    rank, world, barrier, gather, device = process_group()
    check_output_path(args.output_dir, "--output-dir", folder=True)
    threads = apply_torch_threads(args, args.device or device or "cpu")
    spec = load_spec_from_args(args)
    bench = load_benchmark(args.benchmark, args.annotations, args.video_root, args.skip_bad)
    if not bench.num_questions:
        raise UsageError(f"{args.annotations} holds no usable question" +
                         (f" ({len(bench.skipped)} records skipped)" if bench.skipped else "") + "; nothing to evaluate")
    skipped = list(bench.skipped)
    if args.limit is not None:
        bench.limit(args.limit)
    videos = bench.videos
    output_dir = Path(args.output_dir)
    annotations = [str(Path(a).resolve()) for a in args.annotations]
    settings = {"benchmark": args.benchmark, "annotations": annotations[0] if len(annotations) == 1 else annotations,
                "model": spec.model, "adapter": str(spec.checkpoint.path.resolve()) if spec.checkpoint else None,
                "memory": spec.memory, "memory_options": spec.memory_options, "fps": args.fps,
                "frame_tokens": args.frame_tokens, "no_model": args.no_model, "max_new_tokens": args.max_new_tokens}
    if args.frame_rate is not None:
        settings["frame_rate"] = args.frame_rate
    if args.dtype != "auto":  # only when given: a run of an earlier version resumes as it was
        settings["dtype"] = args.dtype
    _check_run(output_dir, settings, rank)
    with output_lock(output_dir, rank):
        session = load_session(spec, device=args.device or device or "cpu", dtype=model_dtype(args),
                               frame_tokens=args.frame_tokens)
        session.encode_batch = args.encode_batch or session.encode_batch
        if bench.system_prompt is not None:  # the benchmark's official evaluation sets its own
            session.processor.system_prompt = bench.system_prompt
        store = PredictionStore(output_dir, rank, world)
        unanswered: list[str] = []
        skipped_videos: list[str] = []
        stopped: list[str] = []  # why a video's frames stopped before its last questions
        streaming = time.perf_counter()
        with tqdm(unit="frame", desc=f"eval rank {rank}", disable=args.quiet or rank != 0, file=sys.stderr) as bar:
            for video in videos[rank::world]:
                try:
                    result = evaluate_video(session, video, args.fps, store, bench.format, args.no_model,
                                            args.max_new_tokens, on_frame=lambda: bar.update(1),
                                            skip_bad=args.skip_bad, decode_ahead=args.decode_ahead,
                                            frame_rate=args.frame_rate, threads=threads)
                except VideoError as e:
                    if not args.skip_bad:
                        raise VideoError(f"{e} (use --skip-bad to report it and go on)", e.path) from None
                    print(f"vl3mem: warning: skipped: {e}", file=sys.stderr)
                    skipped_videos.append(f"{e} ({len(video.questions)} questions not asked)")
                    unanswered += [q.id for q in video.questions]
                    continue
                if result["error"]:
                    print(f"vl3mem: warning: {result['error']}", file=sys.stderr)
                    stopped.append(result["error"])
                unanswered += result["unanswered"]
                skipped += result["skipped"]
        throughput = session.throughput(time.perf_counter() - streaming)
        # what every process skipped or left unanswered, not rank 0's alone (the shards hold the records)
        reports = gather({"skipped": skipped, "skipped_videos": skipped_videos, "stopped": stopped,
                          "unanswered": unanswered})
        barrier()
        if rank != 0:
            return 0
        skipped = list(dict.fromkeys(x for r in reports for x in r["skipped"]))  # load-time skips: every rank's
        skipped_videos, stopped, unanswered = ([x for r in reports for x in r[key]]
                                               for key in ("skipped_videos", "stopped", "unanswered"))
        records = store.merge() if world > 1 else read_records(output_dir / "predictions.jsonl")
    wanted = {q.id for v in videos for q in v.questions}
    records = first_of_each_id(r for r in records if r["id"] in wanted)
    meta = {**settings, "world_size": world, "wall_time_s": round(time.perf_counter() - start, 2),
            "skipped_records": skipped, "skipped_videos": skipped_videos, "streams_stopped": stopped,
            "unanswered": unanswered,
            "throughput": throughput}
    summary = write_outputs(records, meta, output_dir, bench.format)
    acc, ret = summary["accuracy"], summary["retention"]
    print(f"{summary['questions']} questions, {len(videos)} videos, memory {spec.memory}, {meta['wall_time_s']} s")
    if acc["scored"]:
        print(f"accuracy: micro {acc['micro']} %, macro {acc['macro']} %")
    if ret["questions"]:
        print(f"evidence retention ({ret['questions']} questions): kept as own entry {ret['kept_own_pct']} %, "
              f"kept at all {ret['kept_any_pct']} %, evidence weight {ret['weight_pct']} %")
    if skipped_videos:
        print(f"{len(skipped_videos)} videos could not be read and were skipped (see report.md)")
    print(f"report: {output_dir / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m eval ...`` (the options of ``vl3mem eval``)."""
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=cmd_eval)
    return run(argv, parser)
