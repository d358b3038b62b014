"""Fine-tuned checkpoints: what ``vl3mem train`` writes and ``--adapter DIR`` loads.

A checkpoint is one folder, loaded on top of the base model it was trained from:

- ``adapter_config.json`` + ``adapter_model.safetensors``: the LoRA adapter of the
  language model, in peft's format (absent when training used no LoRA), so
  ``peft.PeftModel.from_pretrained(VideoLlama3ForConditionalGeneration..., DIR)`` reads it too;
- ``feature_adapter.safetensors``: the :class:`~memory_bank.FeatureAdapter` (absent for the
  native view, ``memory: none``, which has none);
- ``projector.safetensors``: the vision-to-language projector, when it was trained;
- ``memory.yaml``: the memory it was trained with, ``{memory: NAME, options: {...}}``
  (the format of ``--memory-config``);
- ``vl3mem_checkpoint.json``: the base model, the parts present, the training step.

A training output folder holds ``checkpoint-STEP`` folders; :func:`resolve_checkpoint`
takes either a checkpoint or such a folder (its latest checkpoint).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, one_line
from .modeling import VideoLlama3WithMemory

FORMAT_VERSION = 1
META_FILE = "vl3mem_checkpoint.json"
MEMORY_FILE = "memory.yaml"
FEATURE_ADAPTER_FILE = "feature_adapter.safetensors"
PROJECTOR_FILE = "projector.safetensors"
LORA_FILE = "adapter_model.safetensors"


@dataclass
class CheckpointInfo:
    """What a checkpoint folder holds (from its ``vl3mem_checkpoint.json`` and ``memory.yaml``).

    Attributes:
        path: the checkpoint folder.
        base_model: the model it was trained from (``tiny``, a hub id or a folder).
        memory: the memory backend's name; memory_options: its options.
        lora / projector: whether those parts are in the folder.
        step: the optimizer step it was saved at.
    """

    path: Path
    base_model: str
    memory: str
    memory_options: dict[str, Any] = field(default_factory=dict)
    lora: bool = False
    projector: bool = False
    step: int = 0


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(prefix)}


def save_checkpoint(
    directory: str | Path,
    wrapped: VideoLlama3WithMemory,
    *,
    base_model: str,
    memory: str,
    memory_options: dict[str, Any],
    peft_model: Any | None = None,
    projector: bool = False,
    step: int = 0,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder (module docstring).

    Args:
        directory: created when missing; files in it are overwritten.
        wrapped: the model; its FeatureAdapter is saved when it has one.
        base_model: what :func:`~videollama3.loading.load_model` loads it on top of.
        memory, memory_options: the memory backend it was trained with.
        peft_model: the ``peft.PeftModel`` around ``wrapped.model`` (None: no LoRA).
        projector: save the projector (when it was trained).
        step: training step, recorded.
        state_dict: ``wrapped``'s full state dict when the caller gathered it (ZeRO-3
            shards parameters: pass ``accelerator.get_state_dict(model)``); default
            ``wrapped.state_dict()``.

    Returns:
        The folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = wrapped.state_dict() if state_dict is None else state_dict
    if peft_model is not None:
        # peft names parameters from the PeftModel: base_model.model.<the native model's names>;
        # it keeps the adapter's own (LoRA, modules_to_save) and writes them in its format
        peft_state = {"base_model.model." + k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        peft_model.save_pretrained(str(directory), state_dict=peft_state)
    if wrapped.adapter is not None:
        save_file(_prefixed(state, "adapter."), str(directory / FEATURE_ADAPTER_FILE))
    if projector:
        save_file(_prefixed(state, "model.model.projector."), str(directory / PROJECTOR_FILE))
    options = json.loads(json.dumps(memory_options))  # YAML-safe: tuples become lists
    (directory / MEMORY_FILE).write_text(yaml.safe_dump({"memory": memory, "options": options}, sort_keys=False))
    meta = {"format": FORMAT_VERSION, "base_model": base_model, "memory": memory, "lora": peft_model is not None,
            "projector": projector, "step": step}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def _step_of(path: Path) -> int:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-STEP`` folder with the highest step in ``output_dir`` (None when there is none)."""
    output_dir = Path(output_dir)
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0 and (p / META_FILE).is_file()]
    return max(found, key=_step_of) if found else None


def resolve_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a checkpoint folder, or a training output folder's latest checkpoint.

    Raises:
        CheckpointError: for a missing folder, a folder without a checkpoint, or
            unreadable metadata.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"no such checkpoint folder: {path}")
    if not (path / META_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path} holds neither {META_FILE} nor checkpoint-STEP folders; "
                                  "give a folder written by vl3mem train")
        path = latest
    try:
        meta = json.loads((path / META_FILE).read_text())
        memory = yaml.safe_load((path / MEMORY_FILE).read_text())
        for file, content in ((META_FILE, meta), (MEMORY_FILE, memory)):
            if not isinstance(content, dict):
                raise TypeError(f"{file} holds a {type(content).__name__}, not a mapping")
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')!r}, this version reads {FORMAT_VERSION}")
        return CheckpointInfo(path=path, base_model=str(meta["base_model"]), memory=str(memory["memory"]),
                              memory_options=dict(memory.get("options") or {}), lora=bool(meta["lora"]),
                              projector=bool(meta["projector"]), step=int(meta.get("step", 0)))
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.__class__.__name__}: {e})") from None


def _load_module(module: torch.nn.Module, file: Path, what: str) -> None:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{what} in {file} is not a readable safetensors file ({one_line(e)}); the checkpoint "
                              "is damaged: use another one, or train again") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{what} in {file} does not fit this model ({str(e).splitlines()[0]}...); load it on the base "
            "model and with the memory it was trained with"
        ) from None


def load_adapter(wrapped: VideoLlama3WithMemory, info: CheckpointInfo) -> VideoLlama3WithMemory:
    """Load a checkpoint's trained parts into ``wrapped`` (in place) and return it.

    The LoRA adapter is read with peft onto ``wrapped.model`` (the native model) and
    merged into its weights (no LoRA cost at inference). The
    FeatureAdapter and, when saved, the projector replace ``wrapped``'s.

    Args:
        wrapped: built on ``info.base_model`` with ``info``'s memory (its FeatureAdapter
            must have the saved shape: same memory width and tier count).
        info: from :func:`resolve_checkpoint`.

    Raises:
        CheckpointError: when a part is missing or does not fit the model.
    """
    if info.lora:
        from peft import PeftModel

        try:
            peft_model = PeftModel.from_pretrained(wrapped.model, str(info.path))
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            raise CheckpointError(f"cannot load the LoRA adapter in {info.path} "
                                  f"({e.__class__.__name__}: {one_line(e)})") from None
        wrapped.model = peft_model.merge_and_unload()
    if wrapped.adapter is not None:
        _load_module(wrapped.adapter, info.path / FEATURE_ADAPTER_FILE, "the FeatureAdapter")
    if info.projector:
        _load_module(wrapped.model.model.projector, info.path / PROJECTOR_FILE, "the projector")
    return wrapped
