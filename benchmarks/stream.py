"""Question latency: streaming memory vs the naive offline path (``vl3mem bench stream``).

On ``vtest.avi`` (every frame, 10 fps; looped for streams longer than its 795
frames) with the tiny model by default:

* memory path: one :class:`StreamingSession` pushes every frame once; at each
  checkpoint (16, 64, 256, 795, 4096 frames) a question is asked and
  ``session.ask`` is timed (the per-frame encoding was paid as the stream flowed
  and is reported separately);
* naive path: for the same question, decode the video up to that point again,
  sample at most 180 frames uniformly, encode them all and answer from all of
  them, as offline VideoLLaMA3 does; the whole of that is timed.

Both answers generate exactly ``--new-tokens`` tokens, so latencies compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from memory_bank import UnboundedMemory
from videollama3.loading import build_session, load_model
from videollama3.modeling import memory_tokens
from videollama3.options import check_device
from videollama3.preprocess import preprocess_frames
from videollama3.session import StreamingSession
from videollama3.video import iter_frames, probe_video

from . import device_sync, existing_video, run_as_script, sample_video


def looped_frames(path: str | Path, num_frames: int, fps: float | None):
    """Yield ``(frame, timestamp_s)`` for ``num_frames`` frames, replaying the video as needed."""
    duration = probe_video(path).duration
    n, loop = 0, 0
    while n < num_frames:
        for frame, t in iter_frames(path, fps=fps):
            yield frame, loop * duration + t
            n += 1
            if n == num_frames:
                return
        loop += 1


def naive_answer(session: StreamingSession, path, num_frames, fps, question, new_tokens, max_frames=180):
    """Offline baseline: decode the first ``num_frames`` again, keep <= ``max_frames`` uniformly, encode, answer."""
    keep = set(np.linspace(0, num_frames - 1, min(max_frames, num_frames)).round().astype(int).tolist())
    frames, times = [], []
    for i, (frame, t) in enumerate(looped_frames(path, num_frames, fps)):
        if i in keep:
            frames.append(frame)
            times.append(t)
    model, processor = session.model, session.processor
    pixel_values, grid_thw, merge_sizes = preprocess_frames(np.stack(frames), patch_size=model.patch_size,
                                                            dtype=model.vision_dtype)
    memory = UnboundedMemory(mm_hidden_size=model.memory_width)
    for i, (tokens, t) in enumerate(zip(model.encode_frames(pixel_values, grid_thw, merge_sizes), times)):
        memory.add(tokens, i, t)
    entries = memory.readout()
    inputs = processor(entries, question)
    tokens, tier_ids = memory_tokens(entries, model.memory_width)
    out = model.generate(inputs["input_ids"], inputs["attention_mask"], tokens, tier_ids, new_tokens,
                         min_new_tokens=new_tokens)
    return processor.decode(out[0])


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print both latency series and their ratios; return them."""
    parser = argparse.ArgumentParser(prog="vl3mem bench stream", description=__doc__.split("\n")[0])
    parser.add_argument("--video", default=str(sample_video("vtest.avi")), help="default: data/videos/vtest.avi")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=float, default=None, help="sampling rate (default: every frame)")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[16, 64, 256, 795, 4096])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="memory-path asks per checkpoint (median)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive path")
    args = parser.parse_args(argv)
    check_device(args.device, "--device")
    existing_video(args.video, "--video")

    session = build_session(*load_model(args.model, device=args.device))
    question = "What has happened in the video so far?"
    sync = device_sync(args.device)
    session.ask("warm up", 2)

    checkpoints = sorted(args.checkpoints)
    memory_ms, naive_ms, tokens, push_s = {}, {}, {}, 0.0
    frames = looped_frames(args.video, checkpoints[-1], args.fps)
    print(f"model {args.model} on {args.device}, video {Path(args.video).name}, {args.new_tokens} new tokens")
    print(f"{'frames':>7} {'memory ms':>10} {'vis tokens':>10} {'naive ms':>10} {'naive/memory':>13}")
    for n in checkpoints:
        while session.frames_seen < n:
            frame, t = next(frames)
            sync()
            t0 = time.perf_counter()
            session.push_frame(frame, t)
            sync()
            push_s += time.perf_counter() - t0
        runs = []
        for _ in range(args.repeats):
            answer = session.ask(question, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
            runs.append(answer.latency_s * 1000)
        memory_ms[n], tokens[n] = float(np.median(runs)), answer.visual_tokens
        if not args.no_naive:
            sync()
            t0 = time.perf_counter()
            naive_answer(session, args.video, n, args.fps, question, args.new_tokens)
            sync()
            naive_ms[n] = (time.perf_counter() - t0) * 1000
        ratio = f"{naive_ms[n] / memory_ms[n]:>13.1f}" if n in naive_ms else f"{'-':>13}"
        naive = f"{naive_ms[n]:>10.1f}" if n in naive_ms else f"{'-':>10}"
        print(f"{n:>7} {memory_ms[n]:>10.1f} {tokens[n]:>10} {naive} {ratio}", flush=True)
    lo, hi = checkpoints[0], checkpoints[-1]
    print(f"memory-path latency at {hi} frames / at {lo} frames: {memory_ms[hi] / memory_ms[lo]:.2f} (target <= 1.2)")
    if naive_ms:
        print(f"naive-path latency at {hi} frames / at {lo} frames: {naive_ms[hi] / naive_ms[lo]:.2f}")
    print(f"per-frame push (decode excluded: preprocess + encode + memory add): "
          f"{push_s / session.frames_seen * 1000:.1f} ms mean over {session.frames_seen} frames")
    return {"memory_ms": memory_ms, "naive_ms": naive_ms, "visual_tokens": tokens}


if __name__ == "__main__":
    sys.exit(run_as_script(main))
