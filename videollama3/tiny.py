"""The offline ``tiny`` model: a randomly initialised VideoLLaMA3 of the native classes, for CPU tests.

It is built, never downloaded: a byte-level tokenizer with VideoLLaMA3's special tokens and
small configs of the real classes (``VideoLlama3Config``), so every code path of a real
checkpoint runs on it in seconds.
"""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    VideoLlama3Config,
    VideoLlama3ForConditionalGeneration,
    VideoLlama3VisionConfig,
)

from .processing import CHATML_TEMPLATE, IMAGE_TOKEN, VIDEO_TOKEN

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN, VIDEO_TOKEN]


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

    Vision encoder: 2 layers, width 32, patch 14 (a 336x336 frame -> 12x12 = 144 tokens
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
    model = build_random_model(text, vision, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                               tokenizer.convert_tokens_to_ids(VIDEO_TOKEN), seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def build_random_model(text: Qwen2Config, vision: VideoLlama3VisionConfig, image_token_id: int, video_token_id: int,
                       seed: int = 0) -> VideoLlama3ForConditionalGeneration:
    """A randomly initialised native VideoLLaMA3 of these language-model and vision configs, in eval mode, on the
    CPU in float32; deterministic for a given ``seed`` (torch's global RNG is left as it was)."""
    config = VideoLlama3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                               image_token_id=image_token_id, video_token_id=video_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoLlama3ForConditionalGeneration(config).eval()
