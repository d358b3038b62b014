"""Assembly: a checkpoint, a memory backend and a fine-tuned checkpoint into a streaming session.

- :func:`load_model`: a native VideoLLaMA3 checkpoint (hub id or folder) and its tokenizer,
  or the offline ``tiny`` model;
- :func:`resolve_load_spec`: which model, memory (name and options) and fine-tuned checkpoint
  to load, from the settings a user gives (``--model``, ``--memory``, ``--memory-option``,
  ``--memory-config``, ``--adapter``: each wins over the ones before it);
- :func:`build_session`: a loaded model wrapped for a memory backend, with its processor and
  that memory, as a :class:`~videollama3.session.StreamingSession`;
- :func:`load_session`: both, plus the fine-tuned checkpoint's weights.

The command line (``vl3mem answer`` / ``eval``), training and the benchmarks all assemble
here; no backend is named in this module except ``none``, the native view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, VideoLlama3ForConditionalGeneration

from memory_bank import MEMORY_BACKENDS, UnboundedMemory, build_memory

from .checkpoint import CheckpointInfo, load_adapter, resolve_checkpoint
from .errors import ModelLoadError, UsageError
from .modeling import VideoLlama3WithMemory
from .options import read_memory_config
from .processing import MemoryProcessor
from .session import StreamingSession

DEFAULT_MODEL = "lkhl/VideoLLaMA3-2B-Image-HF"
DEFAULT_MEMORY = "hierarchical"
NATIVE_MEMORY = "none"
"""``--memory none``: every frame (``unbounded``) with no FeatureAdapter: the native offline model."""


def memory_names() -> tuple[str, ...]:
    """Names ``--memory`` accepts: the registered backends and ``none``."""
    return (*MEMORY_BACKENDS, NATIVE_MEMORY)


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
        ``(model in eval mode, tokenizer)``.

    Raises:
        ModelLoadError: when the checkpoint cannot be found or read, with a hint.
    """
    if name_or_path == "tiny":
        from .tiny import build_tiny_model

        model, tokenizer = build_tiny_model()
        return model.to(device), tokenizer
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    local = Path(name_or_path).expanduser()
    if not local.exists() and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1):
        raise ModelLoadError(f"model folder {name_or_path} does not exist; give a hub id, a folder, or 'tiny'")
    source = str(local) if local.exists() else name_or_path
    try:
        model = VideoLlama3ForConditionalGeneration.from_pretrained(source, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as e:
        where = "folder" if local.exists() else "hub id"
        raise ModelLoadError(
            f"cannot load VideoLLaMA3 from {where} {name_or_path!r} ({e.__class__.__name__}: {str(e).splitlines()[0]}); "
            "without network access or weights, use --model tiny"
        ) from None
    return model.to(device).eval(), tokenizer


@dataclass
class LoadSpec:
    """What to load: the settings of a run, resolved.

    Attributes:
        model: ``tiny``, a hub id or a folder.
        memory: a registered backend name, or ``none`` (the native view).
        memory_options: the backend's options as given (its defaults fill the rest).
        checkpoint: the fine-tuned checkpoint to load on top (None: the base model).
        warnings: things the user should know (a checkpoint loaded on another base model).
    """

    model: str = DEFAULT_MODEL
    memory: str = DEFAULT_MEMORY
    memory_options: dict[str, Any] = field(default_factory=dict)
    checkpoint: CheckpointInfo | None = None
    warnings: list[str] = field(default_factory=list)


def resolve_load_spec(
    model: str | None = None,
    memory: str | None = None,
    memory_options: dict[str, Any] | None = None,
    memory_config: str | Path | None = None,
    adapter: str | Path | None = None,
) -> LoadSpec:
    """Resolve the model, memory and checkpoint of a run.

    Memory settings come from, each winning over the ones before it: the checkpoint's
    ``memory.yaml`` (its options apply only while its backend is kept), the
    ``memory_config`` file, then ``memory`` / ``memory_options``. Without a checkpoint the
    model defaults to :data:`DEFAULT_MODEL`, with one to the model it was trained on.

    Raises:
        UsageError: for an unknown memory name, options given to ``none``, or ``none`` with a
            checkpoint (it bypasses the trained FeatureAdapter).
        MemoryConfigError: for an unreadable memory config file.
        CheckpointError: for an unreadable checkpoint.
    """
    info = resolve_checkpoint(adapter) if adapter else None
    base_name, base_options = (info.memory, info.memory_options) if info else (None, {})
    file_name, file_options = read_memory_config(memory_config) if memory_config else (None, {})
    name = memory or file_name or base_name or DEFAULT_MEMORY
    if name not in memory_names():
        raise UsageError(f"unknown memory {name!r}; known: {', '.join(memory_names())}")
    options = {**(base_options if name == base_name else {}), **file_options, **(memory_options or {})}
    if name == NATIVE_MEMORY and options:
        raise UsageError(f"--memory none takes no options, got {sorted(options)}")
    if info is not None and name == NATIVE_MEMORY:
        raise UsageError("--memory none bypasses the fine-tuned FeatureAdapter; drop it to use --adapter")
    spec = LoadSpec(model or (info.base_model if info else DEFAULT_MODEL), name, options, info)
    if info is not None and spec.model != info.base_model:
        spec.warnings.append(f"{info.path} was trained on {info.base_model}, loading it on {spec.model}")
    return spec


def build_session(
    model: VideoLlama3ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    memory: str = DEFAULT_MEMORY,
    memory_options: dict[str, Any] | None = None,
    frame_size: int = 336,
) -> StreamingSession:
    """A streaming session on ``model`` with memory backend ``memory`` built for it.

    The memory's ``mm_hidden_size`` defaults to the vision encoder's width; the model is
    wrapped with a FeatureAdapter sized from that memory. ``none`` keeps every frame
    (``unbounded``) with no adapter: the native model.

    Raises:
        UsageError: for ``none`` with options, or an unknown name.
        MemoryConfigError: for an unknown option or an invalid value.
    """
    options = dict(memory_options or {})
    width = model.config.vision_config.hidden_size
    if memory == NATIVE_MEMORY:
        if options:
            raise UsageError(f"--memory none takes no options, got {sorted(options)}")
        backend, wrapped = UnboundedMemory(mm_hidden_size=width), VideoLlama3WithMemory(model)
    else:
        if memory not in MEMORY_BACKENDS:
            raise UsageError(f"unknown memory {memory!r}; known: {', '.join(memory_names())}")
        backend = build_memory(memory, **{"mm_hidden_size": width, **options})
        wrapped = VideoLlama3WithMemory(model, backend)
    return StreamingSession(wrapped, MemoryProcessor(tokenizer), backend, frame_size=frame_size)


def load_session(
    spec: LoadSpec, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, frame_size: int = 336
) -> StreamingSession:
    """Load ``spec.model``, build its session with ``spec``'s memory and, when ``spec`` has a
    checkpoint, load its LoRA (merged), FeatureAdapter and projector on top.

    Raises:
        ModelLoadError, MemoryConfigError, CheckpointError, UsageError.
    """
    model, tokenizer = load_model(spec.model, device=device, dtype=dtype)
    session = build_session(model, tokenizer, spec.memory, spec.memory_options, frame_size=frame_size)
    if spec.checkpoint is not None:
        load_adapter(session.model, spec.checkpoint)
    return session
