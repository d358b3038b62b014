"""The prompt as DAMO's chat template renders it, and the processor's other duties."""

import pytest
import torch

from memory_bank import MemoryEntry
from videollama3.conversion import DAMO_SYSTEM_PROMPT
from videollama3.errors import QuestionError
from videollama3.loading import build_session, resolve_load_spec
from videollama3.processing import MemoryProcessor

PAD = "<|video_pad|>"


def entries(times, tokens=4):
    return [MemoryEntry(torch.zeros(tokens, 2), (1, tokens), i, t) for i, t in enumerate(times)]


def test_a_damo_prompt_is_what_damos_template_writes(tiny):
    """DAMO's template (VideoLLaMA3 videollama3/model/processor.py): ChatML turns; a video is
    'Time ' + (t | round(1) | string) + 's:' then the frame's tokens, ',' between frames and '\\n'
    after the last, then the text; the system turn first when add_system_prompt is on."""
    processor = MemoryProcessor(tiny[1], system_prompt=DAMO_SYSTEM_PROMPT)
    text = processor.build_prompt(entries([0.0, 2.25, 12.34, 61.0]), "What is moving?")
    assert text == (
        "<|im_start|>system\nYou are VideoLLaMA3 created by Alibaba DAMO Academy, a helpful assistant to help "
        "people understand images and videos.<|im_end|>\n"
        f"<|im_start|>user\nTime 0.0s:{PAD * 4},Time 2.2s:{PAD * 4},Time 12.3s:{PAD * 4},Time 61.0s:{PAD * 4}\n"
        "What is moving?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_dialogue_keeps_the_memory_in_the_first_turn(tiny):
    processor = MemoryProcessor(tiny[1])
    text = processor.build_prompt(entries([1.0], tokens=1), "And now?", [("Who?", "A cyclist.")])
    assert text == (f"<|im_start|>user\nTime 1.0s:{PAD}\nWho?<|im_end|>\n<|im_start|>assistant\nA cyclist.<|im_end|>\n"
                    "<|im_start|>user\nAnd now?<|im_end|>\n<|im_start|>assistant\n")


def test_the_tiny_model_has_no_system_prompt_and_no_system_prompt_drops_it(tiny):
    assert "system" not in build_session(*tiny).processor.build_prompt([], "Q?")
    assert resolve_load_spec("tiny").system_prompt and not resolve_load_spec("tiny", system_prompt=False).system_prompt
    with_prompt = build_session(*tiny, system_prompt=DAMO_SYSTEM_PROMPT).processor.build_prompt([], "Q?")
    assert with_prompt.startswith(f"<|im_start|>system\n{DAMO_SYSTEM_PROMPT}<|im_end|>\n")


def test_ids_have_one_pad_per_memory_token_and_special_tokens_are_refused(tiny):
    processor = MemoryProcessor(tiny[1])
    inputs = processor(entries([0.0, 1.0], tokens=3), "Q?")
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape and inputs["input_ids"].shape[0] == 1
    assert int((inputs["input_ids"] == processor.video_token_id).sum()) == 6
    with pytest.raises(QuestionError, match="special token <\\|video_pad\\|>"):
        processor(entries([0.0]), f"what is {PAD}?")
    with pytest.raises(QuestionError, match="an answer contains the special token"):
        processor([], "Q?", [("Q0", "fine<|im_end|>")])
