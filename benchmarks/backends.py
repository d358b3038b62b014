"""Every memory backend on real video (``vl3mem bench memory --all``).

Each video is decoded at ``--fps`` and every frame encoded once by the model
(the tiny one by default); the same tokens, with the raw frames, are then streamed through each
registered backend with its default options, and through ``significance`` with the pixel
criteria ``pixel`` and ``ssim`` (``--backends`` takes ``NAME`` or ``NAME:KEY=VALUE:...``). A question is simulated every
``--ask-every`` seconds of stream time as :meth:`StreamingSession.ask` does it
(one readout, then ``on_question``), outside the timer.

Prints, per backend and video: frames offered, frames stored, entries and
visual tokens at the end, bytes held, mean and p95 time per ``add``; writes a
PNG of tokens held over the stream per backend (``--plot``) and optionally the
numbers as JSON (``--json``).

With ``--evidence FILE`` (our JSONL with evidence windows; ``eval/data/dev.jsonl`` by default) it
also compares what each backend keeps of the evidence: the same encoded frames of each annotated
video are streamed through every backend and, at each question's time, the readout is judged as
``vl3mem eval --no-model`` judges it: evidence kept as its own entry, kept at all, and the evidence
weight (:func:`eval.runner.evidence_weight`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from memory_bank import MEMORY_BACKENDS, build_memory
from videollama3.loading import load_model
from videollama3.modeling import VideoLlama3WithMemory
from videollama3.options import check_device, parse_pairs
from videollama3.preprocess import preprocess_frames
from videollama3.video import iter_frames

from . import BenchmarkInputError, add_video_arguments, device_sync, existing_video, run_as_script, sample_video

DEFAULT_VIDEOS = ["vtest.avi", "trailer_bbb.mp4"]
PIXEL_VARIANTS = ["significance:criterion=pixel", "significance:criterion=ssim"]
"""Backends compared beside the registered ones with their defaults: the pixel criteria, which read the raw frame."""


def build_backend(spec: str, mm_hidden_size: int):
    """A fresh backend from ``NAME`` or ``NAME:KEY=VALUE:...`` (values as ``--memory-option`` takes them).

    Raises:
        BenchmarkInputError: for an item that is not ``key=value``.
        MemoryConfigError: for an unknown backend or option, or a bad value.
    """
    name, *pairs = spec.split(":")
    options = parse_pairs(pairs, "--backends", "significance:criterion=ssim", BenchmarkInputError)
    return build_memory(name, mm_hidden_size=mm_hidden_size, **options)


def encode_video(wrapped: VideoLlama3WithMemory, path: str | Path, fps: float
                 ) -> list[tuple[torch.Tensor, float, np.ndarray]]:
    """``[(tokens (n, C), timestamp_s, frame (H, W, 3) uint8)]`` for every frame sampled at ``fps``, each
    encoded once (the raw frame kept for backends that compare pixels)."""
    out = []
    for frame, t in iter_frames(path, fps=fps):
        pixel_values, grid_thw, merge_sizes = preprocess_frames(frame, patch_size=wrapped.patch_size,
                                                                dtype=wrapped.vision_dtype)
        (tokens,) = wrapped.encode_frames(pixel_values, grid_thw, merge_sizes)
        out.append((tokens, t, frame))
    return out


def run_backend(wrapped: VideoLlama3WithMemory, spec: str, frames: list[tuple[torch.Tensor, float, np.ndarray]],
                ask_every: float) -> dict:
    """Stream ``frames`` through a fresh backend ``spec`` (:func:`build_backend`); return its numbers and
    token curve."""
    memory = build_backend(spec, wrapped.memory_width)
    sync = device_sync(wrapped.device)
    add_ms, tokens_held, stored, next_ask = [], [], 0, ask_every
    for i, (tokens, t, frame) in enumerate(frames):
        sync()
        t0 = time.perf_counter()
        stored += bool(memory.add(tokens, i, t, frame=frame))
        sync()
        add_ms.append((time.perf_counter() - t0) * 1000)
        if ask_every > 0 and t >= next_ask:
            memory.readout()
            memory.on_question(i)
            next_ask += ask_every
        tokens_held.append(memory.stats()["tokens"])
    stats = memory.stats()
    return {
        "frames": len(frames), "frames_stored": stored, "entries": stats["entries"], "tokens": stats["tokens"],
        "bytes": stats["bytes"], "mean_add_ms": float(np.mean(add_ms)), "p95_add_ms": float(np.quantile(add_ms, 0.95)),
        "tokens_held": tokens_held, "times": [t for _, t, _ in frames],
    }


def plot(results: dict, path: str | Path) -> None:
    """Tokens held over stream time, one panel per video, one line per backend (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = list(results)
    fig, axes = plt.subplots(1, len(videos), figsize=(6 * len(videos), 4), squeeze=False)
    for ax, video in zip(axes[0], videos):
        for name, r in results[video].items():
            ax.plot(r["times"], r["tokens_held"], label=name, drawstyle="steps-post")
        ax.set_yscale("log")
        ax.set_title(video)
        ax.set_xlabel("stream time (s)")
        ax.set_ylabel("visual tokens held")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evidence_by_backend(wrapped: VideoLlama3WithMemory, backends: list[str], annotations: str | Path,
                        video_root: str | Path, fps: float) -> dict[str, dict]:
    """``{backend: {"questions", "kept_own_pct", "kept_any_pct", "weight_pct"}}`` over the questions
    with an evidence window in ``annotations`` (our JSONL), each video encoded once.

    Raises:
        AnnotationError: for a file that cannot be read or holds a bad record.
    """
    from eval.benchmarks import load_benchmark
    from eval.runner import retention

    rows: dict[str, list] = {b: [] for b in backends}
    for video in load_benchmark("jsonl", annotations, video_root).videos:
        frames = encode_video(wrapped, video.video, video.fps or fps)
        questions = [q for q in video.questions if q.evidence]
        for backend in backends:
            memory = build_backend(backend, wrapped.memory_width)
            pending = list(questions)
            for i, (tokens, t, frame) in enumerate([*frames, (None, float("inf"), None)]):
                while pending and pending[0].time < t:
                    q = pending.pop(0)
                    entries = memory.readout()
                    memory.on_question(memory.last_frame_index)
                    rows[backend].append(retention(entries, memory.memory_tier_names, q.evidence))
                if tokens is not None:
                    memory.add(tokens, i, t, frame=frame)
    pct = lambda values: round(100 * sum(values) / len(values), 2) if values else None  # noqa: E731
    return {b: {"questions": len(r), "kept_own_pct": pct([x["kept_own"] for x in r]),
                "kept_any_pct": pct([x["kept_any"] for x in r]), "weight_pct": pct([x["weight"] for x in r])}
            for b, r in rows.items()}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the plot; return the numbers."""
    parser = argparse.ArgumentParser(prog="vl3mem bench memory --all", description=__doc__.split("\n")[0])
    add_video_arguments(parser, DEFAULT_VIDEOS, fps=2.0)
    parser.add_argument("--ask-every", type=float, default=10.0, help="seconds between simulated questions (0: none)")
    parser.add_argument("--backends", nargs="+", default=[*MEMORY_BACKENDS, *PIXEL_VARIANTS],
                        help="NAME or NAME:KEY=VALUE:... (default: every registered backend, and significance "
                             "with the pixel criteria)")
    parser.add_argument("--plot", default="bench_memory_backends.png", help="PNG of tokens held over the stream")
    parser.add_argument("--json", help="write the numbers to this JSON file")
    parser.add_argument("--evidence", default=str(Path(__file__).resolve().parents[1] / "eval" / "data" / "dev.jsonl"),
                        help="our JSONL with evidence windows: compare what each backend keeps of it ('' : skip)")
    parser.add_argument("--video-root", default=None,
                        help="folder of --evidence's videos (default: data/videos, else the folder of the first --videos)")
    args = parser.parse_args(argv)
    check_device(args.device, "--device")
    for video in args.videos:
        existing_video(video, "--videos")
    for spec in args.backends:  # a bad name or option fails before any video is decoded
        build_backend(spec, 8)

    model, _ = load_model(args.model, device=args.device)
    wrapped = VideoLlama3WithMemory(model)  # encodes only: no adapter
    results: dict[str, dict] = {}
    print(f"model {args.model} on {args.device}, {args.fps} fps, a question every {args.ask_every} s")
    width = max(14, *map(len, args.backends))
    header = f"| {'backend':<{width}} | {'video':<16} | frames | stored | entries | tokens | bytes held | mean add ms | p95 add ms |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for video in args.videos:
        frames = encode_video(wrapped, video, args.fps)
        name = Path(video).name
        results[name] = {}
        for backend in args.backends:
            r = results[name][backend] = run_backend(wrapped, backend, frames, args.ask_every)
            print(f"| {backend:<{width}} | {name:<16} | {r['frames']:>6} | {r['frames_stored']:>6} | {r['entries']:>7} | "
                  f"{r['tokens']:>6} | {r['bytes']:>10,} | {r['mean_add_ms']:>11.3f} | {r['p95_add_ms']:>10.3f} |",
                  flush=True)
    if args.evidence:
        sample = sample_video("vtest.avi")
        root = args.video_root or (sample.parent if sample.is_file() else Path(args.videos[0]).parent)
        evidence = results["evidence"] = evidence_by_backend(wrapped, args.backends, args.evidence, root, 1.0)
        print(f"\nevidence of {args.evidence} (questions asked at their times, at each record's fps):")
        print(f"| {'backend':<{width}} | questions | kept own % | kept at all % | evidence weight % |")
        print(f"|{'-' * (width + 2)}|-----------|------------|---------------|-------------------|")
        for backend, r in evidence.items():
            print(f"| {backend:<{width}} | {r['questions']:>9} | {r['kept_own_pct']:>10} | {r['kept_any_pct']:>13} | "
                  f"{r['weight_pct']:>17} |")
    if args.plot:
        plot({k: v for k, v in results.items() if k != "evidence"}, args.plot)
        print(f"plot of tokens held: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    sys.exit(run_as_script(main))
