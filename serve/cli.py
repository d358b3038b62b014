"""``vl3mem serve``: the HTTP service and its page on one model (see :mod:`serve.app`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_command(sub) -> None:
    """Add ``serve`` to an ``add_subparsers()`` object."""
    from videollama3.cli import add_memory_arguments, add_model_arguments

    p = sub.add_parser("serve", help="an HTTP service with a browser page: many sessions on one model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--media-root", default=".", help="the only folder files may be opened from (default: here)")
    add_model_arguments(p)
    add_memory_arguments(p)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--frame-tokens", type=int, default=None, help="token budget per frame (default 144)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch threads for preprocessing, encoding and generation (default: torch's, one per core; "
                        "on the CPU, fewer leave the sessions' decoding threads a core)")
    p.add_argument("--max-sessions", type=int, default=8, help="sessions open at once (default 8)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest upload, MiB (default 200)")
    p.set_defaults(func=cmd_serve)


def build_manager(args: argparse.Namespace):
    """The :class:`~serve.sessions.SessionManager` of the command's model, memory, media root and limits;
    torch set to ``--torch-threads`` when given.

    Raises:
        UsageError: for a media root that is not a folder, or limits or ``--torch-threads`` below 1.
    """
    from videollama3.cli import load_spec_from_args, model_dtype
    from videollama3.errors import UsageError
    from videollama3.loading import load_session
    from videollama3.options import check_device
    from videollama3.preprocess import FRAME_TOKENS

    from .sessions import Limits, SessionManager

    check_device(args.device, "--device")
    if not Path(args.media_root).is_dir():
        raise UsageError(f"--media-root {args.media_root} is not a folder")
    if args.max_sessions < 1 or not args.max_upload_mb > 0:
        raise UsageError("--max-sessions must be at least 1 and --max-upload-mb positive")
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UsageError(f"--torch-threads must be a number of threads >= 1, got {args.torch_threads}")
    spec = load_spec_from_args(args)
    base = load_session(spec, device=args.device, dtype=model_dtype(args), frame_tokens=args.frame_tokens or FRAME_TOKENS)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    limits = Limits(max_sessions=args.max_sessions, max_upload_bytes=int(args.max_upload_mb * 2**20))
    return SessionManager(base, spec.memory, spec.memory_options, args.media_root, limits)


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model once and serve until interrupted."""
    import uvicorn

    from .app import create_app

    manager = build_manager(args)
    print(f"vl3mem: serving {args.media_root} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(create_app(manager), host=args.host, port=args.port, log_level="warning")
    return 0
