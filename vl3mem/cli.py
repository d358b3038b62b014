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

BENCHMARKS = {
    "memory": "add time of the hierarchical bank; --all: every backend on real video",
    "stream": "question latency, memory vs naive re-encoding",
    "pipeline": "time per stage, sequential vs decoding ahead",
    "encode": "time per frame by batch size",
    "head": "the language-model head only where its logits are read: prefill and training step",
    "serve": "concurrent sessions on one served model",
}
"""``vl3mem bench TARGET``: each target is ``benchmarks/TARGET.py``'s ``main`` (``memory --all``: ``backends.py``)."""


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark of :data:`BENCHMARKS` with the options after its name."""
    import importlib

    module, rest = args.target, args.rest
    if module == "memory" and "--all" in rest:
        module, rest = "backends", [a for a in rest if a != "--all"]
    importlib.import_module(f"benchmarks.{module}").main(rest)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``vl3mem`` parser."""
    parser = argparse.ArgumentParser(prog="vl3mem", description="Streaming video questions with VideoLLaMA3 and a bounded memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_eval(sub)
    add_train(sub)
    add_serve(sub)
    b = sub.add_parser("bench", help="benchmarks: " + "; ".join(f"{k} ({v})" for k, v in BENCHMARKS.items()))
    b.add_argument("target", choices=list(BENCHMARKS))
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see --help after the target)")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vl3mem`` console script; returns the exit status."""
    return run(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
