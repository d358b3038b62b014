"""Online (streaming) evaluation: each question answered from the memory at its time, one pass per video.

Layers: :mod:`eval.data` (benchmark loaders), :mod:`eval.answers` (prompts, letter
parsing), :mod:`eval.runner` (the single pass, evidence retention, predictions),
:mod:`eval.report` (summary, report.md, plots), :mod:`eval.cli` (``vl3mem eval``).
"""

from .answers import format_prompt, is_correct, parse_letter
from .data import (
    AnnotationError,
    Benchmark,
    TimedQuestion,
    VideoQuestions,
    load_benchmark,
)
from .report import summarize
from .runner import PredictionStore, evaluate_video, retention

__all__ = [
    "AnnotationError",
    "Benchmark",
    "PredictionStore",
    "TimedQuestion",
    "VideoQuestions",
    "evaluate_video",
    "format_prompt",
    "is_correct",
    "load_benchmark",
    "parse_letter",
    "retention",
    "summarize",
]
