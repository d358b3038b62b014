"""Benchmark of HierarchicalMemoryBank.add: time per frame and resident memory.

Run: ``python -m benchmarks.memory [--frames 100 1000 10000] [--device cpu]``
(also ``vl3mem bench memory``). Frames are 144 tokens x 1152 channels, fp32, drawn
as a slowly drifting random walk so adjacent frames are similar, as in video.
Prints mean and p95 time per ``add`` for each stream length (short streams are
repeated until ``--min-adds`` adds are timed), the ratio of the
longest stream's mean to the shortest's (the cost of a frame must not grow with
the stream), and resident memory before and after the longest stream.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import torch

from memory_bank import HierarchicalMemoryBank, MemoryBankConfig


def resident_mib() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_stream(
    num_frames: int, config: MemoryBankConfig, device: torch.device, pool: torch.Tensor, seed: int = 0
) -> tuple[list[float], HierarchicalMemoryBank]:
    """Add ``num_frames`` frames to a fresh bank; return per-add times (ms) and the bank.

    Frame ``i`` is ``pool[i % len(pool)]``, made before the timer starts, so only
    ``add`` is measured.
    """
    bank = HierarchicalMemoryBank(config)
    times = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(num_frames):
        tokens = pool[i % len(pool)]
        sync()
        t0 = time.perf_counter()
        bank.add(tokens, i, float(i))
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, bank


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print a table; return the numbers as a dict."""
    parser = argparse.ArgumentParser(prog="vl3mem bench memory", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 10000], help="stream lengths")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--pool", type=int, default=256, help="distinct frames generated, then cycled")
    parser.add_argument("--min-adds", type=int, default=2000, help="short streams are repeated up to this many adds")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    config = MemoryBankConfig()
    g = torch.Generator().manual_seed(0)
    c, n = config.mm_hidden_size, config.memory_reduced_sizes[0]
    # A random walk: adjacent frames share most of their content, like video.
    steps = torch.randn(args.pool, n, c, generator=g) * 0.3
    steps[0] = torch.randn(n, c, generator=g)
    pool = steps.cumsum(0).to(device)
    pool = [p.clone() for p in pool]

    time_stream(50, config, device, pool)  # warm-up (allocator, kernels)
    print(f"HierarchicalMemoryBank.add, {n} tokens x {c} channels, fp32, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'frames':>8} {'mean ms':>9} {'p95 ms':>9} {'tokens held':>12}")
    results = {}
    rss_before = rss_after = None
    for frames in args.frames:
        gc.collect()
        if frames == max(args.frames):
            rss_before = resident_mib()
        times = []
        for _ in range(max(1, args.min_adds // frames)):
            run_times, bank = time_stream(frames, config, device, pool)
            times += run_times
        if frames == max(args.frames):
            gc.collect()
            rss_after = resident_mib()
        t = torch.tensor(times)
        mean, p95 = t.mean().item(), t.quantile(0.95).item()
        results[frames] = {"mean_ms": mean, "p95_ms": p95, "tokens": bank.num_tokens}
        print(f"{frames:>8} {mean:>9.4f} {p95:>9.4f} {bank.num_tokens:>12}")
        del bank
    lo, hi = min(args.frames), max(args.frames)
    ratio = results[hi]["mean_ms"] / results[lo]["mean_ms"]
    print(f"mean add at {hi} frames / at {lo} frames: {ratio:.3f} (target <= 1.2)")
    print(f"resident memory before / after the {hi}-frame stream: {rss_before:.1f} MiB / {rss_after:.1f} MiB "
          f"(bank bound: {config.max_tokens * c * 4 / 2**20:.1f} MiB of tokens)")
    return {"results": results, "ratio": ratio, "rss_before_mib": rss_before, "rss_after_mib": rss_after}


if __name__ == "__main__":
    main()
