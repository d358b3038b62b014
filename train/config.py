"""Training settings: one YAML file, with command-line overrides.

Example (``train/configs/tiny.yaml`` is a complete one)::

    model: lkhl/VideoLLaMA3-2B-Image-HF
    memory: hierarchical
    memory_options: {memory_capacities: [8, 4, 1]}
    data: {path: data/train.jsonl, format: jsonl, video_root: data/videos, fps: 1}
    lora: {r: 16, alpha: 32, dropout: 0.05}
    optimizer: {lr: 1.0e-4, scheduler: cosine, warmup_steps: 50}
    train_adapter: true
    train_projector: false
    batch_size: 1
    gradient_accumulation_steps: 8
    max_steps: 2000
    save_steps: 500
    output_dir: runs/2b-hierarchical

Every key is optional; an unknown key or a value of the wrong type is a
:class:`TrainConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videollama3.errors import UsageError
from videollama3.loading import DEFAULT_MODEL
from videollama3.options import parse_error, parse_pairs, read_config_text
from videollama3.questions import PROMPT_STYLES

LM_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PRECISIONS = ("auto", "bf16", "fp32")
DATA_FORMATS = ("jsonl", "videochat_online")


class TrainConfigError(UsageError):
    """A training config that cannot be used (file, key or value); the message names it."""


@dataclass
class DataConfig:
    """Where the training conversations are and how their videos are sampled.

    Attributes:
        path: annotation file.
        format: ``jsonl`` (the evaluation format: one conversation per line) or
            ``videochat_online`` (VideoChat-Online's ``conversations`` with ``timestamps``).
        video_root: folder the records' video paths are relative to.
        fps: frames sampled per second where a record gives none.
        frame_tokens: token budget per frame; frames keep their aspect ratio within it.
        decode_ahead: frames decoded and preprocessed ahead, in two background threads, while samples are built
            (0: in turn; :func:`videollama3.session.pipelined`).
        dialogue: earlier turns of a conversation are the dialogue the model sees
            (False: every question is asked on its own, as ``vl3mem eval`` asks them).
        prompt_style: how multiple-choice options are written (``jsonl``, ``ovo``,
            ``ovbench``: the styles of :func:`videollama3.questions.format_question`).
        max_length: tokens per sample; the oldest turns of the dialogue are dropped to fit.
        skip_bad: report bad records and train on the rest instead of stopping.
    """

    path: str = "train/data/tiny.jsonl"
    format: str = "jsonl"
    video_root: str = "../shared/videos"
    fps: float = 1.0
    frame_tokens: int = 144
    decode_ahead: int = 8
    dialogue: bool = True
    prompt_style: str = "jsonl"
    max_length: int = 4096
    skip_bad: bool = False


@dataclass
class LoraSettings:
    """LoRA (Hu et al., 2021, via peft) on the language model's linear layers only.

    Attributes:
        enabled: False trains without LoRA (adapter / projector only).
        r, alpha, dropout: rank, scaling numerator and dropout of the LoRA branch.
        target_modules: linear-layer names inside the language model's decoder layers.
        modules_to_save: language-model modules trained in full and saved with the adapter
            (peft's ``modules_to_save``, matched by name suffix), e.g. ``[lm_head]``.
    """

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LM_PROJECTIONS))
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class OptimizerConfig:
    """AdamW and its learning-rate schedule.

    Attributes:
        lr: peak learning rate.
        weight_decay, betas, eps: AdamW's.
        max_grad_norm: gradient clipping (0: none).
        scheduler: a ``transformers.get_scheduler`` name (``cosine``, ``linear``, ``constant``...).
        warmup_steps: linear warm-up, in optimizer steps.
    """

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    scheduler: str = "cosine"
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    """Everything a training run needs.

    Attributes:
        model: ``tiny``, a hub id or a local folder (native VideoLLaMA3 checkpoint).
        memory, memory_options: the memory backend, built as at inference.
        data, lora, optimizer: see their classes.
        train_adapter / train_projector: make the FeatureAdapter / projector trainable.
        batch_size: samples (turns) per forward, per process.
        gradient_accumulation_steps: forwards per optimizer step.
        max_steps: optimizer steps of the run.
        save_steps: a checkpoint every this many steps (and at the end).
        output_dir: checkpoints and TensorBoard logs.
        seed: data order, LoRA init and dropout.
        gradient_checkpointing: recompute activations in backward (less memory, ~30 % slower).
        precision: ``auto`` (bf16 where the GPU supports it, else fp32), ``bf16`` or ``fp32``.
        report_to: ``tensorboard`` or ``none``.
        system_prompt: prompts start with the system prompt the checkpoint was trained with
            (DAMO's, for DAMO checkpoints), as ``vl3mem answer`` does unless ``--no-system-prompt``.
    """

    model: str = DEFAULT_MODEL
    memory: str = "hierarchical"
    memory_options: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train_adapter: bool = True
    train_projector: bool = False
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    save_steps: int = 500
    output_dir: str = "runs/train"
    seed: int = 0
    gradient_checkpointing: bool = True
    precision: str = "auto"
    report_to: str = "tensorboard"
    system_prompt: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-able)."""
        return dataclasses.asdict(self)

    def check(self) -> TrainConfig:
        """Validate values that types alone do not catch; returns ``self``.

        Raises:
            TrainConfigError: naming the key.
        """
        for key, value in (("batch_size", self.batch_size), ("gradient_accumulation_steps",
                           self.gradient_accumulation_steps), ("max_steps", self.max_steps),
                           ("save_steps", self.save_steps), ("data.frame_tokens", self.data.frame_tokens),
                           ("data.max_length", self.data.max_length), ("lora.r", self.lora.r)):
            if value < 1:
                raise TrainConfigError(f"{key} must be >= 1, got {value}")
        if self.data.decode_ahead < 0:
            raise TrainConfigError(f"data.decode_ahead must be >= 0, got {self.data.decode_ahead}")
        if self.data.frame_tokens < 4:
            raise TrainConfigError(f"data.frame_tokens must be at least 4 (a 2x2 token grid), got {self.data.frame_tokens}")
        if not self.data.fps > 0:
            raise TrainConfigError(f"data.fps must be positive, got {self.data.fps}")
        if not self.optimizer.lr > 0:
            raise TrainConfigError(f"optimizer.lr must be positive, got {self.optimizer.lr}")
        if not 0 <= self.lora.dropout < 1:
            raise TrainConfigError(f"lora.dropout must be in [0, 1), got {self.lora.dropout}")
        o = self.optimizer
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise TrainConfigError(f"optimizer.betas must be two numbers in [0, 1), got {o.betas}")
        for key, value, ok, what in (("optimizer.eps", o.eps, o.eps > 0, "> 0"),
                                     ("optimizer.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
                                     ("optimizer.max_grad_norm", o.max_grad_norm, o.max_grad_norm >= 0, ">= 0"),
                                     ("optimizer.warmup_steps", o.warmup_steps, o.warmup_steps >= 0, ">= 0")):
            if not ok or not math.isfinite(value):
                raise TrainConfigError(f"{key} must be {what}, got {value}")
        choices = (("precision", self.precision, PRECISIONS), ("report_to", self.report_to, ("tensorboard", "none")),
                   ("data.format", self.data.format, DATA_FORMATS),
                   ("data.prompt_style", self.data.prompt_style, PROMPT_STYLES))
        for key, value, allowed in choices:
            if value not in allowed:
                raise TrainConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
        if not (self.lora.enabled or self.train_adapter or self.train_projector):
            raise TrainConfigError("nothing to train: enable lora, train_adapter or train_projector")
        return self


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """``value`` converted to ``hint`` (int -> float allowed), or TrainConfigError."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TrainConfigError(f"{key} must be a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}")
        return _build(hint, value, key + ".")
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):  # one item: "q_proj" for [q_proj]
            value = [value]
        if not isinstance(value, list):
            raise TrainConfigError(f"{key} must be a list, got {value!r}")
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise TrainConfigError(f"{key} must be {hint.__name__}, got {value!r}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise TrainConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                               f"known: {', '.join(prefix + k for k in hints)}")
    defaults = cls()
    values = {k: _check_type(data[k], hints[k], prefix + k) if k in data else getattr(defaults, k) for k in hints}
    return cls(**values)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise TrainConfigError(f"--set {key}: {p} is not a mapping")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``overrides`` (dotted keys, e.g. ``{"data.fps": 2}``).

    Raises:
        TrainConfigError: for a missing or unparsable file, an unknown key, a wrong
            type or an invalid value, naming the key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"no such training config: {path}")
        try:
            data = yaml.safe_load(read_config_text(path, TrainConfigError)) or {}
        except yaml.YAMLError as e:
            raise TrainConfigError(parse_error(path, e)) from None
        if not isinstance(data, dict):
            raise TrainConfigError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return _build(TrainConfig, data).check()


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["optimizer.lr=1e-4", "data.fps=2"]`` -> ``{"optimizer.lr": 0.0001, "data.fps": 2}``.

    Raises:
        TrainConfigError: for an item without ``=``.
    """
    return parse_pairs(pairs, "--set", "optimizer.lr=1e-4", TrainConfigError)
