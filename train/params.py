"""Trainable-parameter counts of a training config on a model, without loading weights.

The model is built on PyTorch's ``meta`` device from its config alone, then prepared
exactly as training prepares it (LoRA, FeatureAdapter, projector flags)::

    python -m train.params --config train/configs/tiny.yaml                   # the config's model
    python -m train.params --config my.yaml --model /path/to/VideoLLaMA3-2B   # a local checkpoint's config
    python -m train.params --config my.yaml --model videollama3-2b            # offline: published sizes

``videollama3-2b`` is VideoLLaMA3-2B's architecture from its published sizes (language
model Qwen2.5-1.5B: width 1536, 28 layers, 12 heads / 2 KV heads, MLP 8960, vocabulary
151936, tied embeddings; vision encoder SigLIP-NaViT: width 1152, 27 layers, 16 heads,
MLP 4304, patch 14; two-layer GELU projector), for machines that cannot reach the hub.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from .config import TrainConfig, load_config, parse_overrides

PRESETS = {
    "videollama3-2b": {
        "text_config": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
                        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                        "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768},
        "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                          "num_attention_heads": 16, "patch_size": 14},
    },
}


def model_config(name: str):
    """A ``VideoLlama3Config``: a preset name, ``tiny``, a local folder or a hub id (config only; a
    DAMO remote-code checkpoint's is converted).

    Raises:
        ModelLoadError: when the config cannot be read.
    """
    from transformers import VideoLlama3Config

    from videollama3.errors import ModelLoadError
    from videollama3.loading import native_config
    from videollama3.tiny import build_tiny_model

    if name in PRESETS:
        return VideoLlama3Config(**PRESETS[name])
    if name == "tiny":
        return build_tiny_model()[0].config
    try:
        return native_config(name)
    except ModelLoadError as e:
        raise ModelLoadError(f"{e}; offline, use one of {', '.join(PRESETS)}") from None


def count_for(config: TrainConfig, model_name: str | None = None) -> dict[str, int]:
    """:func:`~train.trainer.count_parameters` of ``config`` applied to ``model_name``'s architecture
    (default ``config.model``), built on the meta device (no weights, no memory)."""
    from transformers import AutoTokenizer, VideoLlama3ForConditionalGeneration

    from videollama3.conversion import token_ids
    from videollama3.loading import build_session
    from videollama3.tiny import build_byte_tokenizer

    from .trainer import count_parameters, prepare_model

    name = model_name or config.model
    mc = model_config(name)
    # counting needs no real tokenizer, only one whose <|video_pad|> id the model config agrees with
    tokenizer = (build_byte_tokenizer() if name in PRESETS or name == "tiny"
                 else AutoTokenizer.from_pretrained(name, trust_remote_code=False))
    for key, value in token_ids(tokenizer).items():
        setattr(mc, key, value)
    with torch.device("meta"):
        model = VideoLlama3ForConditionalGeneration(mc)
    wrapped = build_session(model, tokenizer, config.memory, config.memory_options).model
    prepare_model(wrapped, config)
    return count_parameters(wrapped)


def main(argv: list[str] | None = None) -> int:
    """``python -m train.params --config FILE [--model NAME] [--set KEY=VALUE ...]``."""
    parser = argparse.ArgumentParser(prog="python -m train.params", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", help=f"'tiny', {', '.join(PRESETS)}, a folder or a hub id (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    counts = count_for(load_config(args.config, parse_overrides(args.set)), args.model)
    for key, value in counts.items():
        print(f"{key:>16}: {value:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
