"""UnboundedMemory: every frame at full size, never evicted (the native model's view)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import MemoryEntry, check_frame
from .errors import MemoryBankError
from .hierarchical import own_storage


class UnboundedMemory:
    """Keeps every frame's tokens in one tier: what offline VideoLLaMA3 sees.

    Used when the memory bank is disabled, as the reference the bounded backends
    are compared with. Memory grows with the stream: not for long videos.

    Args:
        mm_hidden_size: channel width ``C`` of the tokens.
        check_finite: reject NaN / Inf frames.
    """

    def __init__(self, mm_hidden_size: int, check_finite: bool = True) -> None:
        self.mm_hidden_size = mm_hidden_size
        self.check_finite = check_finite
        self.memory_tier_names = ("all",)
        self.clear()

    def clear(self) -> None:
        """Drop every frame."""
        self._entries: list[MemoryEntry] = []
        self._last: tuple[int, float] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None) -> bool:
        """Store one frame's ``(h*w, C)`` or ``(h, w, C)`` tokens; see :func:`~memory_bank.check_frame` for errors."""
        last_i, last_t = self._last if self._last else (None, None)
        flat, grid, frame_index, timestamp, _ = check_frame(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size,
            last_frame_index=last_i, last_timestamp=last_t, check_finite=self.check_finite,
        )
        self._entries.append(MemoryEntry(own_storage(flat), grid, frame_index, timestamp))
        self._last = (frame_index, timestamp)
        return True

    def readout(self) -> list[MemoryEntry]:
        """Every frame, in time order."""
        return list(self._entries)

    def retrieve(self, query: torch.Tensor, k: int | None = None, threshold: float | None = None):
        """Frames by cosine similarity of their mean token to ``query`` (``(C,)`` or ``(n, C)``), best first."""
        if query.shape[-1] != self.mm_hidden_size:
            raise MemoryBankError(f"query must have width {self.mm_hidden_size}, got shape {tuple(query.shape)}")
        if not self._entries:
            return []
        q = F.normalize(query.reshape(-1, self.mm_hidden_size).float().mean(0), dim=0)
        desc = F.normalize(torch.stack([e.tokens.float().mean(0) for e in self._entries]), dim=1)
        scores = (desc @ q.to(desc.device)).tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        hits = [(self._entries[i], scores[i]) for i in order if threshold is None or scores[i] >= threshold]
        return hits if k is None else hits[:k]

    def stats(self) -> dict[str, Any]:
        """Entries, tokens and bytes held."""
        tokens = sum(e.num_tokens for e in self._entries)
        nbytes = sum(e.tokens.numel() * e.tokens.element_size() for e in self._entries)
        tier = {"entries": len(self._entries), "capacity": None, "tokens": tokens, "bytes": nbytes,
                "evictions": 0, "merges": 0}
        return {"tiers": {"all": tier}, "entries": len(self._entries), "tokens": tokens, "bytes": nbytes,
                "frames_added": len(self._entries)}

    def state_dict(self) -> dict[str, Any]:
        """Entries and the last frame seen."""
        return {"entries": [{"tokens": e.tokens, **e.metadata()} for e in self._entries], "last": self._last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        entries = [MemoryEntry.from_metadata(s["tokens"], {k: v for k, v in s.items() if k != "tokens"})
                   for s in state["entries"]]
        self._entries, self._last = entries, (tuple(state["last"]) if state["last"] else None)
