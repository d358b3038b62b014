"""Online (streaming) evaluation: each question answered from the memory at its time, one pass per video.

Layers: :mod:`eval.data` (benchmark loaders, on the timed questions of
:mod:`videollama3.questions`), :mod:`eval.answers` (letter parsing, scoring), :mod:`eval.runner` (the single pass, evidence retention, predictions),
:mod:`eval.report` (summary, report.md, plots), :mod:`eval.cli` (``vl3mem eval``).
"""

from .answers import is_correct, parse_letter
from .data import Benchmark, load_benchmark
from .report import summarize
from .runner import PredictionStore, evaluate_video, retention

__all__ = [
    "Benchmark",
    "PredictionStore",
    "evaluate_video",
    "is_correct",
    "load_benchmark",
    "parse_letter",
    "retention",
    "summarize",
]
