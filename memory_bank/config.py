"""Configuration of the hierarchical memory bank."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import MemoryConfigError

RESIZE_MODES = ("area", "bilinear")


@dataclass
class MemoryBankConfig:
    """All settings of :class:`~memory_bank.HierarchicalMemoryBank`.

    Attributes:
        memory_capacities: entries each tier holds, newest tier first
            (default ``(8, 4, 1)`` for short / mid / long).
        memory_reduced_sizes: tokens per frame in each tier; every size is a
            square grid (default ``(144, 64, 36)`` = 12x12, 8x8, 6x6). Sizes
            may not grow from one tier to the next.
        memory_similarity_threshold: default cosine-similarity threshold of
            :meth:`~memory_bank.HierarchicalMemoryBank.retrieve` (0.8).
        mm_hidden_size: channel width ``C`` of the stored tokens (1152, the
            SigLIP encoder width of VideoLLaMA3).
        memory_resize_mode: ``"area"`` (``adaptive_avg_pool2d``) or
            ``"bilinear"`` (antialiased bilinear) for moving a frame to a
            smaller grid.
        memory_tier_names: names of the tiers, same length as the capacities.
        memory_check_finite: reject frames holding NaN or Inf values. One
            device-to-host sync per frame on GPU; turn off only for trusted input.

    Raises:
        MemoryConfigError: on any invalid setting, naming it and what to do.
    """

    memory_capacities: tuple[int, ...] = (8, 4, 1)
    memory_reduced_sizes: tuple[int, ...] = (144, 64, 36)
    memory_similarity_threshold: float = 0.8
    mm_hidden_size: int = 1152
    memory_resize_mode: str = "area"
    memory_tier_names: tuple[str, ...] = ("short", "mid", "long")
    memory_check_finite: bool = True
    _grids: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.memory_capacities = tuple(self.memory_capacities)
        self.memory_reduced_sizes = tuple(self.memory_reduced_sizes)
        self.memory_tier_names = tuple(self.memory_tier_names)
        caps, sizes, names = self.memory_capacities, self.memory_reduced_sizes, self.memory_tier_names
        if not caps:
            raise MemoryConfigError("memory_capacities is empty; give at least one tier, e.g. (8, 4, 1)")
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in caps):
            raise MemoryConfigError(f"memory_capacities must be positive integers, got {caps}")
        if len(sizes) != len(caps):
            raise MemoryConfigError(
                f"memory_reduced_sizes {sizes} has {len(sizes)} tiers but memory_capacities {caps} "
                f"has {len(caps)}; give one token count per tier"
            )
        if len(names) != len(caps):
            raise MemoryConfigError(
                f"memory_tier_names {names} has {len(names)} names for {len(caps)} tiers; give one name per tier"
            )
        if len(set(names)) != len(names):
            raise MemoryConfigError(f"memory_tier_names must be distinct, got {names}")
        grids = []
        for size in sizes:
            side = math.isqrt(size) if isinstance(size, int) and size > 0 else 0
            if side * side != size:
                raise MemoryConfigError(
                    f"memory_reduced_sizes must be perfect squares (square token grids), got {size} in {sizes}"
                )
            grids.append((side, side))
        if any(b > a for a, b in zip(sizes, sizes[1:])):
            raise MemoryConfigError(
                f"memory_reduced_sizes must not grow from one tier to the next, got {sizes}"
            )
        if not -1.0 <= float(self.memory_similarity_threshold) <= 1.0:
            raise MemoryConfigError(
                f"memory_similarity_threshold is a cosine similarity in [-1, 1], got {self.memory_similarity_threshold}"
            )
        if not isinstance(self.mm_hidden_size, int) or self.mm_hidden_size < 1:
            raise MemoryConfigError(f"mm_hidden_size must be a positive integer, got {self.mm_hidden_size!r}")
        if self.memory_resize_mode not in RESIZE_MODES:
            raise MemoryConfigError(
                f"memory_resize_mode must be one of {RESIZE_MODES}, got {self.memory_resize_mode!r}"
            )
        self._grids = tuple(grids)

    @property
    def num_tiers(self) -> int:
        """Number of tiers."""
        return len(self.memory_capacities)

    @property
    def grids(self) -> tuple[tuple[int, int], ...]:
        """Token grid ``(h, w)`` of each tier, e.g. ``((12, 12), (8, 8), (6, 6))``."""
        return self._grids

    @property
    def max_tokens(self) -> int:
        """Upper bound of visual tokens held: ``sum(capacity_i * size_i)`` (1444 by default)."""
        return sum(c * s for c, s in zip(self.memory_capacities, self.memory_reduced_sizes))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-able) form; :meth:`from_dict` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryBankConfig:
        """Build a config from :meth:`to_dict` output (unknown keys raise :class:`MemoryConfigError`)."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(data) - known
        if unknown:
            raise MemoryConfigError(f"unknown MemoryBankConfig keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**data)


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, or :class:`MemoryConfigError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MemoryConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def number_in(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, or :class:`MemoryConfigError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise MemoryConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, or :class:`MemoryConfigError` listing them."""
    if value not in choices:
        raise MemoryConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value
