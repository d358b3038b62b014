"""UnboundedMemory: every frame at full size, never evicted (the native model's view)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import (
    MemoryBackend,
    MemoryEntry,
    check_query,
    check_state_format,
    entries_from_state,
    entries_to_state,
    own_storage,
    pooled_descriptor,
    rank_by_similarity,
)
from .config import MemoryConfig, option
from .registry import register_memory

_FORMAT = "memory_bank.unbounded/1"


@dataclass
class UnboundedConfig(MemoryConfig):
    """Settings of :class:`UnboundedMemory`."""

    mm_hidden_size: int = option(1152, "channel width C of the stored tokens", minimum=1)
    check_finite: bool = option(True, "reject frames holding NaN or Inf values")


class UnboundedMemory(MemoryBackend):
    """Keeps every frame's tokens in one tier: what offline VideoLLaMA3 sees.

    Used when the memory bank is disabled, as the reference the bounded backends
    are compared with. Memory grows with the stream: not for long videos.

    Args:
        config: an :class:`UnboundedConfig`.
        **overrides: its fields as keywords, e.g. ``mm_hidden_size=1152``.
    """

    config_class = UnboundedConfig
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
        flat, grid, frame_index, timestamp, _ = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.config.check_finite
        )
        self._entries.append(MemoryEntry(own_storage(flat), grid, frame_index, timestamp))
        self._cursor.advance(frame_index, timestamp, flat.device)
        return True

    def readout(self) -> list[MemoryEntry]:
        """Every frame, in time order."""
        return list(self._entries)

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """Frames by cosine similarity of their mean token to ``query`` (``(C,)`` or ``(n, C)``), best first.

        Raises:
            MemoryBankError: for a query of the wrong shape or a bad ``k``.
        """
        q = check_query(query, self.mm_hidden_size, k)
        if not self._entries:
            return []
        desc = torch.stack([pooled_descriptor(e.tokens) for e in self._entries])
        return rank_by_similarity(self._entries, desc, q, k, threshold)

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
        return {"format": _FORMAT, "entries": entries_to_state(self._entries), **self._cursor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output.

        Raises:
            MemoryBankError: for a state of another backend or malformed entries; nothing changes.
        """
        check_state_format(state, _FORMAT)
        entries = entries_from_state(state["entries"], self.mm_hidden_size)
        self._entries = entries
        self._cursor.load_state_dict(state, entries[-1].tokens.device if entries else None)


register_memory("unbounded", UnboundedConfig, UnboundedMemory)
