"""FIFOMemory: the N most recent frames plus up to M prompted frames (SAM2's memory bank).

Origin: the memory bank of SAM 2 (Ravi et al., "SAM 2: Segment Anything in Images
and Videos", 2024; ``facebookresearch/sam2``, ``num_maskmem`` recent frames plus the
conditioning frames the user prompted, kept regardless of age). Here a frame is
"prompted" when the user marks it or when a question is asked at it.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, replace
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
from .config import MAX_FRAMES, MemoryConfig, check_finite_option, hidden_size_option, option
from .errors import MemoryBankError
from .registry import register_memory



@dataclass
class FIFOConfig(MemoryConfig):
    """Settings of :class:`FIFOMemory`."""

    mm_hidden_size: int = hidden_size_option()
    num_recent: int = option(6, "frames kept by age (SAM2's num_maskmem - 1)", minimum=1, maximum=MAX_FRAMES)
    max_prompted: int = option(8, "prompted frames kept regardless of age (0 disables)", minimum=0,
                               maximum=MAX_FRAMES)
    check_finite: bool = check_finite_option()


class FIFOMemory(MemoryBackend):
    """The ``num_recent`` newest frames, plus up to ``max_prompted`` prompted frames of any age.

    Every frame is stored at the grid it was added with. When a frame leaves the
    recent window it is dropped unless it was prompted (:meth:`mark_prompted`).
    When more than ``max_prompted`` frames are prompted, the oldest prompted frame
    loses its mark (and is dropped, unless it is still among the recent frames).
    At most ``num_recent + max_prompted`` entries are held.

    Readout tiers: ``recent`` (0) and ``prompted`` (1; a prompted frame is
    reported there even while it is also recent).

    Args:
        config: a :class:`FIFOConfig` (``num_recent`` 6, ``max_prompted`` 8 by default).
        **overrides: its fields as keywords, e.g. ``num_recent=4``.

    Raises:
        MemoryConfigError: for a non-integer or out-of-range option.
    """

    config_class = FIFOConfig
    state_format = "memory_bank.fifo/1"
    memory_tier_names = ("recent", "prompted")

    def clear(self) -> None:
        """Drop every frame, mark and counter."""
        self._held: dict[int, tuple[MemoryEntry, torch.Tensor]] = {}  # frame index -> (entry, descriptor)
        self._recent: deque[int] = deque()
        self._prompted: list[int] = []  # frame indices, ascending
        self._evictions = 0
        self._cursor.reset()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def prompted_frames(self) -> list[int]:
        """Frame indices currently marked as prompted, ascending."""
        return list(self._prompted)

    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None) -> bool:
        """Store one frame's ``(h*w, C)`` or ``(h, w, C)`` tokens; the oldest unprompted recent frame goes.

        Args:
            tokens: floating tensor on the device of earlier frames.
            frame_index: larger than every index added before.
            timestamp: seconds, not earlier than the last frame's.
            frame: unused (the raw frame, for pixel-based backends).

        Returns:
            True: every frame enters the recent window.

        Raises:
            MemoryBankError: see :func:`~memory_bank.check_frame`; nothing changes.
        """
        flat, grid, frame_index, timestamp, descriptor = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.config.check_finite
        )
        entry = MemoryEntry(own_storage(flat), grid, frame_index, timestamp)
        self._held[frame_index] = (entry, descriptor)
        self._recent.append(frame_index)
        if len(self._recent) > self.config.num_recent:
            self._release(self._recent.popleft())
        self._cursor.advance(frame_index, timestamp, flat.device)
        return True

    def mark_prompted(self, frame_index: int) -> None:
        """Keep frame ``frame_index`` regardless of age (a user prompt or a question at that frame).

        Marking a frame already prompted does nothing. When the mark makes more
        than ``max_prompted`` prompted frames, the oldest of them loses its mark.

        Raises:
            MemoryBankError: when the frame is not held (already dropped, or never added).
        """
        if frame_index not in self._held:
            raise MemoryBankError(
                f"frame {frame_index} is not in memory (held: {sorted(self._held)}); "
                "mark a frame while it is still among the recent frames"
            )
        if self.config.max_prompted == 0 or frame_index in self._prompted:
            return
        bisect.insort(self._prompted, frame_index)
        if len(self._prompted) > self.config.max_prompted:
            oldest = self._prompted.pop(0)
            if oldest not in self._recent:
                self._release(oldest)

    def on_question(self, frame_index: int) -> None:
        """A question asked at frame ``frame_index`` prompts it (:meth:`mark_prompted`)."""
        self.mark_prompted(frame_index)

    def _release(self, frame_index: int) -> None:
        """Drop a frame unless something still keeps it."""
        if frame_index not in self._prompted and frame_index not in self._recent:
            del self._held[frame_index]
            self._evictions += 1

    def _ordered(self) -> list[int]:
        return sorted(self._held)

    def readout(self) -> list[MemoryEntry]:
        """Held frames in time order; prompted frames carry ``tier == 1``."""
        prompted = set(self._prompted)
        entries = [self._held[i][0] for i in self._ordered()]
        return [replace(e, tier=1) if e.frame_index in prompted else e for e in entries]

    def _retrieval_index(self) -> tuple[list[MemoryEntry], torch.Tensor | None]:
        entries = self.readout()
        return entries, torch.stack([self._held[e.frame_index][1] for e in entries]) if entries else None

    def stats(self) -> dict[str, Any]:
        """Entries, tokens and bytes per tier (``recent`` / ``prompted``) and in total."""
        tiers = {name: {"entries": 0, "capacity": cap, "tokens": 0, "bytes": 0}
                 for name, cap in zip(self.memory_tier_names, (self.config.num_recent, self.config.max_prompted))}
        for e in self.readout():
            t = tiers[self.memory_tier_names[e.tier]]
            t["entries"] += 1
            t["tokens"] += e.num_tokens
            t["bytes"] += e.nbytes
        return {
            "tiers": tiers,
            "entries": len(self._held),
            "tokens": sum(t["tokens"] for t in tiers.values()),
            "bytes": sum(t["bytes"] for t in tiers.values()),
            "evictions": self._evictions,
            "prompted_frames": list(self._prompted),
            "frames_added": self._cursor.frames_added,
        }

    def state_dict(self) -> dict[str, Any]:
        """Options, entries, the recent window, the prompted marks and counters (tensors not copied)."""
        return self._state([self._held[i][0] for i in self._ordered()], recent=list(self._recent),
                           prompted=list(self._prompted), evictions=self._evictions)

    @rejects_malformed_states
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output.

        Raises:
            MemoryBankError: for another backend's state, other options or malformed entries;
                nothing changes.
        """
        entries = self._entries_of(state)
        held = {e.frame_index: (e, pooled_descriptor(e.tokens)) for e in entries}
        recent, prompted, evictions = deque(state["recent"]), sorted(state["prompted"]), int(state["evictions"])
        if set(held) != set(recent) | set(prompted) or len(recent) > self.config.num_recent:
            raise MemoryBankError("state's entries do not match its recent and prompted frames")
        cursor = StreamCursor.from_state(state, entries)
        self._held, self._recent, self._prompted, self._evictions, self._cursor = held, recent, prompted, evictions, cursor


register_memory("fifo", FIFOConfig, FIFOMemory)
