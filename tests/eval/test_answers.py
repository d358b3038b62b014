"""Prompts in each benchmark's style; the chosen letter parsed from messy free text."""

import pytest

from eval.answers import is_correct, parse_letter
from videollama3.questions import format_question
from videollama3.questions import TimedQuestion

OPTIONS = ["A tripod", "A bicycle", "A bench", "A dog"]


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"), ("(C)", "C"), ("D.", "D"), ("B. A bicycle", "B"), ("D) a dog", "D"), ("  c  ", None),
        ("The answer is D.", "D"), ("answer: c", "C"), ("Answer:(B)", "B"), ("The correct choice would be D", "D"),
        ("Option B is right", "B"), ("I think it's (B).", "B"), ("It is a bench.", "C"),
        ("A tripod stands there", "A"), ("A", "A"), ("A.", "A"),
        ("I don't know", None), ("", None), ("B or C", None), ("a bicycle near a bench", None),
        ("E", None), ("**B**", "B"), ("Answer: A dog", "D"),
    ],
)
def test_parse_letter(text, letter):
    assert parse_letter(text, OPTIONS) == letter


def test_prompt_styles_and_scoring():
    q = TimedQuestion("1", 3.0, "What is it?", ["red", "blue"], "B")
    assert format_question(q, "ovo") == (  # OVO-Bench's constant.py, byte for byte
        "\nQuestion: What is it?\nOptions:\nA. red; B. blue;\n\nRespond only with the letter corresponding to your "
        "chosen option (e.g., A, B, C). \nDo not include any additional text or explanation in your response.\n")
    assert format_question(q, "jsonl").splitlines()[1:4] == ["Options:", "(A) red", "(B) blue"]
    assert format_question(q, "ovbench") == ("What is it?\nA. red\nB. blue\n"
                                           "Answer with the option's letter from the given choices directly.")
    assert is_correct(q, "The answer is (B)") == ("B", True)
    assert is_correct(q, "red") == ("A", False)
    open_q = TimedQuestion("2", 1.0, "What moves?", [], "a bike")
    assert format_question(open_q) == "What moves?"
    assert is_correct(open_q, "I see A bike, moving.") == (None, True)
    assert is_correct(open_q, "a bicycle") == (None, False)
