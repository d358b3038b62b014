"""Time per stage of the streaming pipeline, and frames/s with and without decoding ahead (``vl3mem bench pipeline``).

For each video, the same stream (``--fps``, questions at 25 / 50 / 75 % of the video and at its
end) runs twice in one process: *sequential* (decode, then preprocess, encode, add, in turn) and
*pipelined* (decoding and preprocessing ahead in two background threads,
:func:`videollama3.session.pipelined`), both with frames encoded one at a time, then a third time
pipelined with frames encoded in batches of ``--encode-batch`` (same tokens; the default path of
``vl3mem answer`` and ``eval``, :func:`videollama3.session.default_encode_batch`). The
pipelined paths run with the threads ``vl3mem answer`` gives them (:func:`videollama3.video.encoder_threads`:
on the CPU, one core left to the decoding threads while frames come, every core after the last), the
sequential one with torch's default.
Prints, per frame, the ms of decode (the wait the pipeline could not hide), preprocess, encode and
add; per question, prompt building and generation; then prefill and per-token generation from two
extra questions; frames/s of both paths with their ratio, measured in the same run; and the cores
the process kept busy (CPU time over wall time: a path that already keeps every core busy cannot be
sped up by overlapping its stages, only by doing less work). A fourth pass per round only decodes,
as the pipelined paths decode (``decode ahead only``: :func:`~videollama3.video.decode_ahead`, several
closed GOPs at once where the file allows, :mod:`videollama3.gop`; nothing done with the frames): no
pipeline over the source outruns it, so its frames/s over the sequential path's is the most any
pipelining can give there (printed beside each ratio). With ``--repeats N`` the paths run N times, interleaved (each round
sees the same machine state); each row is the round of median frames/s, and the ratios are given
of the medians and of the best rounds.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from videollama3.loading import build_session, load_model
from videollama3.options import check_device
from videollama3.session import default_encode_batch, pipelined, run_stream
from videollama3.video import decode_ahead, encoder_threads, open_video

from . import (
    BenchmarkInputError,
    add_video_arguments,
    device_sync,
    existing_video,
    run_as_script,
)

DEFAULT_VIDEOS = ["vtest.avi", "trailer_bbb.mp4"]


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stream_once(model, tokenizer, path: str | Path, fps: float, ahead: int, new_tokens: int, encode_batch: int = 1,
                threads: int | None = None) -> dict:
    """One pass over ``path``: a fresh session (frames encoded in batches of ``encode_batch``, torch at
    ``threads`` while frames come: :func:`~videollama3.session.pipelined`), questions at 25/50/75/100 % of
    the video; its timings."""
    video = open_video(path)
    duration = video.info.duration
    questions = [(f"What happens at {p} % of the video?", duration * p / 100) for p in (25, 50, 75)]
    questions.append(("What happened in the video?", None))
    session = build_session(model, tokenizer)
    session.encode_batch = encode_batch
    frames = video.frames(fps=fps)
    sync = device_sync(model.device)
    sync()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    run_stream(session, pipelined(session, frames, ahead, threads), questions, new_tokens, min_new_tokens=new_tokens)
    sync()
    wall = time.perf_counter() - start
    result = session.throughput(wall)
    result["cores_busy"] = round((_cpu_seconds() - cpu_start) / wall, 2)
    sync()  # prefill, and the cost of one more token, on the memory at the end of the stream
    t0 = time.perf_counter()
    session.ask("Describe the scene.", max_new_tokens=1)
    sync()
    t1 = time.perf_counter()
    session.ask("Describe the scene.", max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    sync()
    t2 = time.perf_counter()
    result["prefill_ms"] = round(1000 * (t1 - t0), 2)
    result["ms_per_new_token"] = round(1000 * ((t2 - t1) - (t1 - t0)) / max(new_tokens - 1, 1), 3)
    return result


def median_round(rounds: list[dict]) -> dict:
    """The round of median ``frames_per_s`` (the lower of the middle two for an even count), with every
    round's frames/s as ``frames_per_s_runs``."""
    runs = sorted(rounds, key=lambda r: r["frames_per_s"])
    return {**runs[(len(runs) - 1) // 2], "frames_per_s_runs": [r["frames_per_s"] for r in rounds]}


def decode_once(path: str | Path, fps: float, ahead: int) -> dict:
    """One pass over ``path`` that only decodes, ``ahead`` frames ahead as the pipelined paths do (the
    frames as the streams get them, RGB, sampled at ``fps``): the frames/s no pipeline over this source
    can beat, whatever it overlaps."""
    frames = 0
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    for _ in decode_ahead(open_video(path).frames(fps=fps), ahead):
        frames += 1
    wall = time.perf_counter() - start
    return {"frames": frames, "frames_per_s": round(frames / wall, 3),
            "cores_busy": round((_cpu_seconds() - cpu_start) / wall, 2)}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the table; return the numbers."""
    parser = argparse.ArgumentParser(prog="vl3mem bench pipeline", description=__doc__.split("\n")[0])
    add_video_arguments(parser, DEFAULT_VIDEOS, fps=1.0)
    parser.add_argument("--decode-ahead", type=int, default=8, help="frames decoded ahead in the pipelined path")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated per question")
    parser.add_argument("--encode-batch", type=int, default=None,
                        help="frames encoded together in the batched path (default: the device's, 8 or 32 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three paths, interleaved (median shown)")
    args = parser.parse_args(argv)
    device = check_device(args.device, "--device")
    if args.encode_batch is None:  # 0 is refused below, not taken for the default
        args.encode_batch = default_encode_batch(device)
    if min(args.decode_ahead, args.new_tokens, args.encode_batch, args.repeats) < 1 or not args.fps > 0:
        raise BenchmarkInputError("--decode-ahead, --new-tokens, --encode-batch and --repeats must be at least 1, "
                                  "--fps positive")
    for video in args.videos:
        existing_video(video, "--videos")
    model, tokenizer = load_model(args.model, device=args.device)
    stream_once(model, tokenizer, args.videos[0], args.fps, 0, 2)  # warm-up
    print(f"model {args.model} on {args.device}, {args.fps} fps, {torch.get_num_threads()} torch threads, "
          f"{args.new_tokens} new tokens per question")
    default_threads = torch.get_num_threads()
    pipelined_threads = encoder_threads(args.device, args.decode_ahead) or default_threads
    print(f"sequential: {default_threads} torch threads; pipelined: {pipelined_threads} torch threads while frames come "
          f"(decoding and preprocessing in more threads), then {default_threads}")
    header = ("| video | path | frames/s | cores busy | decode ms | preprocess ms | encode ms | add ms | prompt ms | "
              "generate ms | prefill ms | ms/token |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    results: dict[str, dict] = {}
    for video in args.videos:
        name = Path(video).name
        batched = f"pipelined, batches of {args.encode_batch}"
        paths = (("sequential", 0, 1), ("pipelined", args.decode_ahead, 1), (batched, args.decode_ahead, args.encode_batch))
        rounds: dict[str, list[dict]] = {path: [] for path, _, _ in paths}
        decoding: list[dict] = []
        for _ in range(args.repeats):
            for path, ahead, batch in paths:
                threads = pipelined_threads if ahead else None
                rounds[path].append(stream_once(model, tokenizer, video, args.fps, ahead, args.new_tokens, batch, threads))
            decoding.append(decode_once(video, args.fps, args.decode_ahead))
        results[name] = {}
        for path, _, _ in paths:
            r = results[name][path] = median_round(rounds[path])
            f, q = r["ms_per_frame"], r["ms_per_question"]
            print(f"| {name} | {path} | {r['frames_per_s']} | {r['cores_busy']} | {f['decode']} | {f['preprocess']} | "
                  f"{f['encode']} | "
                  f"{f['add']} | {q['prompt']} | {q['generate']} | {r['prefill_ms']} | {r['ms_per_new_token']} |",
                  flush=True)
        decode = results[name]["decode ahead only"] = median_round(decoding)
        print(f"| {name} | decode ahead only | {decode['frames_per_s']} | {decode['cores_busy']} | | | | | | | | |", flush=True)
        sequential = results[name]["sequential"]
        ceiling = results[name]["decode ahead only / sequential"] = decode["frames_per_s"] / sequential["frames_per_s"]
        for path in ("pipelined", batched):
            ratio = results[name][path]["frames_per_s"] / sequential["frames_per_s"]
            best = max(results[name][path]["frames_per_s_runs"]) / max(sequential["frames_per_s_runs"])
            results[name][f"{path} / sequential"] = ratio
            results[name][f"{path} / sequential, best rounds"] = best
            print(f"| {name} | {path} / sequential | {ratio:.2f}x (best rounds {best:.2f}x; decoding ahead alone "
                  f"{ceiling:.2f}x) | | | | | | | | | |", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(run_as_script(main))
