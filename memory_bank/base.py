"""What every memory backend shares: the stored entry, input checks, the protocol."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import MemoryBankError


@dataclass(frozen=True)
class MemoryEntry:
    """One frame (or a merged run of frames) held by a memory backend.

    Attributes:
        tokens: ``(h * w, C)`` visual tokens, row-major over the grid, in the
            dtype and on the device they were added with.
        grid: ``(h, w)`` of the token grid.
        frame_index: index of the first frame the entry was built from.
        timestamp: time of that frame, in seconds.
        tier: index of the tier holding the entry (0 = newest / sharpest).
        last_frame_index: index of the last frame summarised (``frame_index``
            unless entries were merged).
        end_timestamp: time of that last frame, in seconds.
        num_frames: number of frames the entry summarises (merge weight).
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    frame_index: int
    timestamp: float
    tier: int = 0
    last_frame_index: int = -1
    end_timestamp: float = -1.0
    num_frames: int = 1

    def __post_init__(self) -> None:
        if self.last_frame_index < 0:
            object.__setattr__(self, "last_frame_index", self.frame_index)
        if self.end_timestamp < 0:
            object.__setattr__(self, "end_timestamp", self.timestamp)

    @property
    def num_tokens(self) -> int:
        """Number of tokens ``h * w``."""
        return self.grid[0] * self.grid[1]

    @property
    def is_merged(self) -> bool:
        """True when the entry summarises more than one frame."""
        return self.num_frames > 1

    def covers(self, start_s: float, end_s: float) -> bool:
        """True when the entry's time span ``[timestamp, end_timestamp]`` meets ``[start_s, end_s]``."""
        return self.timestamp <= end_s and self.end_timestamp >= start_s

    def metadata(self) -> dict[str, Any]:
        """Everything but the tokens, as JSON-able values."""
        return {
            "grid": list(self.grid),
            "frame_index": self.frame_index,
            "timestamp": self.timestamp,
            "tier": self.tier,
            "last_frame_index": self.last_frame_index,
            "end_timestamp": self.end_timestamp,
            "num_frames": self.num_frames,
        }

    @classmethod
    def from_metadata(cls, tokens: torch.Tensor, meta: dict[str, Any]) -> "MemoryEntry":
        """Inverse of :meth:`metadata` given the tokens."""
        return cls(tokens=tokens, **{**meta, "grid": tuple(meta["grid"])})


def check_frame(
    tokens: Any,
    frame_index: Any,
    timestamp: Any,
    *,
    hidden_size: int,
    last_frame_index: int | None,
    last_timestamp: float | None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, tuple[int, int], int, float, torch.Tensor]:
    """Validate one frame given to a backend's ``add``; change nothing.

    Args:
        tokens: ``(h * w, C)`` or ``(h, w, C)`` floating tensor, square grid.
        frame_index: integer, larger than any frame index added before.
        timestamp: seconds, finite, not earlier than the last timestamp.
        hidden_size: the channel width ``C`` the backend was configured with.
        last_frame_index / last_timestamp: the last accepted frame, or None.
        check_finite: reject NaN / Inf values (one host sync). The check runs
            on the per-channel sum, which is non-finite exactly when some value
            of that channel is (or when the values are too large to add up in
            float32), so it costs ``C`` comparisons, not ``h*w*C``.

    Returns:
        ``(tokens (h*w, C), (h, w), frame_index, timestamp, pooled (C,) float32)``:
        ``pooled`` is the sum over tokens, the pooled descriptor before normalising.

    Raises:
        MemoryBankError: naming the problem and what to do about it.
    """
    if not isinstance(tokens, torch.Tensor):
        raise MemoryBankError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise MemoryBankError(f"tokens must be a floating-point tensor, got dtype {tokens.dtype}")
    if tokens.dim() == 3:
        h, w, c = tokens.shape
        if h != w or h == 0:
            raise MemoryBankError(
                f"tokens of shape {tuple(tokens.shape)} form a {h}x{w} grid, not a square one; "
                "memory tiers hold square token grids (h == w)"
            )
        flat = tokens.reshape(h * w, c)
    elif tokens.dim() == 2:
        n, c = tokens.shape
        side = math.isqrt(n)
        if side * side != n or n == 0:
            raise MemoryBankError(
                f"tokens of shape {tuple(tokens.shape)} hold {n} tokens, not a square grid; "
                "pass them as (h, w, C) or give a square token count (e.g. 144 = 12x12)"
            )
        h = w = side
        flat = tokens
    else:
        raise MemoryBankError(
            f"tokens must have shape (h*w, C) or (h, w, C), got rank {tokens.dim()} with shape {tuple(tokens.shape)}"
        )
    if c != hidden_size:
        raise MemoryBankError(
            f"tokens have {c} channels but the memory is configured for mm_hidden_size={hidden_size}; "
            "set mm_hidden_size to the encoder width"
        )
    if isinstance(frame_index, bool) or not isinstance(frame_index, int):
        try:
            frame_index = int(frame_index)  # accepts numpy / 0-d tensor integers
        except (TypeError, ValueError):
            raise MemoryBankError(f"frame_index must be an integer, got {frame_index!r}") from None
    if frame_index < 0:
        raise MemoryBankError(f"frame_index must be >= 0, got {frame_index}")
    if last_frame_index is not None and frame_index <= last_frame_index:
        raise MemoryBankError(
            f"frame index {frame_index} was already added (last frame index {last_frame_index}); "
            "frame indices must increase along the stream"
        )
    try:
        timestamp = float(timestamp)
    except (TypeError, ValueError):
        raise MemoryBankError(f"timestamp must be a number of seconds, got {timestamp!r}") from None
    if not math.isfinite(timestamp) or timestamp < 0:
        raise MemoryBankError(f"timestamp must be a finite, non-negative number of seconds, got {timestamp}")
    if last_timestamp is not None and timestamp < last_timestamp:
        raise MemoryBankError(
            f"timestamp {timestamp:.3f}s is earlier than the last one ({last_timestamp:.3f}s); "
            "frames must arrive in time order"
        )
    pooled = flat.sum(dim=0, dtype=torch.float32)
    if check_finite and not bool(torch.isfinite(pooled).all()):
        raise MemoryBankError(
            f"tokens of frame {frame_index} contain NaN or Inf values (or values too large to add up in float32)"
        )
    return flat, (h, w), frame_index, timestamp, pooled


@runtime_checkable
class MemoryBackend(Protocol):
    """The interface every memory backend implements (DESIGN.md section 6).

    Streaming sessions, training and evaluation use only these methods, so a
    backend can be swapped by name.
    """

    def add(
        self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None
    ) -> bool:
        """Offer one frame's tokens; return whether the backend stored it."""

    def readout(self) -> list[MemoryEntry]:
        """Entries held, in time order."""

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """Entries most similar to ``query``, best first, with their cosine similarity."""

    def clear(self) -> None:
        """Drop every entry and counter."""

    def stats(self) -> dict[str, Any]:
        """Entries, tokens, bytes and event counts."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the backend exactly."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
