"""Online (streaming) evaluation: each question answered from the memory at its time, one pass per video.

Layers: :mod:`eval.benchmarks` (one module per benchmark format: its files, official prompts,
official scoring and table, on the timed questions of :mod:`videollama3.questions`),
:mod:`eval.answers` (our letter parsing), :mod:`eval.runner` (the single pass, polls, evidence
retention and weight, predictions), :mod:`eval.report` (summary, report.md, plots), :mod:`eval.cli`
(``vl3mem eval``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videollama3.exports import lazy_exports

if TYPE_CHECKING:
    from .answers import is_correct, parse_letter
    from .benchmarks import BENCHMARKS, Benchmark, BenchmarkFormat, load_benchmark, register_benchmark
    from .report import summarize
    from .runner import PredictionStore, evaluate_video, evidence_weight, retention

_EXPORTS = {
    "is_correct": "answers",
    "parse_letter": "answers",
    "BENCHMARKS": "benchmarks",
    "Benchmark": "benchmarks",
    "BenchmarkFormat": "benchmarks",
    "load_benchmark": "benchmarks",
    "register_benchmark": "benchmarks",
    "summarize": "report",
    "PredictionStore": "runner",
    "evaluate_video": "runner",
    "evidence_weight": "runner",
    "retention": "runner",
}
"""Each public name and the submodule it comes from, imported when first used
(a command's ``--help`` does not load transformers)."""

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
