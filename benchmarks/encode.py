"""Encoding time per frame by batch size (``vl3mem bench encode``): how many frames to encode together.

For each video, ``--frames`` frames sampled at ``--fps`` are preprocessed once
(:meth:`videollama3.session.StreamingSession.prepare`), then encoded in batches of each ``--batches``
size (:meth:`videollama3.modeling.VideoLlama3WithMemory.encode_frames`, as
:func:`videollama3.session.question_schedule` encodes them), a pass over all of them per round after
two warm-up passes; the best of ``--repeats`` rounds is printed as ms per frame and frames/s, with the
largest difference between each batch's features and those of one frame at a time (0: bit-identical,
as the vision attention is per frame). On a GPU one frame's encode is bound by the host (kernel
launches), which batches amortise; :func:`videollama3.session.default_encode_batch` picks the default
per device from these numbers.

Each round also encodes the frames with the native ``nn.Conv2d`` patch embedding put back in place of
:class:`~videollama3.modeling.MatmulPatchEmbedding` (the same parameters; the two alternate, so the
VM's noise falls on both): the last columns give its best ms per frame, its time over ours, and the
largest difference between the two's features (float rounding).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from videollama3.loading import build_session, load_model
from videollama3.modeling import MatmulPatchEmbedding, conv_sharing_parameters
from videollama3.options import check_device
from videollama3.session import PreparedFrame, default_encode_batch
from videollama3.video import open_video

from . import (
    BenchmarkInputError,
    add_video_arguments,
    device_sync,
    existing_video,
    run_as_script,
)

DEFAULT_VIDEOS = ["trailer_bbb.mp4"]


@contextmanager
def native_patch_embedding(model) -> Iterator[bool]:
    """Within the block, ``model``'s vision encoder embeds patches with a plain ``nn.Conv2d`` sharing the
    parameters of its :class:`~videollama3.modeling.MatmulPatchEmbedding` (as transformers builds it);
    yields whether there was one to replace (False: the model already has its own module, left alone)."""
    embeddings = model.model.vision_model.embeddings
    ours = embeddings.patch_embedding
    if not isinstance(ours, MatmulPatchEmbedding):
        yield False
        return
    embeddings.patch_embedding = conv_sharing_parameters(ours, nn.Conv2d)
    try:
        yield True
    finally:
        embeddings.patch_embedding = ours


def max_abs_diff(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    """The largest absolute difference between two runs' features, frame by frame (compared in float32)."""
    return max(float((a.float() - b.float()).abs().max()) for a, b in zip(first, second))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the table; return ``{video: {batch: {"ms_per_frame", "max_abs_diff",
    "native_conv_ms_per_frame", "native_conv_over_ours", "native_conv_max_abs_diff"}}}`` (the last three
    None for a model without :class:`~videollama3.modeling.MatmulPatchEmbedding`)."""
    parser = argparse.ArgumentParser(prog="vl3mem bench encode", description=__doc__.split("\n")[0])
    add_video_arguments(parser, DEFAULT_VIDEOS, fps=1.0)
    parser.add_argument("--frames", type=int, default=32, help="frames encoded per round (default 32)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per batch size (best shown)")
    args = parser.parse_args(argv)
    check_device(args.device, "--device")
    if min(args.frames, args.repeats, *args.batches) < 1 or not args.fps > 0:
        raise BenchmarkInputError("--frames, --batches and --repeats must be at least 1, --fps positive")
    for video in args.videos:
        existing_video(video, "--videos")
    model, tokenizer = load_model(args.model, device=args.device)
    session = build_session(model, tokenizer)
    encode = session.model.encode_frames
    sync = device_sync(session.model.device)
    print(f"model {args.model} on {args.device} ({session.model.vision_dtype}), {torch.get_num_threads()} torch "
          f"threads; default batch here: {default_encode_batch(session.model.device)}")
    print("| video | batch | ms per frame | frames/s | max abs diff from one at a time | native conv ms per frame | "
          "native conv / ours | max abs diff from native conv |")
    print("|---|---|---|---|---|---|---|---|")
    results: dict[str, dict] = {}
    for video in args.videos:
        decoded = open_video(video).frames(fps=args.fps)
        try:
            frames = [session.prepare(frame) for (frame, _), _ in zip(decoded, range(args.frames))]
        finally:
            decoded.close()
        if not frames:
            raise BenchmarkInputError(f"{video} gave no frame at {args.fps} fps; pass another --videos or --fps")

        def run(batch: int, frames: list = frames) -> list[torch.Tensor]:
            out = []
            for i in range(0, len(frames), batch):
                out += list(encode(*PreparedFrame.encoder_inputs(frames[i: i + batch])))
            sync()
            return out

        name = Path(video).name
        results[name] = {}
        single = run(1)
        for batch in args.batches:
            for _ in range(2):  # warm-up: the allocator and kernels of this batch size, both ways
                run(batch)
                with native_patch_embedding(model):
                    run(batch)
            seconds, native_seconds, native_grids = [], [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                grids = run(batch)
                seconds.append(time.perf_counter() - start)
                with native_patch_embedding(model) as swapped:
                    if swapped:
                        start = time.perf_counter()
                        native_grids = run(batch)
                        native_seconds.append(time.perf_counter() - start)
            ms = 1000 * min(seconds) / len(frames)
            diff = max_abs_diff(grids, single)
            row = results[name][batch] = {"ms_per_frame": ms, "max_abs_diff": diff, "native_conv_ms_per_frame": None,
                                          "native_conv_over_ours": None, "native_conv_max_abs_diff": None}
            if native_grids is not None:
                row["native_conv_ms_per_frame"] = 1000 * min(native_seconds) / len(frames)
                row["native_conv_over_ours"] = row["native_conv_ms_per_frame"] / ms
                row["native_conv_max_abs_diff"] = max_abs_diff(grids, native_grids)
                native = (f"{row['native_conv_ms_per_frame']:.2f} | {row['native_conv_over_ours']:.2f}x | "
                          f"{row['native_conv_max_abs_diff']:.3g}")
            else:
                native = " | | "
            print(f"| {name} | {batch} | {ms:.2f} | {1000 / ms:.1f} | {diff:.3g} | {native} |", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(run_as_script(main))
