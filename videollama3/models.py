"""Loading VideoLLaMA3 (native transformers classes) and the offline ``tiny`` model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    VideoLlama3Config,
    VideoLlama3ForConditionalGeneration,
    VideoLlama3VisionConfig,
)

from .errors import ModelLoadError

DEFAULT_MODEL = "lkhl/VideoLLaMA3-2B-Image-HF"
VIDEO_TOKEN = "<|video_pad|>"
IMAGE_TOKEN = "<|image_pad|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN, VIDEO_TOKEN]

# ChatML, the format of VideoLLaMA3's Qwen2.5 language model; used when a
# tokenizer ships without a chat template (the tiny one, some converted folders).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + VideoLLaMA3's special tokens), built offline.

    Every string round-trips through it; ``<|video_pad|>`` and friends are single tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(seed: int = 0) -> tuple[VideoLlama3ForConditionalGeneration, PreTrainedTokenizerFast]:
    """A randomly initialised VideoLLaMA3 of the native classes, small enough for CPU tests.

    Vision encoder: 2 layers, width 32, patch 14 (a 336x336 frame -> 144 tokens
    after the 2x2 merge, as in the real model); language model: Qwen2, 2 layers,
    width 64; byte-level tokenizer. Deterministic for a given ``seed``.
    """
    tokenizer = build_byte_tokenizer()
    vision = VideoLlama3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14
    )
    text = Qwen2Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), max_position_embeddings=8192, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config = VideoLlama3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoLlama3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[VideoLlama3ForConditionalGeneration, PreTrainedTokenizerBase]:
    """Load a native VideoLLaMA3 checkpoint and its tokenizer, or the ``tiny`` model.

    Args:
        name_or_path: ``"tiny"``, a hub id (e.g. ``lkhl/VideoLLaMA3-2B-Image-HF``)
            or a local folder written by ``save_pretrained``.
        device: where to put the model.
        dtype: weights dtype (``"auto"`` keeps the checkpoint's; default float32 on
            CPU, bfloat16 on CUDA).

    Returns:
        ``(model in eval mode, tokenizer with a chat template)``.

    Raises:
        ModelLoadError: when the checkpoint cannot be found or read, with a hint.
    """
    if name_or_path == "tiny":
        model, tokenizer = build_tiny_model()
        return model.to(device), tokenizer
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    local = Path(name_or_path).expanduser()
    if not local.exists() and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1):
        raise ModelLoadError(f"model folder {name_or_path} does not exist; give a hub id, a folder, or 'tiny'")
    try:
        model = VideoLlama3ForConditionalGeneration.from_pretrained(str(local) if local.exists() else name_or_path,
                                                                    dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else name_or_path)
    except (OSError, ValueError, KeyError) as e:
        where = "folder" if local.exists() else "hub id"
        raise ModelLoadError(
            f"cannot load VideoLLaMA3 from {where} {name_or_path!r} ({e.__class__.__name__}: {str(e).splitlines()[0]}); "
            "without network access or weights, use --model tiny"
        ) from None
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    return model.to(device).eval(), tokenizer
