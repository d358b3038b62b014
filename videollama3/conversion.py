"""DAMO's remote-code VideoLLaMA3 checkpoints in transformers' native classes: config, key names, folders.

``DAMO-NLP-SG/VideoLLaMA3-2B`` / ``-7B`` (and their ``-Image`` variants) ship remote code
(``model_type: videollama3_qwen2``, ``Videollama3Qwen2ForCausalLM``): a flat Qwen2 config with a
nested ``vision_encoder_config``, and other key names. The weights are the native model's, under
other names (pure renames, nothing reshaped), so they load into
``VideoLlama3ForConditionalGeneration`` with a converted config and ``key_mapping``:

============================================================  ==============================
remote prefix                                                 native prefix
============================================================  ==============================
``model.vision_encoder.vision_encoder.`` (training layout)     ``model.vision_model.``
``model.vision_encoder.`` (published layout)                   ``model.vision_model.``
``model.mm_projector.``                                        ``model.projector.``
``model.embed_tokens.`` / ``model.layers.`` / ``model.norm.``  ``model.language_model.`` + same
``lm_head.weight`` (absent when tied)                          ``lm_head.weight``
============================================================  ==============================

The training layout is DAMO-NLP-SG/VideoLLaMA3 issue #66. Every number of the converted config
is read from the checkpoint's own ``config.json``. Never ``trust_remote_code``: no DAMO code runs, and
the tokenizer is loaded with ``trust_remote_code=False`` said outright (the config's ``auto_map``
would otherwise make transformers ask on the terminal whether to run DAMO's code).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import VideoLlama3Config

from .errors import ModelLoadError, one_line

try:  # huggingface_hub's strict dataclasses (transformers' configs) raise their own error for a bad field
    from huggingface_hub.errors import StrictDataclassError
except ImportError:  # an older huggingface_hub validates nothing
    StrictDataclassError = TypeError
CONFIG_ERRORS = (ValueError, TypeError, StrictDataclassError)
"""What building a transformers config from a bad ``config.json`` raises."""

DAMO_MODEL_TYPE = "videollama3_qwen2"
NATIVE_MODEL_TYPE = "video_llama_3"
DAMO_SYSTEM_PROMPT = (
    "You are VideoLLaMA3 created by Alibaba DAMO Academy, a helpful assistant to help people understand "
    "images and videos."
)
"""The system prompt of DAMO's own inference example (``add_system_prompt=True``)."""

KEY_MAPPING = {
    r"^model\.vision_encoder\.vision_encoder\.": "model.vision_model.",
    r"^model\.vision_encoder\.": "model.vision_model.",
    r"^model\.mm_projector\.": "model.projector.",
    r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
}
"""Remote key name -> native key name, as transformers' ``key_mapping`` (applied in order, anchored)."""

# remote config fields that are not the language model's
_NOT_TEXT = {"vision_encoder", "vision_encoder_config", "mm_projector_type", "use_token_compression",
             "image_token_index", "auto_map", "architectures", "model_type", "transformers_version",
             "torch_dtype", "dtype", "_name_or_path"}
PROJECTOR_TYPES = ("mlp2x_gelu",)

# DAMO's processor settings (the native classes' defaults differ): checkpoints/README.md
IMAGE_PROCESSOR = {
    "image_processor_type": "VideoLlama3ImageProcessor", "processor_class": "VideoLlama3Processor",
    "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True, "patch_size": 14,
    "temporal_patch_size": 1, "merge_size": 1, "min_pixels": 3136, "max_pixels": 3211264,
    "size": {"shortest_edge": 3136, "longest_edge": 3211264},
}
VIDEO_PROCESSOR = {
    **{k: v for k, v in IMAGE_PROCESSOR.items() if k != "image_processor_type"},
    "video_processor_type": "VideoLlama3VideoProcessor", "merge_size": 2, "min_pixels": 12544,
    "max_pixels": 12845056, "size": {"shortest_edge": 12544, "longest_edge": 12845056}, "fps": 1,
    "max_frames": 180, "do_sample_frames": False,
}


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, as a dict.

    Raises:
        ModelLoadError: when the folder has none, or it does not parse.
    """
    file = Path(path) / "config.json"
    if not file.is_file():
        raise ModelLoadError(f"{path} has no config.json; give a VideoLLaMA3 checkpoint folder (native or DAMO's)")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{file} does not parse as JSON ({e})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{file} holds {type(config).__name__}, not a model config")
    return config


def checkpoint_kind(config: dict[str, Any], where: str) -> str:
    """``"native"`` or ``"damo"``: the layout a ``config.json`` describes.

    Raises:
        ModelLoadError: for a config of another model.
    """
    model_type = config.get("model_type")
    if model_type == NATIVE_MODEL_TYPE:
        return "native"
    if model_type == DAMO_MODEL_TYPE or "Videollama3Qwen2ForCausalLM" in (config.get("architectures") or []):
        return "damo"
    raise ModelLoadError(f"{where} is a {model_type!r} model, not VideoLLaMA3 (model_type {NATIVE_MODEL_TYPE!r}, "
                         f"or DAMO's {DAMO_MODEL_TYPE!r})")


def convert_config(remote: dict[str, Any], image_token_id: int = 151655, video_token_id: int = 151656) -> VideoLlama3Config:
    """A native ``VideoLlama3Config`` from a DAMO ``config.json``, every number read from it.

    The flat Qwen2 fields become ``text_config`` (``model_type: qwen2``), ``vision_encoder_config``
    becomes ``vision_config``; ``use_cache`` is turned on (the 2B file has it off); the
    placeholder ids are the tokenizer's ``<|image_pad|>`` / ``<|video_pad|>``.

    Raises:
        ModelLoadError: for a projector the native class lacks, no vision config, or a field of the
            wrong type or range (transformers' config validation).
    """
    projector = remote.get("mm_projector_type", "mlp2x_gelu")
    if projector not in PROJECTOR_TYPES:
        raise ModelLoadError(f"mm_projector_type {projector!r} has no native equivalent (the native projector is "
                             f"Linear-GELU-Linear: {', '.join(PROJECTOR_TYPES)})")
    vision = remote.get("vision_encoder_config")
    if not isinstance(vision, dict):
        raise ModelLoadError("the DAMO config has no vision_encoder_config mapping")
    text = {k: v for k, v in remote.items() if k not in _NOT_TEXT}
    tied = bool(remote.get("tie_word_embeddings", False))
    text.update(model_type="qwen2", use_cache=True, tie_word_embeddings=tied)
    vision = {k: v for k, v in vision.items() if k not in ("model_type", "architectures", "transformers_version")}
    try:
        config = VideoLlama3Config(text_config=text, vision_config={**vision, "model_type": "video_llama_3_vision"},
                                   image_token_id=image_token_id, video_token_id=video_token_id,
                                   tie_word_embeddings=tied)
    except CONFIG_ERRORS as e:
        raise ModelLoadError(f"the DAMO config.json has a bad value: {one_line(e)}") from None
    config.architectures = ["VideoLlama3ForConditionalGeneration"]
    dtype = remote.get("torch_dtype") or remote.get("dtype")
    if dtype:
        config.dtype = dtype
    return config


def native_key(name: str) -> str:
    """The native name of a remote key (:data:`KEY_MAPPING`, applied in order, as transformers does)."""
    for pattern, replacement in KEY_MAPPING.items():
        name = re.sub(pattern, replacement, name)
    return name


def shard_files(src: Path) -> list[str]:
    """The safetensors files of a checkpoint folder (from its index when sharded).

    Raises:
        ModelLoadError: when the weights or a shard named by the index are missing.
    """
    index = src / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ModelLoadError(f"{index} is not a safetensors index ({e.__class__.__name__})") from None
    elif (src / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelLoadError(f"{src} holds no model.safetensors (or model.safetensors.index.json); "
                             "a checkpoint folder needs its weights")
    missing = [f for f in files if not (src / f).is_file()]
    if missing:
        raise ModelLoadError(f"{src} is missing {len(missing)} of {len(files)} weight shards ({', '.join(missing[:3])}); "
                             "download the whole checkpoint")
    return files


def weight_shapes(src: Path, files: list[str]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a checkpoint's safetensors ``files`` (:func:`shard_files`), read
    from their headers: no weight is loaded. ``safetensors`` checks that each file's size is the one its
    header declares, so a truncated download is caught here too.

    Raises:
        ModelLoadError: for a file that is not a readable safetensors file (truncated, not safetensors).
    """
    from safetensors import SafetensorError, safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(str(src / file), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except (SafetensorError, OSError) as e:
            raise ModelLoadError(f"{src / file} is not a readable safetensors file ({one_line(e)}); "
                                 "download it again") from None
    return shapes


def check_weights(config: VideoLlama3Config, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Refuse weights (native name -> shape) that do not fill the model ``config`` describes exactly.

    The model is built on the meta device (no memory, no initialisation cost to speak of), and its
    ``state_dict`` is the list of what must be there; of a tied pair (``lm_head.weight`` and the input
    embeddings when ``tie_word_embeddings``) one is enough.

    Raises:
        ModelLoadError: :func:`refuse_weights` for a weight missing, of another shape, or unknown.
    """
    from transformers import VideoLlama3ForConditionalGeneration

    with torch.device("meta"):
        model = VideoLlama3ForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = {**model.all_tied_weights_keys, **{v: k for k, v in model.all_tied_weights_keys.items()}}
    missing = [k for k in expected if k not in shapes and tied.get(k) not in shapes]
    refuse_weights(where, missing, [k for k in shapes if k not in expected],
                   [(k, shape, expected[k]) for k, shape in shapes.items() if k in expected and shape != expected[k]])


def refuse_weights(where: str, missing: Iterable[str], unexpected: Iterable[str],
                   mismatched: Iterable[tuple[str, Sequence[int], Sequence[int]]]) -> None:
    """Raise one line naming what is wrong with a checkpoint's weights, if anything is: a weight the
    model has and the files lack (transformers would initialise it at random), one of another shape
    (``(name, shape in the files, shape in the model)``), one the model does not have (it would be
    dropped). Names are native ones.

    Raises:
        ModelLoadError: when any of the three is not empty.
    """
    missing, unexpected, mismatched = sorted(missing), sorted(unexpected), sorted(mismatched)
    problems = []
    if missing:
        problems.append(f"{len(missing)} weight(s) missing ({', '.join(missing[:3])})")
    if mismatched:
        name, found, wanted = mismatched[0]
        problems.append(f"{len(mismatched)} of another shape ({name}: {list(found)} in the files, {list(wanted)} "
                        "in the model)")
    if unexpected:
        problems.append(f"{len(unexpected)} the model does not have ({', '.join(unexpected[:3])})")
    if problems:
        raise ModelLoadError(f"the weights of {where} do not fit the model its config.json describes: "
                             f"{'; '.join(problems)}; download the whole checkpoint again, with its own config.json")


def token_ids(tokenizer: Any) -> dict[str, int]:
    """``image_token_id`` and ``video_token_id`` from a tokenizer's ``<|image_pad|>`` / ``<|video_pad|>``."""
    from .processing import IMAGE_TOKEN, VIDEO_TOKEN

    ids = {}
    for key, token in (("image_token_id", IMAGE_TOKEN), ("video_token_id", VIDEO_TOKEN)):
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id:
            raise ModelLoadError(f"the checkpoint's tokenizer has no {token} token")
        ids[key] = i
    return ids


def convert_checkpoint(src: str | Path, dst: str | Path, dtype: torch.dtype | None = None, progress: bool = True) -> Path:
    """Write a native VideoLLaMA3 folder from a DAMO remote-code checkpoint folder.

    ``dst`` gets: ``config.json`` (native), the weights under native names (one safetensors file
    per source shard, with its index), the tokenizer with its chat template, the generation
    config, and image / video processor configs with DAMO's settings, so
    ``VideoLlama3ForConditionalGeneration.from_pretrained(dst)`` loads it with no missing or
    unexpected key. The weights are renamed shard by shard (one shard in memory at a time).

    Args:
        src: a DAMO checkpoint folder (published or training layout).
        dst: the folder to write: new (created), or empty.
        dtype: cast floating weights to this dtype (default: keep the checkpoint's).
        progress: a progress bar over shards.

    Raises:
        ModelLoadError: for a folder in neither layout, a projector the native class lacks,
            missing or unreadable shards, weights that do not fit the config (:func:`check_weights`;
            checked before anything is written), a ``dst`` that is a file, holds a checkpoint or other
            files, or cannot be written (then nothing is left behind: the files are written in a
            hidden sibling folder and renamed once complete).
    """
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ModelLoadError(f"no such checkpoint folder: {src}")
    remote = read_config(src)
    if checkpoint_kind(remote, str(src)) != "damo":
        raise ModelLoadError(f"{src} is already a native VideoLLaMA3 checkpoint; load it directly")
    shards = shard_files(src)
    if (dst / "config.json").exists():
        raise ModelLoadError(f"{dst} already holds a checkpoint; give an empty folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ModelLoadError(f"{dst} is {'a file' if not dst.is_dir() else 'a folder that is not empty'}; "
                             "give a new or empty folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the tokenizer in {src} ({e.__class__.__name__})") from None
    config = convert_config(remote, **token_ids(tokenizer))
    check_weights(config, {native_key(k): shape for k, shape in weight_shapes(src, shards).items()}, str(src))
    # written next to dst, then renamed: a conversion that fails (a full disk) leaves no half checkpoint
    partial = dst.absolute().with_name(f".{dst.absolute().name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _write_native(src, partial, shards, remote, config, tokenizer, dtype, progress)
        if dst.exists():
            dst.rmdir()  # the empty folder given
        partial.rename(dst)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelLoadError(f"cannot write {dst} ({getattr(e, 'strerror', None) or one_line(e)}); nothing was "
                             "written: give a folder on a writable disk with room for the weights") from None
    return dst


def _write_native(src: Path, out: Path, shards: list[str], remote: dict[str, Any], config: VideoLlama3Config,
                  tokenizer: Any, dtype: torch.dtype | None, progress: bool) -> None:
    """The files of :func:`convert_checkpoint` in ``out``: the renamed shards (one in memory at a time) and
    their index, the config, tokenizer, generation and processor configs, ``vl3mem_conversion.json``."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm import tqdm

    weight_map: dict[str, str] = {}
    total = 0
    for shard in tqdm(shards, desc="converting", unit="shard", disable=not progress):
        with safe_open(str(src / shard), framework="pt") as f:
            tensors = {}
            for key in f.keys():
                t = f.get_tensor(key)
                tensors[native_key(key)] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard))
        del tensors
    if len(shards) > 1:
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    if dtype is not None:
        config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if (src / "generation_config.json").is_file():
        shutil.copy(src / "generation_config.json", out / "generation_config.json")
    use_compression = bool(remote.get("use_token_compression", False))
    (out / "preprocessor_config.json").write_text(json.dumps(IMAGE_PROCESSOR, indent=2))
    (out / "video_preprocessor_config.json").write_text(
        json.dumps({**VIDEO_PROCESSOR, "use_token_compression": use_compression}, indent=2))
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "VideoLlama3Processor"}, indent=2))
    (out / "vl3mem_conversion.json").write_text(json.dumps(
        {"source": str(src), "source_model_type": DAMO_MODEL_TYPE, "system_prompt": DAMO_SYSTEM_PROMPT}, indent=2))
