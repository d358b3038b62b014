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
from transformers import AutoTokenizer, PreTrainedTokenizerBase, VideoLlama3Config, VideoLlama3ForConditionalGeneration

from memory_bank import MEMORY_BACKENDS, UnboundedMemory, build_memory

from .checkpoint import CheckpointInfo, load_adapter, resolve_checkpoint
from .errors import ModelLoadError, UsageError, one_line
from .modeling import VideoLlama3WithMemory, use_matmul_patch_embedding
from .options import NATIVE_MEMORY, check_device, memory_names, read_memory_config
from .preprocess import FRAME_TOKENS
from .processing import MemoryProcessor
from .session import StreamingSession

DEFAULT_MODEL = "DAMO-NLP-SG/VideoLLaMA3-7B"
DEFAULT_MEMORY = "hierarchical"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _config_of(name_or_path: str) -> tuple[dict[str, Any], str]:
    """``(config.json as a dict, where to load from)`` of a local folder or a hub id.

    A hub id is read from the local cache when it is there; otherwise the hub must answer
    within seconds, or this fails at once (no half-minute of retries).

    Raises:
        ModelLoadError: for a missing folder, an unreachable or unknown hub id, a bad config.
    """
    from .conversion import read_config

    local = Path(name_or_path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"--model {name_or_path} is a file; give a checkpoint folder, a hub id or 'tiny'")
        return read_config(local), str(local)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise ModelLoadError(f"model folder {name_or_path} does not exist; give a hub id, a folder, or 'tiny'")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    cached = try_to_load_from_cache(name_or_path, "config.json")
    if not isinstance(cached, str) and not _hub_reachable():
        raise ModelLoadError(f"cannot reach the Hugging Face hub to download {name_or_path!r} and it is not in the "
                             "local cache; without network access or weights, use --model tiny")
    try:
        path = cached if isinstance(cached, str) else hf_hub_download(name_or_path, "config.json")
    except (OSError, ValueError, HfHubHTTPError) as e:
        raise ModelLoadError(f"cannot load VideoLLaMA3 from hub id {name_or_path!r} ({e.__class__.__name__}: "
                             f"{str(e).splitlines()[0]}); without network access or weights, use --model tiny") from None
    return read_config(Path(path).parent), name_or_path


def native_config(name_or_path: str) -> VideoLlama3Config:
    """The native ``VideoLlama3Config`` of a checkpoint (a DAMO one converted), from its ``config.json`` alone.

    Raises:
        ModelLoadError: see :func:`_config_of`, or a config of another model.
    """
    from .conversion import CONFIG_ERRORS, checkpoint_kind, convert_config

    config, _ = _config_of(name_or_path)
    if checkpoint_kind(config, name_or_path) == "damo":
        return convert_config(config)
    try:
        return VideoLlama3Config.from_dict(config)
    except CONFIG_ERRORS as e:
        raise ModelLoadError(f"cannot read the config of {name_or_path!r} ({one_line(e)})") from None


def local_checkpoint(name_or_path: str) -> Path:
    """A checkpoint's local folder: ``name_or_path`` itself, or a hub id downloaded into the cache.

    Raises:
        ModelLoadError: as :func:`_config_of` (at once when the hub cannot be reached).
    """
    _, source = _config_of(name_or_path)
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot download {name_or_path!r} ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None


def load_checkpoint(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[VideoLlama3ForConditionalGeneration, PreTrainedTokenizerBase, str | None]:
    """:func:`load_model`, plus the system prompt the checkpoint was trained with (None: none).

    Raises:
        ModelLoadError: see :func:`load_model`.
        UsageError: for a device there is not (:func:`check_device`), before anything loads.
    """
    from safetensors import SafetensorError

    from .conversion import (
        CONFIG_ERRORS,
        DAMO_SYSTEM_PROMPT,
        KEY_MAPPING,
        checkpoint_kind,
        convert_config,
        refuse_weights,
        shard_files,
        token_ids,
        weight_shapes,
    )

    device = check_device(device)

    if name_or_path == "tiny":
        from .tiny import build_tiny_model

        model, tokenizer = build_tiny_model()
        use_matmul_patch_embedding(model)
        if isinstance(dtype, str):  # "auto": as built, float32
            dtype = None if dtype == "auto" else getattr(torch, dtype)
        return model.to(device=device, dtype=dtype), tokenizer, None
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    config, source = _config_of(name_or_path)
    kind = checkpoint_kind(config, name_or_path)
    if Path(source).is_dir():  # a missing or unreadable shard is one clear line, before anything loads
        weight_shapes(Path(source), shard_files(Path(source)))
    # every weight is checked after loading: a missing one would be random, a mismatched one an exception
    options = {"dtype": dtype, "output_loading_info": True, "ignore_mismatched_sizes": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if kind == "damo":  # DAMO's layout: converted config, weights renamed while loading
            options.update(config=convert_config(config, **token_ids(tokenizer)), key_mapping=KEY_MAPPING)
        model, info = VideoLlama3ForConditionalGeneration.from_pretrained(source, **options)
    except (OSError, KeyError, SafetensorError, *CONFIG_ERRORS) as e:
        if isinstance(e, ModelLoadError):
            raise
        raise ModelLoadError(
            f"cannot load VideoLLaMA3 from {name_or_path!r} ({e.__class__.__name__}: {one_line(e)[:300]}); "
            "without network access or weights, use --model tiny"
        ) from None
    refuse_weights(name_or_path, info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"])
    system_prompt = DAMO_SYSTEM_PROMPT if kind == "damo" or _converted(source) else None
    use_matmul_patch_embedding(model)
    return model.to(device).eval(), tokenizer, system_prompt


def _converted(source: str) -> bool:
    """Whether a local folder was written by ``vl3mem convert`` (a DAMO model in native layout)."""
    return (Path(source) / "vl3mem_conversion.json").is_file()


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[VideoLlama3ForConditionalGeneration, PreTrainedTokenizerBase]:
    """Load a VideoLLaMA3 checkpoint and its tokenizer, or the ``tiny`` model.

    Args:
        name_or_path: ``"tiny"``, a hub id or a local folder, in transformers' native layout
            (``model_type: video_llama_3``, e.g. ``lkhl/VideoLLaMA3-2B-Image-HF``) or in DAMO's
            remote-code layout (``DAMO-NLP-SG/VideoLLaMA3-7B``, ``-2B``: converted while loading,
            see :mod:`videollama3.conversion`; no remote code runs).
        device: where to put the model.
        dtype: weights dtype (``"auto"`` keeps the checkpoint's; default float32 on
            CPU, bfloat16 on CUDA).

    Returns:
        ``(model in eval mode, tokenizer)``. The vision encoder's patch embedding is a
        :class:`~videollama3.modeling.MatmulPatchEmbedding` (the same parameters, the native
        convolution's values to float rounding; 1.2x faster encoding of the tiny model on the CPU).

    Raises:
        ModelLoadError: when the checkpoint cannot be found or read (at once when the hub
            cannot be reached), is not VideoLLaMA3, or its weights do not fill the model its
            config describes (a weight missing, of another shape, or unknown: never a model with
            random weights), with a hint.
    """
    model, tokenizer, _ = load_checkpoint(name_or_path, device, dtype)
    return model, tokenizer


@dataclass
class LoadSpec:
    """What to load: the settings of a run, resolved.

    Attributes:
        model: ``tiny``, a hub id or a folder.
        memory: a registered backend name, or ``none`` (the native view).
        memory_options: the backend's options as given (its defaults fill the rest).
        checkpoint: the fine-tuned checkpoint to load on top (None: the base model).
        system_prompt: use the system prompt the checkpoint was trained with (DAMO's), if any.
        warnings: things the user should know (a checkpoint loaded on another base model).
    """

    model: str = DEFAULT_MODEL
    memory: str = DEFAULT_MEMORY
    memory_options: dict[str, Any] = field(default_factory=dict)
    checkpoint: CheckpointInfo | None = None
    system_prompt: bool = True
    warnings: list[str] = field(default_factory=list)


def resolve_load_spec(
    model: str | None = None,
    memory: str | None = None,
    memory_options: dict[str, Any] | None = None,
    memory_config: str | Path | None = None,
    adapter: str | Path | None = None,
    system_prompt: bool = True,
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
    spec = LoadSpec(model or (info.base_model if info else DEFAULT_MODEL), name, options, info, system_prompt)
    if info is not None and spec.model != info.base_model:
        spec.warnings.append(f"{info.path} was trained on {info.base_model}, loading it on {spec.model}")
    return spec


def build_session(
    model: VideoLlama3ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    memory: str = DEFAULT_MEMORY,
    memory_options: dict[str, Any] | None = None,
    frame_tokens: int = FRAME_TOKENS,
    system_prompt: str | None = None,
) -> StreamingSession:
    """A streaming session on ``model`` with memory backend ``memory`` built for it.

    ``system_prompt`` is put first in every prompt (see :class:`~videollama3.processing.MemoryProcessor`).

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
    return StreamingSession(wrapped, MemoryProcessor(tokenizer, system_prompt), backend, frame_tokens=frame_tokens)


def load_session(
    spec: LoadSpec, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, frame_tokens: int = FRAME_TOKENS
) -> StreamingSession:
    """Load ``spec.model``, build its session with ``spec``'s memory and, when ``spec`` has a
    checkpoint, load its LoRA (merged), FeatureAdapter and projector on top. The prompt has
    the system prompt the checkpoint was trained with (DAMO's), unless ``spec.system_prompt`` is off.

    Raises:
        ModelLoadError, MemoryConfigError, CheckpointError, UsageError.
    """
    model, tokenizer, system_prompt = load_checkpoint(spec.model, device=device, dtype=dtype)
    session = build_session(model, tokenizer, spec.memory, spec.memory_options, frame_tokens=frame_tokens,
                            system_prompt=system_prompt if spec.system_prompt else None)
    if spec.checkpoint is not None:
        load_adapter(session.model, spec.checkpoint)
    return session
