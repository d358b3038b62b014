"""LRUQuantizedMemory: fixed capacity, least-used eviction, precision by use count.

Origin: the SAM2-style memory strategies of docs/design.md section 6: a frequency /
recency cache (least-frequently-used eviction, ties broken by least recent use)
whose rarely used entries are stored at lower precision, in the spirit of
mixed-precision KV-cache quantisation (e.g. KIVI, Liu et al. 2024), with one
affine scale and offset per entry for 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from .base import (
    MemoryBackend,
    StreamCursor,
    rejects_malformed_states,
    MemoryEntry,
    check_query,
    own_storage,
    rank_by_similarity,
)
from .config import MAX_FRAMES, MemoryConfig, check_finite_option, hidden_size_option, option
from .errors import MemoryBankError, MemoryConfigError
from .registry import register_memory

FULL, HALF, INT8 = 0, 1, 2
_FP16_MAX = torch.finfo(torch.float16).max
_FP32_MAX = torch.finfo(torch.float32).max


def quantize_uint8(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine 8-bit quantisation with one scale and offset for the whole tensor.

    ``tokens ~= q * scale + offset``, ``q`` in ``[0, 255]``; the error of each value
    is at most ``scale / 2 = (max - min) / 510`` (0.2% of the tensor's range).

    Args:
        tokens: any floating tensor whose range ``max - min`` is finite in float32 (at most 3.4e38;
            beyond, ``x - min`` overflows and values come back NaN: :class:`LRUQuantizedMemory` holds
            such an entry at 16 bits instead).

    Returns:
        ``(q uint8 same shape, scale 0-d float32, offset 0-d float32)`` on ``tokens``' device.
    """
    x = tokens.float()
    return _quantize_uint8(x, *torch.aminmax(x))  # one pass for both


def _quantize_uint8(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`quantize_uint8` of float32 ``x`` whose exact min and max are the 0-d tensors ``lo`` and ``hi``.

    No clamp to ``[0, 255]`` is needed: ``x - lo >= 0``, and ``(x - lo) / scale <= 255`` up to three float32
    roundings (``scale`` is ``(hi - lo) / 255`` rounded; a clamped ``scale`` only makes it smaller), so
    it rounds to 255 at most. The rounded values go to uint8 through int16 (exact: they are whole
    numbers in ``[0, 255]``): torch's CPU kernel from float32 straight to uint8 is about 3x slower than
    to int16 and on to uint8 together (57 against 19 us for 144 x 1152 values at 2 threads). The whole
    quantisation of such an entry, before and after in one run: 122 -> 84 us at 2 threads, 187 -> 109 us
    at 1.
    """
    scale = ((hi - lo) / 255).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.sub(x, lo).div_(scale).round_().to(torch.int16).to(torch.uint8)  # one float buffer, in place
    return q, scale, lo


def dequantize_uint8(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize_uint8`, cast to ``dtype``."""
    return (q.float() * scale + offset).to(dtype)


@dataclass
class _Slot:
    """One held frame: its tokens at the current precision and its use record."""

    entry: MemoryEntry  # tokens: the stored representation (as added, 16-bit or uint8)
    dtype: torch.dtype  # dtype the tokens were added with (what readout returns)
    descriptor: torch.Tensor  # (C,) float32 unit, from the tokens as added
    uses: float = 0  # an int unless use_decay < 1
    last_used: int = 0
    level: int = FULL
    scale: torch.Tensor | None = None
    offset: torch.Tensor | None = None

    def tokens(self) -> torch.Tensor:
        data = self.entry.tokens
        if self.level == INT8:
            return dequantize_uint8(data, self.scale, self.offset, self.dtype)
        return data if data.dtype == self.dtype else data.to(self.dtype)

    def nbytes(self) -> int:
        extra = 8 if self.level == INT8 else 0  # float32 scale + offset
        return self.entry.nbytes + extra

    def bits(self) -> int:
        return self.entry.tokens.element_size() * 8


@dataclass
class LRUQuantizedConfig(MemoryConfig):
    """Settings of :class:`LRUQuantizedMemory`."""

    mm_hidden_size: int = hidden_size_option()
    capacity: int = option(7, "frames held", minimum=1, maximum=MAX_FRAMES)
    full_precision_uses: int = option(3, "uses that keep an entry at full precision", minimum=0)
    half_precision_uses: int = option(1, "uses that keep an entry at 16 bits (fewer: 8 bits)", minimum=0)
    grace_frames: int = option(2, "newest frames kept at full precision and never evicted", minimum=0)
    use_decay: float = option(1.0, "factor applied to every use count at each add (1: plain counts)",
                              minimum=0.0, maximum=1.0)
    check_finite: bool = check_finite_option()

    def validate(self) -> None:
        """More uses earn more precision; a decay of 0 would forget every use at once."""
        if self.half_precision_uses > self.full_precision_uses:
            raise MemoryConfigError(
                f"half_precision_uses ({self.half_precision_uses}) must not exceed full_precision_uses "
                f"({self.full_precision_uses}): more uses earn more precision"
            )
        if self.use_decay == 0:
            raise MemoryConfigError("use_decay must be in (0, 1]; 0 would forget every use at once")


class LRUQuantizedMemory(MemoryBackend):
    """A fixed number of frames; rarely used ones are held at 16 or 8 bits.

    Every :meth:`readout` counts as a use of each entry it returns, every
    :meth:`retrieve` as a use of each entry it returns. After each :meth:`add`,
    every entry older than the ``grace_frames`` newest is held at the precision
    its use count earns: 32 bits (as added) from ``full_precision_uses`` uses,
    16 bits from ``half_precision_uses``, 8 bits below that (uint8 with one
    float32 scale and offset per entry; error at most 0.2% of the entry's
    range). 16 bits are float16, or bfloat16 for an entry with a value beyond
    float16's range; an entry whose values span more than float32 can subtract
    (over 3.4e38) is held at 16 bits (bfloat16) instead of 8, where the
    arithmetic would overflow. Precision only goes down: an entry that later earns more uses keeps
    the precision it has, since widening a rounded tensor would cost bytes and
    restore nothing. When the memory is full, the entry with the fewest uses
    (then the least recently used, then the oldest) is evicted; the
    ``grace_frames`` newest are not candidates (a frame just added has had no
    chance to be used yet).

    Pure use counts favour whatever has been held longest: an entry present at
    many questions outscores every newer frame, and the memory stops following
    the stream (the known fault of least-frequently-used caches). ``use_decay``
    below 1 ages the counts (each :meth:`add` multiplies them by it, "LFU with
    dynamic aging"), so a use ``n`` frames ago weighs ``use_decay ** n``.

    Tiers of the readout are precision levels: ``32-bit`` (0, tokens as added;
    already 16 bits for a bfloat16 model), ``16-bit`` (1), ``8-bit`` (2).
    Readout tokens are dequantised to the dtype they were added with.

    Args:
        config: a :class:`LRUQuantizedConfig` (the options below are its fields):
            ``capacity`` frames held (default 7); ``full_precision_uses`` uses that keep an
            entry at full precision (3); ``half_precision_uses`` uses that keep it at 16 bits
            (1; fewer: 8 bits); ``grace_frames`` newest frames held at full precision and not
            evicted whatever their use count (2), so a question about what just happened sees
            it sharp; ``use_decay`` in ``(0, 1]`` applied to every use count at each add (1:
            plain counts); ``check_finite``.
        **overrides: its fields as keywords, e.g. ``capacity=4``.

    Raises:
        MemoryConfigError: for out-of-range options or ``half_precision_uses > full_precision_uses``.
    """

    config_class = LRUQuantizedConfig
    state_format = "memory_bank.lru_quantized/1"
    memory_tier_names = ("32-bit", "16-bit", "8-bit")

    def clear(self) -> None:
        """Drop every frame and counter."""
        self._slots: list[_Slot] = []  # time order
        self._clock = 0
        self._evictions = 0
        self._requantizations = 0
        self._cursor.reset()

    def __len__(self) -> int:
        return len(self._slots)

    def level_for(self, uses: float) -> int:
        """Precision level an entry with ``uses`` uses earns: 0 (32-bit), 1 (16-bit) or 2 (8-bit)."""
        if uses >= self.config.full_precision_uses:
            return FULL
        return HALF if uses >= self.config.half_precision_uses else INT8

    # -------------------------------------------------------------------- add
    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None) -> bool:
        """Store one frame's ``(h*w, C)`` or ``(h, w, C)`` tokens, evicting the least used when full.

        Args:
            tokens: floating tensor on the device of earlier frames.
            frame_index: larger than every index added before.
            timestamp: seconds, not earlier than the last frame's.
            frame: unused (the raw frame, for pixel-based backends).

        Returns:
            True: every new frame is stored.

        Raises:
            MemoryBankError: see :func:`~memory_bank.check_frame`; nothing changes.
        """
        flat, grid, frame_index, timestamp, descriptor = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.config.check_finite
        )
        if len(self._slots) >= self.config.capacity:
            candidates = len(self._slots) - self.config.grace_frames if self.config.capacity > self.config.grace_frames else len(self._slots)
            victim = min(range(candidates), key=lambda i: (self._slots[i].uses, self._slots[i].last_used, i))
            del self._slots[victim]
            self._evictions += 1
        if self.config.use_decay < 1:
            for slot in self._slots:
                slot.uses *= self.config.use_decay
        self._clock += 1
        entry = MemoryEntry(own_storage(flat), grid, frame_index, timestamp)
        self._slots.append(_Slot(entry, flat.dtype, descriptor, last_used=self._clock))
        for slot in self._slots[: max(0, len(self._slots) - self.config.grace_frames)]:
            self._lower_precision(slot, self.level_for(slot.uses))
        self._cursor.advance(frame_index, timestamp, flat.device)
        return True

    def _lower_precision(self, slot: _Slot, level: int) -> None:
        """Hold ``slot`` at ``level`` if that is lower than its own: 16 bits as float16, or as bfloat16 when a
        value is beyond float16's range (65504); 8 bits by :func:`quantize_uint8`, unless the values span
        more than a float32 difference holds (over 3.4e38, where the 8-bit arithmetic overflows and the
        entry would read NaN): then bfloat16 at 16 bits, where it stays. The choice reads the tokens' min
        and max on the host (one pass, one host sync on a GPU), which the 8-bit scale needs anyway."""
        if level <= slot.level:
            return
        data = slot.entry.tokens
        extremes = torch.aminmax(data)
        lo, hi = torch.stack(extremes).tolist()
        if level == INT8 and hi - lo > _FP32_MAX:  # Python floats: the difference itself does not overflow
            if slot.level == HALF:
                return
            level = HALF
        if level == HALF:
            if data.element_size() > 2:
                data = data.to(torch.bfloat16 if max(-lo, hi) > _FP16_MAX else torch.float16)
        else:
            lo_t, hi_t = extremes  # of the values as held: as added, or as rounded to 16 bits (exact in float32)
            data, slot.scale, slot.offset = _quantize_uint8(slot.tokens().float(), lo_t.float(), hi_t.float())
        slot.entry = replace(slot.entry, tokens=data, tier=level)
        slot.level = level
        self._requantizations += 1

    # ---------------------------------------------------------------- readout
    def _use(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        self._clock += 1
        for slot in slots:
            slot.uses += 1
            slot.last_used = self._clock

    def _entry(self, slot: _Slot) -> MemoryEntry:
        return replace(slot.entry, tokens=slot.tokens())

    def readout(self) -> list[MemoryEntry]:
        """Held frames in time order, dequantised; counts one use of each."""
        self._use(self._slots)
        return [self._entry(s) for s in self._slots]

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """Held frames by cosine similarity of their pooled tokens to ``query``, best first.

        Counts one use of each entry returned. Descriptors come from the tokens
        as added, so quantisation does not move the ranking.

        Args:
            query: ``(C,)`` vector or ``(n, C)`` tokens.
            k: at most this many (all when None).
            threshold: minimum cosine similarity (none when None).

        Raises:
            MemoryBankError: for a query of the wrong shape or a bad ``k``.
        """
        q = check_query(query, self.mm_hidden_size, k)
        if not self._slots:
            return []
        desc = torch.stack([s.descriptor for s in self._slots])
        hits = rank_by_similarity(list(range(len(self._slots))), desc, q, k, threshold)
        self._use([self._slots[i] for i, _ in hits])
        return [(self._entry(self._slots[i]), score) for i, score in hits]

    def stats(self) -> dict[str, Any]:
        """Entries, tokens and bytes per precision tier; ``bytes_per_precision`` by bit width.

        ``bytes`` are the bytes of token storage actually held, with the 8-bit
        entries' scale and offset.
        """
        tiers = {name: {"entries": 0, "capacity": self.config.capacity, "tokens": 0, "bytes": 0}
                 for name in self.memory_tier_names}
        per_bits = {"32": 0, "16": 0, "8": 0}
        for s in self._slots:
            t = tiers[self.memory_tier_names[s.level]]
            t["entries"] += 1
            t["tokens"] += s.entry.num_tokens
            t["bytes"] += s.nbytes()
            per_bits[str(s.bits())] = per_bits.get(str(s.bits()), 0) + s.nbytes()
        return {
            "tiers": tiers,
            "entries": len(self._slots),
            "tokens": sum(t["tokens"] for t in tiers.values()),
            "bytes": sum(t["bytes"] for t in tiers.values()),
            "bytes_per_precision": per_bits,
            "uses": [s.uses for s in self._slots],
            "evictions": self._evictions,
            "requantizations": self._requantizations,
            "frames_added": self._cursor.frames_added,
        }

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Options, entries in their stored precision, scales, use records and counters."""
        slots = [{"dtype": str(s.dtype).removeprefix("torch."), "uses": s.uses, "last_used": s.last_used,
                  "level": s.level, "scale": s.scale, "offset": s.offset, "descriptor": s.descriptor}
                 for s in self._slots]
        return self._state([s.entry for s in self._slots], slots=slots, clock=self._clock,
                           evictions=self._evictions, requantizations=self._requantizations)

    @rejects_malformed_states
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output exactly (stored precision included).

        Raises:
            MemoryBankError: for another backend's state, other options or malformed entries;
                nothing changes.
        """
        entries = self._entries_of(state)
        if len(entries) != len(state["slots"]) or len(entries) > self.config.capacity:
            raise MemoryBankError("state's entries and slots do not match, or exceed the capacity")
        slots = []
        for entry, s in zip(entries, state["slots"]):
            dtype = getattr(torch, s["dtype"], None)
            if not isinstance(dtype, torch.dtype) or s["level"] not in (FULL, HALF, INT8):
                raise MemoryBankError(f"entry of frame {entry.frame_index} has dtype {s['dtype']!r}, level {s['level']!r}")
            slots.append(_Slot(entry, dtype, s["descriptor"], s["uses"], s["last_used"], s["level"], s["scale"], s["offset"]))
        counters = int(state["clock"]), int(state["evictions"]), int(state["requantizations"])
        cursor = StreamCursor.from_state(state, entries)
        self._slots, self._cursor = slots, cursor
        self._clock, self._evictions, self._requantizations = counters


register_memory("lru_quantized", LRUQuantizedConfig, LRUQuantizedMemory)
