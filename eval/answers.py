"""Scoring: the option letter a free-text answer chose, and whether it is correct.

The questions are asked as :func:`videollama3.questions.format_question` writes them."""

from __future__ import annotations

import re

from videollama3.questions import LETTERS, TimedQuestion

def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def parse_letter(text: str, options: list[str]) -> str | None:
    """The option letter a free-text answer chose, or None.

    Tried in order: a letter at the start (``B``, ``(B)``, ``B.``, ``B) ...``) when
    no other option letter stands alone in the text (``B or C`` is no answer);
    ``answer/option/choice is B``; a bracketed ``(B)``; exactly one option's text
    inside the answer; a lone capital letter among the valid ones (not the word
    "A" or "I" starting a sentence).
    """
    valid = LETTERS[: len(options)]
    t = text.strip()
    if not t or not valid:
        return None
    lone = [c for c in re.findall(rf"(?<![A-Za-z'])([{valid}])(?![A-Za-z'])", t)
            if not (c in "AI" and re.search(rf"(?<![A-Za-z]){c}\s+[a-z]", t))]
    m = re.match(r"^\W*([A-Z])(?:\W|$)", t)
    if m and m.group(1) in valid and not re.match(r"^\W*(?:A|I)\s+[a-z]", t) and set(lone) <= {m.group(1)}:
        return m.group(1)
    m = re.search(rf"\b(?:answer|option|choice)\s*(?:is|would be|:)?\s*[:\-]?\s*\(?([{valid}])\)?(?![a-z])", t, re.IGNORECASE)
    article = m and m.group(1) in "AI" and re.match(r"\s+[a-z]", t[m.end():])  # "answer: A dog"
    if m and m.group(1).upper() in valid and not article:
        return m.group(1).upper()
    m = re.search(rf"\(([{valid}])\)", t)
    if m:
        return m.group(1)
    said = _normalise(t)
    hits = [LETTERS[i] for i, o in enumerate(options) if _normalise(o) and f" {_normalise(o)} " in f" {said} "]
    if len(hits) == 1:
        return hits[0]
    return lone[0] if len(set(lone)) == 1 else None


def score_answer(prediction: str, options: list[str], answer: str) -> tuple[str | None, bool]:
    """``(chosen letter or None, correct)``: by letter with options, else by the normalised
    reference text ``answer`` appearing in the prediction."""
    if options:
        letter = parse_letter(prediction, options)
        return letter, letter == answer
    reference = _normalise(answer)
    return None, bool(reference) and f" {reference} " in f" {_normalise(prediction)} "


def is_correct(question: TimedQuestion, prediction: str) -> tuple[str | None, bool]:
    """:func:`score_answer` for ``question``."""
    return score_answer(prediction, question.options, question.answer)
