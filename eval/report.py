"""Summary numbers, ``report.md`` and plots of an evaluation run."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def _pct(n: int, d: int) -> float | None:
    return round(100.0 * n / d, 2) if d else None


def summarize(records: list[dict[str, Any]], meta: dict[str, Any] | None = None, benchmark=None) -> dict[str, Any]:
    """Accuracy per task and sub-task, macro / micro averages, the benchmark's own table, evidence
    retention and weight, costs.

    Questions that need the audio track (``extra.needs_audio``: StreamingBench's omni-source tasks)
    are counted apart (``accuracy.needs_audio``), never in the micro / macro averages.

    Args:
        records: prediction records (``correct`` None in ``--no-model`` runs).
        meta: run settings and counts to carry into the summary.
        benchmark: the :class:`~eval.benchmarks.BenchmarkFormat` that scores the records again
            (so a predictions file is scored by the current rules) and lays out its table; None:
            the records' own ``correct``.

    Returns:
        A JSON-able dict: ``accuracy`` (``{"tasks": {task: {correct, total, accuracy}},
        "subtasks": {...}, "micro": %, "macro": %}``), ``retention`` (``{"questions",
        "kept_own_pct", "kept_any_pct", "only_merged_pct", "by_tier", "by_task"}``),
        ``mean_latency_s``, ``mean_visual_tokens``, ``mean_memory_bytes``, ``questions``,
        ``benchmark_table`` (the format's own table, or None).
    """
    if benchmark is not None:
        records = [{**r, **benchmark.score(r)} for r in records]
    tasks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    subtasks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    audio = [0, 0]
    for r in records:
        if r.get("correct") is None:
            continue
        if (r.get("extra") or {}).get("needs_audio"):
            audio[0], audio[1] = audio[0] + bool(r["correct"]), audio[1] + 1
            continue
        for table, key in ((tasks, r["task"]), (subtasks, f"{r['task']}/{r.get('subtask')}")):
            table[key][0] += bool(r["correct"])
            table[key][1] += 1

    def table(t: dict[str, list[int]]) -> dict[str, Any]:
        return {k: {"correct": c, "total": n, "accuracy": _pct(c, n)} for k, (c, n) in sorted(t.items())}

    scored = sum(n for _, n in tasks.values())
    accuracy = {
        "tasks": table(tasks), "subtasks": table(subtasks) if any(r.get("subtask") for r in records) else {},
        "micro": _pct(sum(c for c, _ in tasks.values()), scored),
        "macro": round(sum(100.0 * c / n for c, n in tasks.values()) / len(tasks), 2) if tasks else None,
        "scored": scored,
        "needs_audio": {"correct": audio[0], "total": audio[1], "accuracy": _pct(*audio)},
    }
    with_evidence = [r for r in records if r.get("retention")]
    by_tier: dict[str, int] = defaultdict(int)
    by_task: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for r in with_evidence:
        ret = r["retention"]
        if ret["tier"] is not None:
            by_tier[ret["tier"]] += 1
        row = by_task[r["task"]]
        row[0] += ret["kept_own"]
        row[1] += ret["kept_any"]
        row[2] += 1
        row[3] += ret.get("weight", 0.0)
    n = len(with_evidence)
    retention = {
        "questions": n,
        "kept_own_pct": _pct(sum(r["retention"]["kept_own"] for r in with_evidence), n),
        "kept_any_pct": _pct(sum(r["retention"]["kept_any"] for r in with_evidence), n),
        "only_merged_pct": _pct(sum(r["retention"]["only_merged"] for r in with_evidence), n),
        "weight_pct": _pct(sum(r["retention"].get("weight", 0.0) for r in with_evidence), n),
        "by_tier": dict(by_tier),
        "by_task": {k: {"kept_own_pct": _pct(o, t), "kept_any_pct": _pct(a, t), "weight_pct": _pct(w, t),
                        "questions": t} for k, (o, a, t, w) in sorted(by_task.items())},
    }

    def mean(key: str) -> float | None:
        values = [r[key] for r in records if r.get(key) is not None]
        return round(sum(values) / len(values), 4) if values else None

    return {**(meta or {}), "questions": len(records), "accuracy": accuracy, "retention": retention,
            "mean_latency_s": mean("latency_s"), "mean_visual_tokens": mean("visual_tokens"),
            "mean_memory_bytes": mean("memory_bytes"),
            "benchmark_table": benchmark.table(records) if benchmark is not None else None}


def _rounded(value: float | None, digits: int) -> float | str:
    """``value`` rounded to ``digits`` decimals for a report line; ``-`` for None."""
    return "-" if value is None else round(value, digits)


def write_report(summary: dict[str, Any], path: Path, benchmark=None) -> None:
    """``report.md``: settings, the benchmark's own table (``benchmark.table_lines``), accuracy per
    task and sub-task, evidence retention and weight, costs, throughput, what was skipped."""
    lines = [f"# Streaming evaluation: {summary.get('benchmark', '?')} with memory `{summary.get('memory', '?')}`", ""]
    for key in ("annotations", "model", "memory", "memory_options", "fps", "no_model", "wall_time_s"):
        if key in summary:
            lines.append(f"- {key.replace('_', ' ')}: `{summary[key]}`")
    lines += [f"- questions answered: {summary['questions']}", ""]
    if benchmark is not None and summary.get("benchmark_table"):
        lines += benchmark.table_lines(summary["benchmark_table"])
    acc = summary["accuracy"]
    if acc["scored"]:
        lines += ["## Accuracy", "", "| task | correct | total | accuracy % |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['correct']} | {v['total']} | {v['accuracy']} |" for k, v in acc["tasks"].items()]
        lines += [f"| **micro** | | {acc['scored']} | {acc['micro']} |", f"| **macro** | | | {acc['macro']} |", ""]
        if acc["needs_audio"]["total"]:
            a = acc["needs_audio"]
            lines += [f"Not in these averages: {a['total']} questions that need the audio track (our model is "
                      f"video-only): {a['accuracy']} % correct.", ""]
        if acc["subtasks"]:
            lines += ["| task / sub-task | correct | total | accuracy % |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['correct']} | {v['total']} | {v['accuracy']} |" for k, v in acc["subtasks"].items()]
            lines.append("")
    ret = summary["retention"]
    if ret["questions"]:
        lines += ["## Evidence retention", "",
                  "Whether the memory, when the question was asked, still held something built from a frame "
                  "inside the question's evidence window.", "",
                  f"- questions with evidence: {ret['questions']}",
                  f"- kept as its own entry: {ret['kept_own_pct']} %",
                  f"- kept at all (own entry or inside a merged summary): {ret['kept_any_pct']} %",
                  f"- only inside a merged summary: {ret['only_merged_pct']} %",
                  f"- evidence weight: {ret['weight_pct']} % (the share of the memory's tokens built from frames "
                  "of the window: a summary of 500 frames holding one of them counts 1/500)",
                  f"- tier holding it: {ret['by_tier']}", "",
                  "| task | kept own % | kept any % | weight % | questions |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['kept_own_pct']} | {v['kept_any_pct']} | {v['weight_pct']} | {v['questions']} |"
                  for k, v in ret["by_task"].items()]
        lines.append("")
    held = summary["mean_memory_bytes"]
    lines += ["## Cost per question", "", f"- mean latency: {summary['mean_latency_s']} s",
              f"- mean visual tokens: {_rounded(summary['mean_visual_tokens'], 1)}",
              f"- mean memory held: {'-' if held is None else f'{held / 2**20:.2f} MiB ({held:.0f} bytes)'}", ""]
    speed = summary.get("throughput")
    if speed and speed.get("frames"):
        frame_ms, question_ms = speed["ms_per_frame"], speed["ms_per_question"]
        lines += ["## Throughput (this process)", "",
                  f"- frames encoded: {speed['frames']}, {speed['frames_per_s']} frames/s over the streaming time",
                  "- ms per frame: " + ", ".join(f"{k} {v}" for k, v in frame_ms.items())
                  + " (decode: the wait the decoding thread could not hide)",
                  "- ms per question: " + ", ".join(f"{k} {v}" for k, v in question_ms.items()), ""]
    for key, title in (("skipped_records", "Records skipped (--skip-bad)"),
                       ("skipped_videos", "Videos skipped (--skip-bad): they could not be read"),
                       ("streams_stopped", "Streams that stopped early"),
                       ("unanswered", "Questions not answered (their stream stopped before them)")):
        if summary.get(key):
            lines += [f"## {title}", "", *[f"- {x}" for x in (summary[key].items() if isinstance(summary[key], dict)
                                                               else summary[key])], ""]
    path.write_text("\n".join(lines))


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    """Bar chart: accuracy per task (or, without a model, evidence kept per task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if summary["accuracy"]["scored"]:
        rows = summary["accuracy"]["tasks"]
        labels, values, ylabel = list(rows), [v["accuracy"] for v in rows.values()], "accuracy (%)"
    else:
        rows = summary["retention"]["by_task"]
        labels, values, ylabel = list(rows), [v["kept_any_pct"] or 0 for v in rows.values()], "evidence kept (%)"
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(labels) + 2), 3.5))
    ax.bar(labels, values, color="tab:blue")
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{summary.get('benchmark', '')} / {summary.get('memory', '')}")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(records: list[dict[str, Any]], path: Path) -> None:
    """Memory timeline of the video with the most questions: at each question time (x),
    the frame times held (y), coloured by tier; merged entries as vertical bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_video[r["video"]].append(r)
    if not by_video:
        return
    video, rows = max(by_video.items(), key=lambda kv: len(kv[1]))
    rows.sort(key=lambda r: r["time"])
    names = rows[0].get("tier_names") or list(rows[0]["tiers"])
    colours = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(7, 5))
    for name in names:
        xs, ys = [], []
        for r in rows:
            for item in r["tiers"].get(name, []):
                if isinstance(item, list):
                    ax.plot([r["time"], r["time"]], item, color=colours.get(name), linewidth=4, alpha=0.5)
                else:
                    xs.append(r["time"])
                    ys.append(item)
        ax.scatter(xs, ys, s=12, color=colours.get(name), label=name)
    top = max(r["time"] for r in rows)
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":", label="question time")
    ax.set_xlabel("question time (s)")
    ax.set_ylabel("frame time held (s)")
    ax.set_title(f"memory at each question: {Path(video).name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(records: list[dict[str, Any]], meta: dict[str, Any], output_dir: Path,
                  benchmark=None) -> dict[str, Any]:
    """``summary.json``, ``report.md``, ``accuracy.png`` and ``timeline.png`` in ``output_dir``, scored
    and laid out by ``benchmark`` (see :func:`summarize`); returns the summary."""
    summary = summarize(records, meta, benchmark)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(summary, output_dir / "report.md", benchmark)
    if records:
        plot_accuracy(summary, output_dir / "accuracy.png")
        plot_timeline(records, output_dir / "timeline.png")
    return summary
