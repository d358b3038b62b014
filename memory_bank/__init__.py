"""Bounded memory of a video stream, in pure PyTorch.

Imports torch only (safetensors for saving), so it can be dropped into any
video LLM. Backends (docs/design.md section 6), all subclasses of :class:`MemoryBackend`, each
a config dataclass plus a class bound to a name by :func:`register_memory`, built by
name with :func:`build_memory`:

- ``hierarchical``: :class:`HierarchicalMemoryBank`, short / mid / long tiers;
- ``fifo``: :class:`FIFOMemory`, recent + prompted frames (SAM2);
- ``lru_quantized``: :class:`LRUQuantizedMemory`, least-used eviction, 32/16/8 bits;
- ``significance``: :class:`SignificanceMemory`, change-detected keyframes;
- ``unbounded``: :class:`UnboundedMemory`, every frame (the native model's view).
"""

from .adapter import FeatureAdapter
from .base import MemoryBackend, MemoryEntry, check_frame, pooled_descriptor
from .config import MemoryConfig, option
from .errors import MemoryBankError, MemoryConfigError
from .registry import MEMORY_BACKENDS, MemorySpec, build_memory, memory_config, memory_options, register_memory

# each backend's module registers its name on import (registration order = listing order)
from .hierarchical import HierarchicalMemoryBank, MemoryBankConfig  # isort: skip
from .fifo import FIFOConfig, FIFOMemory  # isort: skip
from .lru import LRUQuantizedConfig, LRUQuantizedMemory, dequantize_uint8, quantize_uint8  # isort: skip
from .significance import SignificanceConfig, SignificanceMemory  # isort: skip
from .unbounded import UnboundedConfig, UnboundedMemory  # isort: skip
from .resize import fit_grid, resize_token_grid  # isort: skip

__all__ = [
    "MEMORY_BACKENDS",
    "FIFOConfig",
    "FIFOMemory",
    "FeatureAdapter",
    "HierarchicalMemoryBank",
    "LRUQuantizedConfig",
    "LRUQuantizedMemory",
    "MemoryBackend",
    "MemoryBankConfig",
    "MemoryBankError",
    "MemoryConfig",
    "MemoryConfigError",
    "MemoryEntry",
    "MemorySpec",
    "SignificanceConfig",
    "SignificanceMemory",
    "UnboundedConfig",
    "UnboundedMemory",
    "build_memory",
    "check_frame",
    "dequantize_uint8",
    "memory_config",
    "memory_options",
    "option",
    "pooled_descriptor",
    "quantize_uint8",
    "register_memory",
    "fit_grid",
    "resize_token_grid",
]
