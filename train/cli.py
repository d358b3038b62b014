"""``vl3mem train`` / ``python -m train`` / ``accelerate launch -m train``: fine-tune with memory.

Settings come from ``--config FILE.yaml`` (see :mod:`train.config`); ``--output-dir``,
``--max-steps``, ``--skip-bad`` and ``--set KEY=VALUE`` override the file.
"""

from __future__ import annotations

import argparse
import sys

from videollama3.cli import main as run


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train``."""
    p.add_argument("--config", required=True, help="training config (YAML), e.g. train/configs/tiny.yaml")
    p.add_argument("--output-dir", help="checkpoints and TensorBoard logs (overrides output_dir)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides max_steps)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in the output folder (same data order, optimizer state)")
    p.add_argument("--skip-bad", action="store_true", help="report bad training records and go on")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, dotted for nested ones: optimizer.lr=1e-4, data.video_root=DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_command(sub) -> None:
    """Add ``train`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("train", help="fine-tune (LoRA + FeatureAdapter) on streaming data, memory built as at inference")
    add_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Run the training; returns the exit status."""
    from .config import load_config, parse_overrides
    from .trainer import train

    overrides = parse_overrides(args.set)
    if args.output_dir is not None:
        overrides["output_dir"] = args.output_dir
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.skip_bad:
        overrides["data.skip_bad"] = True
    config = load_config(args.config, overrides)
    result = train(config, resume=args.resume, progress=not args.quiet)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    if result.losses:
        print(f"steps {result.first_step + 1}-{result.steps}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}, "
              f"{result.steps_per_second:.2f} steps/s")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")
    for line in result.skipped:
        print(f"vl3mem: skipped: {line}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train ...`` (the options of ``vl3mem train``)."""
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=cmd_train)
    return run(argv, parser)
