"""Bounded, hierarchical memory of a video stream, in pure PyTorch.

Imports torch only (safetensors for saving), so it can be dropped into any
video LLM. See DESIGN.md sections 4-6.
"""

from .adapter import FeatureAdapter
from .base import MemoryBackend, MemoryEntry, check_frame
from .config import MemoryBankConfig
from .errors import MemoryBankError, MemoryConfigError
from .hierarchical import HierarchicalMemoryBank, pooled_descriptor
from .resize import resize_token_grid
from .unbounded import UnboundedMemory

__all__ = [
    "FeatureAdapter",
    "HierarchicalMemoryBank",
    "MemoryBackend",
    "MemoryBankConfig",
    "MemoryBankError",
    "MemoryConfigError",
    "MemoryEntry",
    "check_frame",
    "pooled_descriptor",
    "resize_token_grid",
    "UnboundedMemory",
]
