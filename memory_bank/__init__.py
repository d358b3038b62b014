"""Bounded memory of a video stream, in pure PyTorch.

Imports torch only (safetensors for saving), so it can be dropped into any
video LLM. Backends (DESIGN.md sections 4-6), all behind :class:`MemoryBackend`
and built by name with :func:`build_memory`:

- ``hierarchical``: :class:`HierarchicalMemoryBank`, short / mid / long tiers;
- ``fifo``: :class:`FIFOMemory`, recent + prompted frames (SAM2);
- ``lru_quantized``: :class:`LRUQuantizedMemory`, least-used eviction, 32/16/8 bits;
- ``significance``: :class:`SignificanceMemory`, change-detected keyframes;
- ``unbounded``: :class:`UnboundedMemory`, every frame (the native model's view).
"""

from .adapter import FeatureAdapter
from .base import MemoryBackend, MemoryEntry, check_frame, pooled_descriptor
from .config import MemoryBankConfig
from .errors import MemoryBankError, MemoryConfigError
from .fifo import FIFOMemory
from .hierarchical import HierarchicalMemoryBank
from .lru import LRUQuantizedMemory, dequantize_uint8, quantize_uint8
from .registry import MEMORY_BACKENDS, build_memory, memory_options, register_memory
from .resize import resize_token_grid
from .significance import SignificanceMemory
from .unbounded import UnboundedMemory

__all__ = [
    "MEMORY_BACKENDS",
    "FIFOMemory",
    "FeatureAdapter",
    "HierarchicalMemoryBank",
    "LRUQuantizedMemory",
    "MemoryBackend",
    "MemoryBankConfig",
    "MemoryBankError",
    "MemoryConfigError",
    "MemoryEntry",
    "SignificanceMemory",
    "UnboundedMemory",
    "build_memory",
    "check_frame",
    "dequantize_uint8",
    "memory_options",
    "pooled_descriptor",
    "quantize_uint8",
    "register_memory",
    "resize_token_grid",
]
