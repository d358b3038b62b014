"""Memory options from the command line (``key=value``) or a small YAML / JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from memory_bank import MEMORY_BACKENDS, MemoryConfigError

from .errors import UsageError

NATIVE_MEMORY = "none"
"""``--memory none``: every frame (``unbounded``) with no FeatureAdapter: the native offline model."""


def memory_names() -> tuple[str, ...]:
    """Names ``--memory`` accepts: the registered backends and ``none``."""
    return (*MEMORY_BACKENDS, NATIVE_MEMORY)


def parse_value(text: str) -> Any:
    """A command-line value as Python: JSON when it parses (``6``, ``0.5``, ``true``,
    ``[8, 4, 1]``), a comma list of such values (``8,4,1``), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",")]
    return text


def parse_pairs(pairs: list[str], flag: str, example: str, error: type[Exception]) -> dict[str, Any]:
    """``["a=1", "b=8,4,1"]`` -> ``{"a": 1, "b": [8, 4, 1]}`` (values by :func:`parse_value`).

    Args:
        pairs: the ``KEY=VALUE`` items given to ``flag``.
        flag / example: how the error names the flag and shows a good item.
        error: the exception class raised.

    Raises:
        error: for an item without ``=`` or with an empty key.
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error(f"{flag} {pair!r} is not key=value (e.g. {example})")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_memory_options(pairs: list[str]) -> dict[str, Any]:
    """``["num_recent=4", "memory_capacities=8,4,1"]`` -> ``{"num_recent": 4, "memory_capacities": [8, 4, 1]}``.

    Raises:
        MemoryConfigError: for an item without ``=`` or with an empty key.
    """
    return parse_pairs(pairs, "--memory-option", "num_recent=6", MemoryConfigError)


def parse_error(path: str | Path, error: Exception) -> str:
    """One line saying where a YAML / JSON file does not parse (PyYAML's own message spans several)."""
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        return f"{path} does not parse at line {mark.line + 1}, column {mark.column + 1}: {getattr(error, 'problem', error)}"
    if isinstance(error, json.JSONDecodeError):
        return f"{path} does not parse at line {error.lineno}, column {error.colno}: {error.msg}"
    return f"{path} does not parse: {' '.join(str(error).split())}"


def read_config_text(path: str | Path, error: type[Exception], what: str = "file") -> str:
    """A settings or annotation file's UTF-8 text.

    Args:
        path: the file.
        error: the exception raised on failure.
        what: what the file is, for the message (``no such annotation file: ...``).

    Raises:
        error: when the file is missing, unreadable or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"no such {what}: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise error(f"cannot read {path} ({e.strerror})") from None


def read_memory_config(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read ``{"memory": NAME (optional), "options": {...}}`` or a flat mapping of options
    from a ``.yaml`` / ``.yml`` / ``.json`` file.

    Returns:
        ``(name or None, options)``.

    Raises:
        MemoryConfigError: for a missing or unparsable file, or one that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise MemoryConfigError(f"no such memory config file: {path}")
    import yaml

    text = read_config_text(path, MemoryConfigError)
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise MemoryConfigError(parse_error(path, e)) from None
    if not isinstance(data, dict):
        raise MemoryConfigError(f"{path} must hold a mapping of memory options, got {type(data).__name__}")
    name = data.pop("memory", None)
    options = data.pop("options", None)
    if options is None:
        options = data
    elif data:
        raise MemoryConfigError(f"{path}: put every option under 'options' (found {sorted(data)} beside it)")
    if not isinstance(options, dict):
        raise MemoryConfigError(f"{path}: 'options' must be a mapping")
    return name, options


def check_output_path(path: str | Path, flag: str, folder: bool = False, error: type[Exception] = UsageError) -> None:
    """Raise ``error`` unless ``path`` can be written: checked before any work, so no computed
    answer is lost to a typo.

    Args:
        path: the file (or folder, with ``folder``) to write.
        flag: the flag or setting that gave it, for the message.
        error: the exception raised (:class:`~videollama3.errors.UsageError` by default).
    """
    path = Path(path)
    target = path if folder else path.parent
    if not folder and path.is_dir():
        raise error(f"{flag} {path} is a folder; give a file name")
    if folder and path.exists() and not path.is_dir():
        raise error(f"{flag} {path} is a file; give a folder")
    blocker = next((p for p in [target, *target.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise error(f"{flag} {path}: {blocker} is a file, not a folder")
    if blocker is not None and not os.access(blocker, os.W_OK | os.X_OK):
        raise error(f"{flag} {path}: {blocker} is not writable")
    if blocker is not None:
        try:  # os.access answers yes to root anywhere; a read-only or virtual file system (/proc) says no here
            tempfile.TemporaryFile(dir=blocker).close()
        except OSError as e:
            raise error(f"{flag} {path}: cannot write in {blocker} ({e.strerror or e})") from None


def check_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`, checked before anything is loaded onto it.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a :class:`torch.device`...
        what: how the message names it (``"--device"`` on the command line).

    Raises:
        UsageError: for a name torch does not know, CUDA where torch has none (a CPU build, or no GPU),
            or a GPU index beyond the GPUs there are.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{what} {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{what} {device}: this machine has no CUDA GPU (or torch is a CPU build); use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise UsageError(f"{what} {device}: there are {torch.cuda.device_count()} GPUs (cuda:0 to "
                             f"cuda:{torch.cuda.device_count() - 1})")
    return resolved
