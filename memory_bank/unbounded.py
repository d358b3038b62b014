"""UnboundedMemory: every frame at full size, never evicted (the native model's view)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import (
    MemoryBackend,
    StreamCursor,
    rejects_malformed_states,
    MemoryEntry,
    own_storage,
    pooled_descriptor,
)
from .config import MemoryConfig, check_finite_option, hidden_size_option
from .registry import register_memory



@dataclass
class UnboundedConfig(MemoryConfig):
    """Settings of :class:`UnboundedMemory`."""

    mm_hidden_size: int = hidden_size_option()
    check_finite: bool = check_finite_option()


class UnboundedMemory(MemoryBackend):
    """Keeps every frame's tokens in one tier: what offline VideoLLaMA3 sees.

    Used when the memory bank is disabled, as the reference the bounded backends
    are compared with. Memory grows with the stream: not for long videos.

    Args:
        config: an :class:`UnboundedConfig`.
        **overrides: its fields as keywords, e.g. ``mm_hidden_size=1152``.
    """

    config_class = UnboundedConfig
    state_format = "memory_bank.unbounded/1"
    memory_tier_names = ("all",)

    def clear(self) -> None:
        """Drop every frame."""
        self._entries: list[MemoryEntry] = []
        self._cursor.reset()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None) -> bool:
        """Store one frame's ``(h*w, C)`` or ``(h, w, C)`` tokens; always True.

        Raises:
            MemoryBankError: see :func:`~memory_bank.check_frame`; nothing changes.
        """
        # the descriptor is not kept here: it is computed only for the finite check
        flat, grid, frame_index, timestamp, _ = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.config.check_finite,
            describe=self.config.check_finite,
        )
        self._entries.append(MemoryEntry(own_storage(flat), grid, frame_index, timestamp))
        self._cursor.advance(frame_index, timestamp, flat.device)
        return True

    def readout(self) -> list[MemoryEntry]:
        """Every frame, in time order."""
        return list(self._entries)

    def _retrieval_index(self) -> tuple[list[MemoryEntry], torch.Tensor | None]:
        entries = list(self._entries)
        return entries, torch.stack([pooled_descriptor(e.tokens) for e in entries]) if entries else None

    def stats(self) -> dict[str, Any]:
        """Entries, tokens and bytes held."""
        tokens = sum(e.num_tokens for e in self._entries)
        nbytes = sum(e.nbytes for e in self._entries)
        tier = {"entries": len(self._entries), "capacity": None, "tokens": tokens, "bytes": nbytes,
                "evictions": 0, "merges": 0}
        return {"tiers": {"all": tier}, "entries": len(self._entries), "tokens": tokens, "bytes": nbytes,
                "frames_added": self._cursor.frames_added}

    def state_dict(self) -> dict[str, Any]:
        """Entries and the stream position (tensors are the memory's own, not copies)."""
        return self._state(self._entries)

    @rejects_malformed_states
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output.

        Raises:
            MemoryBankError: for a state of another backend or malformed entries; nothing changes.
        """
        entries = self._entries_of(state)
        cursor = StreamCursor.from_state(state, entries)
        self._entries, self._cursor = entries, cursor


register_memory("unbounded", UnboundedConfig, UnboundedMemory)
