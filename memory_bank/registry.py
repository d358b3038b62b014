"""Memory backends by name: ``build_memory("fifo", num_recent=6)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .base import MemoryBackend
from .config import MemoryBankConfig
from .errors import MemoryConfigError
from .fifo import FIFOMemory
from .hierarchical import HierarchicalMemoryBank
from .lru import LRUQuantizedMemory
from .significance import SignificanceMemory
from .unbounded import UnboundedMemory


def _hierarchical(**options: Any) -> HierarchicalMemoryBank:
    return HierarchicalMemoryBank(MemoryBankConfig.from_dict(options))


MEMORY_BACKENDS: dict[str, Callable[..., MemoryBackend]] = {
    "hierarchical": _hierarchical,
    "fifo": FIFOMemory,
    "lru_quantized": LRUQuantizedMemory,
    "significance": SignificanceMemory,
    "unbounded": UnboundedMemory,
}
"""Factories by name; each takes ``mm_hidden_size`` and its own options as keywords."""


def memory_options(name: str) -> dict[str, Any]:
    """``{option: default}`` that :func:`build_memory` accepts for backend ``name``.

    Raises:
        MemoryConfigError: for an unknown name.
    """
    factory = _factory(name)
    if factory is _hierarchical:
        return MemoryBankConfig().to_dict()
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def _factory(name: str) -> Callable[..., MemoryBackend]:
    if name not in MEMORY_BACKENDS:
        raise MemoryConfigError(f"unknown memory backend {name!r}; known: {', '.join(MEMORY_BACKENDS)}")
    return MEMORY_BACKENDS[name]


def build_memory(name: str, **options: Any) -> MemoryBackend:
    """Build the memory backend registered as ``name``.

    Args:
        name: ``hierarchical``, ``fifo``, ``lru_quantized``, ``significance`` or
            ``unbounded`` (or a name added with :func:`register_memory`).
        **options: the backend's options, e.g. ``mm_hidden_size=1152``; for
            ``hierarchical`` the :class:`MemoryBankConfig` fields.

    Returns:
        A fresh, empty backend.

    Raises:
        MemoryConfigError: for an unknown name (listing the known ones), an
            unknown option (listing the accepted ones) or an invalid value.
    """
    factory = _factory(name)
    accepted = memory_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise MemoryConfigError(
            f"unknown option(s) {', '.join(unknown)} for memory {name!r}; accepted: {', '.join(accepted)}"
        )
    return factory(**options)


def register_memory(name: str, factory: Callable[..., MemoryBackend]) -> None:
    """Make ``build_memory(name, ...)`` call ``factory(**options)``.

    Raises:
        MemoryConfigError: when ``name`` is taken.
    """
    if name in MEMORY_BACKENDS:
        raise MemoryConfigError(f"memory backend {name!r} is already registered")
    MEMORY_BACKENDS[name] = factory
