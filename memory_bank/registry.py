"""Memory backends by name: ``build_memory("fifo", num_recent=6)``.

A name is bound in one place, :func:`register_memory` (as peft binds ``"LORA"`` to
``LoraConfig`` and ``LoraModel``); each backend's file ends with its own call. Everything
that takes a backend by name (the streaming session, ``--memory`` / ``--memory-option`` /
``--memory-config``, a checkpoint's ``memory.yaml``, a training config) goes through
:func:`build_memory` and :func:`memory_config`, so a new backend needs no change anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .config import MemoryConfig
from .errors import MemoryConfigError

if TYPE_CHECKING:
    from .base import MemoryBackend


@dataclass(frozen=True)
class MemorySpec:
    """What a name is bound to.

    Attributes:
        name: the name ``build_memory`` and ``--memory`` take.
        config_class: the backend's settings dataclass.
        backend_class: the backend.
    """

    name: str
    config_class: type[MemoryConfig]
    backend_class: type[MemoryBackend]


MEMORY_BACKENDS: dict[str, MemorySpec] = {}
"""Registered backends by name, in registration order."""


def register_memory(name: str, config_class: type[MemoryConfig], backend_class: type[MemoryBackend]) -> None:
    """Bind ``name`` to a backend and its config, for :func:`build_memory` and every ``--memory`` flag.

    Args:
        name: a new name (letters, digits, ``_``).
        config_class: a :class:`~memory_bank.config.MemoryConfig` dataclass with an ``mm_hidden_size`` field.
        backend_class: a :class:`~memory_bank.MemoryBackend` subclass whose ``config_class`` is ``config_class``.

    Raises:
        MemoryConfigError: when ``name`` is taken or malformed, or the classes do not fit together.
    """
    from .base import MemoryBackend

    if name in MEMORY_BACKENDS:
        raise MemoryConfigError(f"memory backend {name!r} is already registered")
    if not name.replace("_", "").isalnum():
        raise MemoryConfigError(f"memory backend name {name!r} must be letters, digits and '_'")
    if not (isinstance(config_class, type) and issubclass(config_class, MemoryConfig)
            and "mm_hidden_size" in {f.name for f in fields(config_class)}):
        raise MemoryConfigError(f"{config_class!r} must be a MemoryConfig dataclass with an mm_hidden_size field")
    if not (isinstance(backend_class, type) and issubclass(backend_class, MemoryBackend)):
        raise MemoryConfigError(f"{backend_class!r} must subclass memory_bank.MemoryBackend")
    if getattr(backend_class, "config_class", None) is not config_class:
        raise MemoryConfigError(f"{backend_class.__name__}.config_class must be {config_class.__name__}")
    MEMORY_BACKENDS[name] = MemorySpec(name, config_class, backend_class)


def memory_spec(name: str) -> MemorySpec:
    """The classes bound to ``name``.

    Raises:
        MemoryConfigError: for an unknown name, listing the known ones.
    """
    if name not in MEMORY_BACKENDS:
        raise MemoryConfigError(f"unknown memory backend {name!r}; known: {', '.join(MEMORY_BACKENDS)}")
    return MEMORY_BACKENDS[name]


def memory_config(name: str, **options: Any) -> MemoryConfig:
    """The config of backend ``name`` with ``options`` set (defaults for the rest).

    Raises:
        MemoryConfigError: for an unknown name or option (listing the accepted ones) or an invalid value.
    """
    return memory_spec(name).config_class.from_dict(options, what=f"memory {name!r}")


def memory_options(name: str) -> dict[str, Any]:
    """``{option: default}`` that :func:`build_memory` accepts for backend ``name``.

    Raises:
        MemoryConfigError: for an unknown name.
    """
    return {k: default for k, (default, _) in memory_spec(name).config_class.help().items()}


def build_memory(name: str, **options: Any) -> MemoryBackend:
    """Build the memory backend registered as ``name``.

    Args:
        name: ``hierarchical``, ``fifo``, ``lru_quantized``, ``significance`` or
            ``unbounded`` (or a name added with :func:`register_memory`).
        **options: fields of the backend's config, e.g. ``mm_hidden_size=1152``.

    Returns:
        A fresh, empty backend.

    Raises:
        MemoryConfigError: for an unknown name (listing the known ones), an unknown option
            (listing the accepted ones) or an invalid value.
    """
    spec = memory_spec(name)
    return spec.backend_class(memory_config(name, **options))
