"""The processor beside the model: memory readout + question -> prompt -> token ids (and labels).

As transformers splits ``processing_*`` from ``modeling_*``, :class:`MemoryProcessor` owns
everything textual (the memory prompt, the chat template, the system prompt, tokenisation,
training labels, decoding) and :class:`~videollama3.modeling.VideoLlama3WithMemory` owns
the tensors (encoding, embedding, forward, generate). ``StreamingSession.ask``,
``vl3mem eval`` and training samples all build their prompts here, so a model is trained
on exactly what it sees at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from memory_bank import MemoryEntry

from .errors import QuestionError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

VIDEO_TOKEN = "<|video_pad|>"
IMAGE_TOKEN = "<|image_pad|>"
RESERVED_TOKENS = (VIDEO_TOKEN, IMAGE_TOKEN, "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|stream_start|>",
                   "<|stream_end|>", "<image>")
"""Special tokens of VideoLLaMA3's tokenizers that user text may not contain (checked when input is read)."""
IGNORE_INDEX = -100
"""Label of the tokens no loss is taken on (transformers' convention)."""

# ChatML, the format of VideoLLaMA3's Qwen2.5 language model; used when a
# tokenizer ships without a chat template (the tiny one, some converted folders).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


class MemoryProcessor:
    """Prompts of VideoLLaMA3 over a memory readout, tokenised, in the model's chat template.

    A readout renders as the native video prompt: ``Time {t}s:`` (``t`` rounded to 0.1 s) followed by that
    entry's ``<|video_pad|>`` tokens, entries joined by ``,``; the question follows on a
    new line, in the first user turn of the dialogue. A merged entry is labelled with its
    start time.

    Args:
        tokenizer: the checkpoint's tokenizer (with ``<|video_pad|>`` as one token). Its chat
            template is used; ChatML when it has none.
        system_prompt: a system message put first in every prompt (None: none).

    Raises:
        ValueError: when the tokenizer has no ``<|video_pad|>`` token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.chat_template = tokenizer.chat_template or CHATML_TEMPLATE
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        if self.video_token_id is None or self.video_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {VIDEO_TOKEN} token; load the tokenizer of a VideoLLaMA3 checkpoint")
        self._special = sorted({*RESERVED_TOKENS, *tokenizer.all_special_tokens}, key=len, reverse=True)

    @property
    def pad_token_id(self) -> int:
        """Id used to pad batches (the tokenizer's pad token, else its end of sequence)."""
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def check_text(self, text: str, what: str = "the question") -> str:
        """``text`` unchanged, or :class:`QuestionError` when it holds a special token.

        A ``<|video_pad|>`` typed by a user would take the place of a visual token; the
        other special tokens would forge turns of the chat template.
        """
        for token in self._special:
            if token in text:
                raise QuestionError(f"{what} contains the special token {token}; remove it (it is reserved for "
                                    "the model's own prompt)")
        return text

    # ---------------------------------------------------------------- prompt
    def memory_prompt(self, entries: Sequence[MemoryEntry]) -> str:
        """``Time {t}s:`` + ``<|video_pad|>`` x n_i per entry, joined by ``,`` (the native format).

        ``t`` is written as DAMO's chat template writes it, ``timestamp | round(1) | string``:
        Python's ``str(round(t, 1))`` (``0.0``, ``2.5``, ``12.3``).
        """
        return ",".join(f"Time {round(float(e.timestamp), 1)}s:" + VIDEO_TOKEN * e.num_tokens for e in entries)

    def build_messages(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> list[dict[str, Any]]:
        """Chat messages: the system prompt (when set), the memory in the first user turn, earlier
        ``(question, answer)`` turns, then ``question`` (a user message; no assistant reply).

        Raises:
            QuestionError: when a text holds a special token.
        """
        texts = [q for q, _ in history] + [question]
        for t in texts:
            self.check_text(t)
        if entries:
            texts[0] = f"{self.memory_prompt(entries)}\n{texts[0]}"
        messages = [{"role": "system", "content": [_text(self.system_prompt)]}] if self.system_prompt else []
        for text, (_, answer) in zip(texts, history):
            messages += [{"role": "user", "content": [_text(text)]},
                         {"role": "assistant", "content": [_text(self.check_text(answer, "an answer"))]}]
        messages.append({"role": "user", "content": [_text(texts[-1])]})
        return messages

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        """``messages`` in the chat template, as text."""
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def build_prompt(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> str:
        """Chat-formatted text: the memory, then the question (earlier turns first, when given),
        ending with the assistant's generation prompt."""
        return self.render(self.build_messages(entries, question, history), add_generation_prompt=True)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of an already formatted text (no special tokens added)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def __call__(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> dict[str, torch.Tensor]:
        """Model inputs for a question: ``input_ids`` and ``attention_mask``, ``(1, L)`` long on the CPU,
        with one ``<|video_pad|>`` id per memory token.

        Raises:
            QuestionError: when a text holds a special token.
        """
        input_ids = torch.tensor([self.tokenize(self.build_prompt(entries, question, history))], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def training_example(
        self,
        entries: Sequence[MemoryEntry],
        question: str,
        answer: str,
        history: Sequence[tuple[str, str]] = (),
        max_length: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Token ids and labels of one answered turn, in the model's chat template.

        The prompt is :meth:`build_prompt` (what generation sees); the target is what the
        template appends for the assistant's ``answer`` (``answer<|im_end|>\\n`` for ChatML),
        and only it is labelled. The oldest dialogue turns are dropped until the example
        fits in ``max_length`` tokens.

        Returns:
            ``(input_ids (L,), labels (L,) with IGNORE_INDEX on the prompt, history turns kept)``.

        Raises:
            ValueError: when even without dialogue the example exceeds ``max_length``, or the
                chat template does not extend the prompt with the answer.
            QuestionError: when a text holds a special token.
        """
        history = list(history)
        while True:
            messages = self.build_messages(entries, question, history)
            prompt = self.render(messages, add_generation_prompt=True)
            full = self.render(messages + [{"role": "assistant", "content": [_text(self.check_text(answer, "the answer"))]}],
                               add_generation_prompt=False)
            if not full.startswith(prompt):
                raise ValueError("the chat template does not write the answer after the generation prompt; "
                                 "training needs a template whose prompt is a prefix of the answered dialogue")
            prompt_ids, target_ids = self.tokenize(prompt), self.tokenize(full[len(prompt):])
            if max_length is None or len(prompt_ids) + len(target_ids) <= max_length:
                break
            if not history:
                raise ValueError(f"the turn needs {len(prompt_ids) + len(target_ids)} tokens, more than "
                                 f"max_length={max_length}; raise it or use a smaller memory")
            history = history[1:]
        input_ids = torch.tensor(prompt_ids + target_ids, dtype=torch.long)
        labels = torch.tensor([IGNORE_INDEX] * len(prompt_ids) + target_ids, dtype=torch.long)
        return input_ids, labels, len(history)

    def decode(self, token_ids: torch.Tensor | Sequence[int]) -> str:
        """Generated ids -> text, special tokens dropped, stripped."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
