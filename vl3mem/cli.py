"""``vl3mem``: ``answer`` and ``bench`` (videollama3), ``eval`` (eval), ``train`` (train).

This module sits above every layer, so the layers below never import upwards.
"""

from __future__ import annotations

import argparse
import sys

from eval.cli import add_command as add_eval
from train.cli import add_command as add_train
from videollama3.cli import add_commands
from videollama3.cli import main as run


def build_parser() -> argparse.ArgumentParser:
    """The full ``vl3mem`` parser."""
    parser = argparse.ArgumentParser(prog="vl3mem", description="Streaming video questions with VideoLLaMA3 and a bounded memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_eval(sub)
    add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vl3mem`` console script; returns the exit status."""
    return run(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
