"""``vl3mem``: ``answer`` (videollama3), ``eval`` (eval), ``train`` (train), ``bench`` (benchmarks).

This module sits above every layer, so the layers below never import upwards.
"""

from __future__ import annotations

import argparse
import sys

from eval.cli import add_command as add_eval
from serve.cli import add_command as add_serve
from train.cli import add_command as add_train
from videollama3.cli import add_commands
from videollama3.cli import main as run


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark: ``memory`` (add time of the hierarchical bank; ``--all``: every backend on
    real video), ``stream`` (question latency, memory vs naive re-encoding), ``pipeline`` (time per
    stage, sequential vs decoding ahead), ``encode`` (time per frame by batch size) or ``serve``
    (concurrent sessions)."""
    if args.target == "memory" and "--all" in args.rest:
        from benchmarks.backends import main as bench_backends

        bench_backends([a for a in args.rest if a != "--all"])
    elif args.target == "memory":
        from benchmarks.memory import main as bench_memory

        bench_memory(args.rest)
    elif args.target == "pipeline":
        from benchmarks.pipeline import main as bench_pipeline

        bench_pipeline(args.rest)
    elif args.target == "encode":
        from benchmarks.encode import main as bench_encode

        bench_encode(args.rest)
    elif args.target == "serve":
        from benchmarks.serve import main as bench_serve

        bench_serve(args.rest)
    else:
        from benchmarks.stream import main as bench_stream

        bench_stream(args.rest)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``vl3mem`` parser."""
    parser = argparse.ArgumentParser(prog="vl3mem", description="Streaming video questions with VideoLLaMA3 and a bounded memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_eval(sub)
    add_train(sub)
    add_serve(sub)
    b = sub.add_parser("bench", help="benchmarks: memory (per-frame add; --all: every backend on real video), "
                                     "stream (question latency), pipeline (time per stage, decoding ahead), "
                                     "encode (time per frame by batch size) or serve (concurrent sessions on one "
                                     "served model)")
    b.add_argument("target", choices=["memory", "stream", "pipeline", "encode", "serve"])
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see --help after the target)")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vl3mem`` console script; returns the exit status."""
    return run(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
