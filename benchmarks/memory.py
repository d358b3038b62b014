"""Benchmark of HierarchicalMemoryBank.add: time per frame against the reference, and resident memory.

Run: ``python -m benchmarks.memory [--frames 100 1000 10000] [--device cpu]``
(also ``vl3mem bench memory``). Frames are 144 tokens x 1152 channels, fp32, drawn
as a slowly drifting random walk so adjacent frames are similar, as in video.
Prints mean and p95 time per ``add`` for each stream length (short streams are
repeated until ``--min-adds`` adds are timed), the ratio of the
longest stream's mean to the shortest's (the cost of a frame must not grow with
the stream), the add's fixed cost (the same stream at 8 channels: :func:`fixed_cost_ms`),
resident memory before and after the longest stream, and, in the same
run, the time per add of :class:`ReferencePyramidMemory` (the reference algorithm) and
the ratio of the two: with torch's default threads and, where it differs, with the threads
``vl3mem answer`` gives torch while it decodes ahead (:func:`videollama3.video.encoder_threads`:
one core less on the CPU), which is how an add runs in a stream there (ours and the reference timed
add by add, interleaved; the median of 7 rounds: :func:`compare_with_reference`). Of the add's
operations only a frame's arrival bags and the merge gain from a second thread (each thread takes
one half of the grid); the others are too small (a second thread costs them an OpenMP fork and join
each), while the reference's means over whole tiers all gain.

``--against REV`` also times the ``memory_bank`` package of git revision ``REV`` (``git archive``, imported
beside this tree's under another name) against this tree's in the same run, interleaved with the reference:
the before / after of a change to the add, with the VM's noise falling on both
(:func:`compare_with_revision`).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import gc
import importlib.util
import io
import itertools
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from memory_bank import HierarchicalMemoryBank, MemoryBankConfig
from videollama3.options import check_device
from videollama3.video import encoder_threads

from . import BenchmarkInputError, device_sync, run_as_script


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


class ReferencePyramidMemory:
    """The reference algorithm, for timing only: VideoChat-Online's Pyramid Memory Bank as
    ``../shared/DESIGN.md`` section 4 describes it (Huang et al., CVPR 2025), written again from that
    description and checked against the reference's ``HierarchicalMemoryBank``
    (``internvl/model/videochat_online/modeling_videochat_online.py`` in MCG-NJU/VideoChat-Online).

    Tokens are held channels-first, ``(1, C, h, w)``, each with the mean-pooled ``cls_token`` computed
    when the frame arrives. At each add the tier's pooled descriptors are
    recomputed from every entry (a mean over the grid each), the most similar adjacent pair found
    (cosine, ``argmax().item()``), and its earlier entry pushed one level down with bilinear
    interpolation *without* antialiasing, appended there (not in time order); a full next tier
    drops its own most similar entry instead of passing it on (a one-level cascade). Results are
    not the same as :class:`HierarchicalMemoryBank`'s (the faults it fixes); only the cost compares.
    """

    def __init__(self, capacities=(8, 4, 1), sizes=(144, 64, 36)) -> None:
        self.tiers = [{"entries": [], "capacity": c, "side": int(s**0.5)} for c, s in zip(capacities, sizes)]

    @staticmethod
    def _most_similar(entries) -> int:
        pooled = torch.cat([e["tokens"].mean(dim=(2, 3)) for e in entries], dim=0)
        return int(torch.nn.functional.cosine_similarity(pooled[1:], pooled[:-1], dim=1).argmax().item())

    def _reduce(self, tokens, side):
        if tokens.shape[-2:] == (side, side):
            return tokens
        return torch.nn.functional.interpolate(tokens, size=(side, side), mode="bilinear", align_corners=False)

    def _update(self, level: int, tokens, index: int, cascade: bool, cls_token) -> None:
        tier = self.tiers[level]
        if len(tier["entries"]) >= tier["capacity"]:
            i = self._most_similar(tier["entries"]) if len(tier["entries"]) > 1 else 0
            if cascade and level + 1 < len(self.tiers):
                evicted = tier["entries"][i]
                self._update(level + 1, self._reduce(evicted["tokens"], self.tiers[level + 1]["side"]),
                             evicted["index"], cascade=False, cls_token=evicted["cls_token"])
            tier["entries"].pop(i)
        tier["entries"].append({"tokens": self._reduce(tokens, tier["side"]), "index": index, "cls_token": cls_token})

    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float) -> None:
        """Add ``(h*w, C)`` tokens (reshaped to ``(1, C, h, w)`` as the reference holds them).

        Like the reference's ``update_memory``, the new frame's mean-pooled ``cls_token`` is computed and
        kept with it (the reference stores it; its similarities recompute the means anyway).
        """
        side = int(tokens.shape[0] ** 0.5)
        grid = tokens.T.reshape(1, -1, side, side)
        self._update(0, grid, frame_index, cascade=True, cls_token=grid.mean(dim=(2, 3)))


def time_stream(
    num_frames: int, config: MemoryBankConfig, device: torch.device, pool: torch.Tensor, seed: int = 0,
    reference: bool = False, batch: int = 0, in_turn: bool = False,
) -> tuple[list[float], HierarchicalMemoryBank | ReferencePyramidMemory]:
    """Add ``num_frames`` frames to a fresh bank (or reference memory); return per-add times (ms) and it.

    Frame ``i`` is ``pool[i % len(pool)]``, made before the timer starts, so only
    ``add`` is measured. With the default pool (256 frames, 170 MB) a frame is out of the caches
    when it is added. With ``batch > 0`` frames come ``batch`` at a time in one ``(batch, 144, C)``
    tensor stacked just before (untimed: the output buffer of one vision-encoder call, just written,
    in cache) and go to
    :meth:`~memory_bank.HierarchicalMemoryBank.add_frames`, or with ``in_turn`` to ``add`` one view at a
    time; each frame is counted at the batch's time over its size. Either way the bank copies each
    frame's tokens out of the batch's buffer (which a view would keep alive).
    """
    bank = (ReferencePyramidMemory(config.memory_capacities, config.memory_reduced_sizes) if reference
            else HierarchicalMemoryBank(config))
    times = []
    sync = device_sync(device)
    step = max(batch, 1)
    for first in range(0, num_frames, step):
        indices = range(first, min(first + step, num_frames))
        frames = [pool[i % len(pool)] for i in indices]
        tokens = torch.stack(frames) if batch else frames[0]
        sync()
        t0 = time.perf_counter()
        if batch and in_turn:
            for frame_tokens, i in zip(tokens, indices):
                bank.add(frame_tokens, i, float(i))
        elif batch:
            bank.add_frames(tokens, indices, [float(i) for i in indices])
        else:
            bank.add(tokens, first, float(first))
        sync()
        times += [(time.perf_counter() - t0) * 1e3 / len(indices)] * len(indices)
    return times, bank


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print a table; return the numbers as a dict."""
    parser = argparse.ArgumentParser(prog="vl3mem bench memory", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 10000], help="stream lengths")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--pool", type=int, default=256, help="distinct frames generated, then cycled")
    parser.add_argument("--min-adds", type=int, default=2000, help="short streams are repeated up to this many adds")
    parser.add_argument("--against", metavar="REV", help="also time memory_bank at this git revision, in the same run")
    args = parser.parse_args(argv)
    device = check_device(args.device, "--device")
    if min(args.frames) < 1 or args.pool < 1 or args.min_adds < 1:
        raise BenchmarkInputError(f"--frames, --pool and --min-adds must be at least 1, got {args.frames}, "
                                  f"{args.pool}, {args.min_adds}")
    other = memory_bank_at(args.against) if args.against else None
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
    time_stream(50, config, device, pool, reference=True)
    default_threads = torch.get_num_threads()
    # the threads `vl3mem answer` gives torch while it decodes ahead (one core less on the CPU)
    streaming_threads = encoder_threads(str(device), decode_ahead=8) or default_threads
    speedups: dict[int, dict] = {}
    for threads in dict.fromkeys((default_threads, streaming_threads)):
        torch.set_num_threads(threads)
        try:
            speedups[threads] = compare_with_reference(config, device, pool, min(args.frames[-1], 1000))
        finally:
            torch.set_num_threads(default_threads)
        for arrival, r in speedups[threads].items():
            arrival = "just written (in cache)" if arrival == "fresh" else f"from the {args.pool}-frame pool (out of cache)"
            role = "torch's default" if threads == default_threads else "as `vl3mem answer` decoding ahead"
            print(f"{threads} torch threads ({role}), frames {arrival}: reference (one-level cascade, appended, "
                  f"bilinear) {r['reference_ms']:.4f} ms per add; ours {r['ours_ms']:.4f} ms: "
                  f"{r['speedup']:.2f}x faster (target >= 3; single rounds {r['speedup_rounds'][0]:.2f}x to "
                  f"{r['speedup_rounds'][1]:.2f}x)")
            if "batch_ms" in r:
                print(f"    batches of 8 in one encoder buffer: add() in turn {r['in_turn_ms']:.4f} ms per frame, "
                      f"add_frames {r['batch_ms']:.4f} ms per frame ({r['batch_speedup']:.2f}x the reference); both "
                      "copy each frame out of the buffer")
    against = None
    if other is not None:
        against = {}
        for threads in dict.fromkeys((default_threads, streaming_threads)):
            torch.set_num_threads(threads)
            try:
                r = against[threads] = compare_with_revision(config, device, pool, min(args.frames[-1], 1000), other)
            finally:
                torch.set_num_threads(default_threads)
            print(f"{threads} torch threads, frames out of cache: memory_bank at {args.against} ({other.REVISION[:12]}) "
                  f"{r['revision_ms']:.4f} ms per add, this tree {r['ours_ms']:.4f} ms: {r['speedup']:.2f}x as fast "
                  f"(single rounds {r['speedup_rounds'][0]:.2f}x to {r['speedup_rounds'][1]:.2f}x; the reference "
                  f"{r['reference_ms']:.4f} ms, interleaved with both)")
    fixed = fixed_cost_ms(config, device, min(args.frames[-1], 1000))
    print(f"the same stream at {FIXED_COST_WIDTH} channels (the add's fixed cost: Python and torch dispatch, next to no "
          f"memory traffic): {fixed:.4f} ms per add, {fixed / results[max(args.frames)]['mean_ms']:.0%} of the add "
          f"at {c} channels")
    lo, hi = min(args.frames), max(args.frames)
    ratio = results[hi]["mean_ms"] / results[lo]["mean_ms"]
    print(f"mean add at {hi} frames / at {lo} frames: {ratio:.3f} (target <= 1.2)")
    print(f"resident memory before / after the {hi}-frame stream: {rss_before:.1f} MiB / {rss_after:.1f} MiB "
          f"(bank bound: {config.max_tokens * c * 4 / 2**20:.1f} MiB of tokens)")
    return {"results": results, "ratio": ratio, "rss_before_mib": rss_before, "rss_after_mib": rss_after,
            "fixed_cost_ms": fixed,
            "reference_mean_ms": speedups[default_threads]["pool"]["reference_ms"],
            "speedup_vs_reference": speedups[default_threads]["pool"]["speedup"],
            "vs_reference": speedups[default_threads], "vs_reference_by_threads": speedups,
            "vs_revision_by_threads": against}


FIXED_COST_WIDTH = 8
"""Channels of the stream :func:`fixed_cost_ms` times: the same grids and code path, 1/144 of the data."""


def fixed_cost_ms(config: MemoryBankConfig, device: torch.device, frames: int, rounds: int = 5) -> float:
    """Ms per add of a stream of ``frames`` frames like the benchmark's (same grids, capacities, a random
    walk) at :data:`FIXED_COST_WIDTH` channels instead of ``config.mm_hidden_size``: what an add costs
    besides moving tokens (Python, torch's dispatch of each call). The median of ``rounds`` streams."""
    narrow = dataclasses.replace(config, mm_hidden_size=FIXED_COST_WIDTH)
    g = torch.Generator().manual_seed(1)
    walk = (torch.randn(256, config.memory_reduced_sizes[0], FIXED_COST_WIDTH, generator=g) * 0.3).cumsum(0)
    pool = [p.clone() for p in walk.to(device)]
    time_stream(50, narrow, device, pool)  # warm-up
    return statistics.median(statistics.mean(time_stream(frames, narrow, device, pool)[0]) for _ in range(rounds))


def compare_with_reference(config: MemoryBankConfig, device: torch.device, pool: list[torch.Tensor],
                           frames: int, rounds: int = 7, batch: int = 8) -> dict[str, dict[str, float]]:
    """Ms per add of ours and of :class:`ReferencePyramidMemory`, with frames out of cache (``"pool"``)
    and just written (``"fresh"``), and the ratio.

    The two are timed add by add, interleaved (a frame to ours, one to the reference, the order
    alternating): a shared VM's noise comes in bursts of milliseconds that would otherwise fall on
    one of them, and the reference's time, bound by memory traffic, moves most with it. Ours adds
    ``pool[i]`` and the reference ``pool[i + len(pool) // 2]``, so neither finds the other's frame in
    cache; each reads its own state after the other's add has gone through the caches, as an add
    in a stream does after the encoder. A round is a stream of ``frames`` frames into each; the
    times are the median over ``rounds`` rounds of a round's mean, and the ratio the median of the
    rounds' ratios (``speedup_rounds``: the lowest and highest). With frames just written, also ours
    on batches of ``batch`` frames in one encoder buffer (how a stream encoded in batches adds them),
    a stream each per round: ``add`` in turn on each frame's view (``in_turn_ms``) and ``add_frames``
    (``batch_ms``), against the same round's reference."""
    sync = device_sync(device)
    result = {}
    for fresh in (False, True):
        rounds_ms: dict[str, list[float]] = {"ours": [], "reference": [], "in_turn": [], "batch": []}
        for _ in range(rounds):
            banks = {"ours": HierarchicalMemoryBank(config),
                     "reference": ReferencePyramidMemory(config.memory_capacities, config.memory_reduced_sizes)}
            shift = {"ours": 0, "reference": len(pool) // 2}
            spent = dict.fromkeys(banks, 0.0)
            for i in range(frames):
                for name in ("ours", "reference") if i % 2 else ("reference", "ours"):
                    tokens = pool[(i + shift[name]) % len(pool)]
                    tokens = tokens.clone() if fresh else tokens
                    sync()
                    t0 = time.perf_counter()
                    banks[name].add(tokens, i, float(i))
                    sync()
                    spent[name] += time.perf_counter() - t0
            for name, seconds in spent.items():
                rounds_ms[name].append(seconds * 1e3 / frames)
            if fresh:
                for name, options in {"in_turn": {"batch": batch, "in_turn": True}, "batch": {"batch": batch}}.items():
                    times = time_stream(frames, config, device, pool, **options)[0]
                    rounds_ms[name].append(sum(times) / len(times))
        ms = {name: statistics.median(t) for name, t in rounds_ms.items() if t}
        per_round = [ref / ours for ref, ours in zip(rounds_ms["reference"], rounds_ms["ours"])]
        r = result["fresh" if fresh else "pool"] = {"ours_ms": ms["ours"], "reference_ms": ms["reference"],
                                                    "speedup": statistics.median(per_round),
                                                    "speedup_rounds": (min(per_round), max(per_round))}
        if fresh:
            r.update(in_turn_ms=ms["in_turn"], batch_ms=ms["batch"], batch_speedup=ms["reference"] / ms["batch"])
    return result


def memory_bank_at(revision: str) -> ModuleType:
    """The ``memory_bank`` package of git revision ``revision`` of the repository this benchmark belongs to,
    imported beside this tree's as ``memory_bank_at_<commit>`` (``git archive`` into a temporary folder,
    removed when the process ends), so that both run in one process. ``REVISION`` on the module is the commit.

    Raises:
        BenchmarkInputError: when git is missing, this source tree is not a git checkout, or ``revision``
            does not name a commit holding ``memory_bank/``.
    """
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(root), "archive", commit, "memory_bank"], capture_output=True,
                                 check=True).stdout
    except FileNotFoundError:
        raise BenchmarkInputError("--against needs git on the PATH") from None
    except subprocess.CalledProcessError as e:
        reason = " ".join((e.stderr if isinstance(e.stderr, str) else e.stderr.decode(errors="replace")).split())
        raise BenchmarkInputError(f"--against {revision}: no commit holding memory_bank/ of that name in {root}"
                                  f"{f' ({reason[:160]})' if reason else ''}; give a commit, branch or tag") from None
    name = f"memory_bank_at_{commit[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    folder = Path(tempfile.mkdtemp(prefix="vl3mem-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = (folder / "memory_bank").rename(folder / name)
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py", submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.REVISION = commit
    return module


def compare_with_revision(config: MemoryBankConfig, device: torch.device, pool: list[torch.Tensor], frames: int,
                          other: ModuleType, rounds: int = 7) -> dict[str, float | tuple[float, float]]:
    """Ms per add of this tree's :class:`HierarchicalMemoryBank`, of ``other``'s (:func:`memory_bank_at`) and of
    :class:`ReferencePyramidMemory`, and this tree's speed-up over ``other``'s.

    The three are timed add by add, interleaved, in each of their six orders in turn (each bank follows
    each other one equally often), each on its own frames of ``pool`` (out of cache): as
    :func:`compare_with_reference`, a burst of noise falls on all three. A
    round is a stream of ``frames`` frames into each; the times are medians over ``rounds`` rounds, the
    speed-up the median of the rounds' ratios (``speedup_rounds``: the lowest and highest). ``other``'s
    bank is built from its own ``MemoryBankConfig`` with the fields of ``config`` it has.
    """
    sync = device_sync(device)
    fields = {f.name for f in dataclasses.fields(other.MemoryBankConfig)}
    other_config = other.MemoryBankConfig(**{k: v for k, v in dataclasses.asdict(config).items() if k in fields})
    names = ("ours", "revision", "reference")
    # the six orders in turn: each bank follows each other one equally often (a bank that follows the reference
    # finds the caches emptied; turning one order, ours would follow it twice as often as the revision's)
    orders = list(itertools.permutations(names))
    spent_ms: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        banks = {"ours": HierarchicalMemoryBank(config), "revision": other.HierarchicalMemoryBank(other_config),
                 "reference": ReferencePyramidMemory(config.memory_capacities, config.memory_reduced_sizes)}
        spent = dict.fromkeys(names, 0.0)
        for i in range(frames):
            for name in orders[i % len(orders)]:
                tokens = pool[(i + names.index(name) * len(pool) // 3) % len(pool)]
                sync()
                t0 = time.perf_counter()
                banks[name].add(tokens, i, float(i))
                sync()
                spent[name] += time.perf_counter() - t0
        for name in names:
            spent_ms[name].append(spent[name] * 1e3 / frames)
    per_round = [old / new for old, new in zip(spent_ms["revision"], spent_ms["ours"])]
    return {"ours_ms": statistics.median(spent_ms["ours"]), "revision_ms": statistics.median(spent_ms["revision"]),
            "reference_ms": statistics.median(spent_ms["reference"]), "speedup": statistics.median(per_round),
            "speedup_rounds": (min(per_round), max(per_round))}


if __name__ == "__main__":
    sys.exit(run_as_script(main))
