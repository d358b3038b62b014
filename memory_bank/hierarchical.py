"""HierarchicalMemoryBank: short / mid / long tiers with similarity-based eviction.

Origin: the Pyramid Memory Bank of VideoChat-Online (Huang et al., "Online Video
Understanding: OVBench and VideoChat-Online", CVPR 2025), moved onto VideoLLaMA3,
with the faults of the reference code fixed (docs/design.md section 4): the cascade runs
through every tier, pushed-down entries are inserted in time order, grids shrink by
area averaging (keeping their aspect ratio: a tier's size is a token budget), and ``clear()`` works.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .base import (
    _EPS,
    MemoryBackend,
    MemoryEntry,
    StreamCursor,
    check_batch,
    check_device,
    check_finite_norm,
    check_frame,
    check_state_format,
    entries_from_state,
    own_storage,
    rejects_malformed_states,
)
from .config import MAX_FRAMES, MemoryConfig, hidden_size_option, option
from .errors import MemoryBankError, MemoryConfigError
from .registry import register_memory
from .resize import RESIZE_MODES, ArrivalOperator, arrival_operator, fit_grid, resize_token_grid, weighted_bags

_FORMAT = "memory_bank.hierarchical/2"
_FORMAT_1 = "memory_bank.hierarchical/1"
"""The format before the last tier kept entries on a larger grid (every entry on its own grid); still read."""

ARRIVAL_CHUNK_BYTES = 512 * 1024
"""On the CPU, :meth:`HierarchicalMemoryBank.add_frames` does the arrival work of at most this many bytes of
tokens at once (a frame at least): what one ``F.embedding_bag`` reads and the copies made from its output then
stay in a core's cache. A frame of a real checkpoint (144 x 1152 fp32, 648 KiB) arrives alone, as :meth:`add`
would take it: batches of 2, 4 or 8 such frames cost 1.03x-1.4x as much per frame as :meth:`add` in turn
(2-core VM, 1 and 2 threads; ``python -m benchmarks.memory``), while narrow frames (the tiny test model's 32 or 64 channels) go 1.3x faster 8 at a time.
On a GPU the whole batch is one chunk: its one host copy of descriptors is one device sync."""


@dataclass
class MemoryBankConfig(MemoryConfig):
    """All settings of :class:`HierarchicalMemoryBank`.

    Attributes:
        memory_capacities: entries each tier holds, newest tier first
            (default ``(8, 4, 1)`` for short / mid / long).
        memory_reduced_sizes: token budget per frame in each tier (default
            ``(144, 64, 36)``): a frame's grid shrinks to the largest grid within the
            budget that keeps its aspect ratio (:func:`~memory_bank.resize.fit_grid`:
            12x12 -> 8x8 -> 6x6, a 16:9 9x16 -> 6x10 -> 5x7). Budgets may not grow
            from one tier to the next.
        memory_similarity_threshold: default cosine-similarity threshold of
            :meth:`HierarchicalMemoryBank.retrieve` (0.8).
        mm_hidden_size: channel width ``C`` of the stored tokens (1152, the
            SigLIP encoder width of VideoLLaMA3).
        memory_resize_mode: ``"area"`` (``adaptive_avg_pool2d``) or
            ``"bilinear"`` (antialiased bilinear) for moving a frame to a
            smaller grid.
        memory_tier_names: names of the tiers, same length as the capacities.
        memory_check_finite: reject frames holding NaN or Inf values (read off the
            descriptors, which are on the host anyway: no extra cost); turn off only
            for trusted input.

    Raises:
        MemoryConfigError: on any invalid setting, naming it and what to do.
    """

    memory_capacities: tuple[int, ...] = option((8, 4, 1), "entries each tier holds, newest tier first")
    memory_reduced_sizes: tuple[int, ...] = option((144, 64, 36), "token budget per frame in each tier")
    memory_similarity_threshold: float = option(
        0.8, "cosine similarity at or above which retrieve() returns an entry", minimum=-1.0, maximum=1.0)
    mm_hidden_size: int = hidden_size_option()
    memory_resize_mode: str = option("area", "how a frame moves to a smaller grid", choices=RESIZE_MODES)
    memory_tier_names: tuple[str, ...] = option(("short", "mid", "long"), "name of each tier")
    memory_check_finite: bool = option(True, "reject frames holding NaN or Inf values")

    def validate(self) -> None:
        """Tiers agree in number, budgets are positive and do not grow, names are distinct."""
        caps, sizes, names = self.memory_capacities, self.memory_reduced_sizes, self.memory_tier_names
        if not caps:
            raise MemoryConfigError("memory_capacities is empty; give at least one tier, e.g. (8, 4, 1)")
        if any(c < 1 for c in caps):
            raise MemoryConfigError(f"memory_capacities must be positive integers, got {caps}")
        if sum(caps) > MAX_FRAMES or any(size > 1_000_000 for size in sizes):
            raise MemoryConfigError(f"memory_capacities {caps} / memory_reduced_sizes {sizes} ask for more than "
                                    f"{MAX_FRAMES} entries or a million tokens a frame; a memory is bounded")
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
        if any(size < 1 for size in sizes):
            raise MemoryConfigError(f"memory_reduced_sizes must be positive token budgets, got {sizes}")
        if any(b > a for a, b in zip(sizes, sizes[1:])):
            raise MemoryConfigError(f"memory_reduced_sizes must not grow from one tier to the next, got {sizes}")

    @property
    def num_tiers(self) -> int:
        """Number of tiers."""
        return len(self.memory_capacities)

    def tier_grids(self, grid: tuple[int, int], tier: int = 0) -> tuple[tuple[int, int], ...]:
        """The grid a frame of token grid ``grid`` has in each tier from ``tier`` on, as it moves down the
        cascade: ``((12, 12), (8, 8), (6, 6))`` for 12x12, ``((9, 16), (6, 10), (5, 7))`` for 9x16."""
        grids = [fit_grid(grid, self.memory_reduced_sizes[tier])]
        for budget in self.memory_reduced_sizes[tier + 1:]:
            grids.append(fit_grid(grids[-1], budget))
        return tuple(grids)

    @property
    def max_tokens(self) -> int:
        """Upper bound of visual tokens held: ``sum(capacity_i * size_i)`` (1444 by default)."""
        return sum(c * s for c, s in zip(self.memory_capacities, self.memory_reduced_sizes))


class _Chain(NamedTuple):
    """The descriptors of one entry in its tier and in each later tier it may move to that compares
    entries (``k`` rows), and its tokens already resized for the next tier.

    Computed once, when a frame enters the memory, by one ``F.embedding_bag`` over its tokens
    (:func:`~memory_bank.resize.arrival_operator`: the token sum of each later grid is a fixed
    weighting of this grid's tokens, and so is each resized token), so moving an entry down a tier
    only drops the first row and takes ``shrunk``. On the host, in float32: ``sums[j]`` ``(C,)`` is the
    token sum of the grid in tier ``tier + j`` (its direction is the pooled descriptor) and
    ``norms[j]`` its norm (NaN or Inf when a token value was). The cosine similarity of two entries is
    ``sums_a . sums_b / (norm_a * norm_b)``: no division of vectors. ``shrunk`` is the entry's
    ``(h' * w', C)`` tokens on its grid in the next tier, in the tokens' dtype and device (None when
    that grid is its own, in the last tier, and once the entry has moved: an entry moving again is
    resized then).

    A tier of capacity 1 never compares (its one pair is forced), so rows stop at the last tier that
    does (:attr:`HierarchicalMemoryBank._compared`): by default an entry has rows for the short and
    mid tiers and none in the long tier (an empty chain), where :meth:`_Tier.units` reads its
    descriptor off its tokens when a retrieval asks.
    """

    sums: tuple[torch.Tensor, ...]
    norms: list[float]
    shrunk: torch.Tensor | None = None

    @classmethod
    def of_sum(cls, total: torch.Tensor) -> _Chain:
        """The one-row chain of a ``(C,)`` float32 host sum (an entry of the last tier)."""
        return cls((total,), [float(torch.linalg.vector_norm(total))])

    def down(self) -> _Chain:
        """The chain of this entry once moved to the next tier."""
        return _Chain(self.sums[1:], self.norms[1:])

    def unit(self) -> torch.Tensor:
        """The ``(C,)`` float32 unit descriptor in this tier (zero for a zero sum); the chain has a row."""
        return self.sums[0] / max(self.norms[0], _EPS)

    def merge(self, other: _Chain, weight: float) -> _Chain:
        """The one-row chain of the merge ``lerp(self, other, weight)`` of two same-grid entries (token sums
        are linear); the empty chain for entries without one (a tier after the last that compares)."""
        if not self.sums:
            return _EMPTY_CHAIN
        return _Chain.of_sum(torch.lerp(self.sums[0], other.sums[0], weight))


_EMPTY_CHAIN = _Chain((), [])
"""The chain of an entry in a tier after the last that compares: it needs no descriptor."""


class _Tier:
    """One tier: entries in time order, their descriptors, and the cosine similarity of every
    temporally adjacent pair (``sims[i]`` for entries ``i`` and ``i + 1``).

    Each entry comes with its descriptor :class:`_Chain` (``chains[i]``). A similarity is computed
    (a dot product) when it is first needed, to pick the pair to evict, and kept until the pair is
    broken: an insert or a pop marks only the one or two pairs it creates as unknown (None). A tier
    whose one pair is forced (two entries) computes none.

    An entry may be *kept* on a grid larger than its grid in this tier (the last tier keeps an entry
    on the grid it arrives with; see :class:`HierarchicalMemoryBank`): :meth:`shown` gives it on its
    grid here, resized once and remembered until the entry leaves the tier.
    """

    def __init__(self, capacity: int, budget: int, mode: str) -> None:
        self.capacity = capacity
        self.budget = budget
        self.mode = mode
        self.entries: list[MemoryEntry] = []
        self.keys: list[tuple[float, int]] = []
        self.chains: list[_Chain] = []
        self.sims: list[float | None] = []
        self._shown: dict[int, MemoryEntry] = {}  # id of a kept entry -> the entry on its grid here

    def __len__(self) -> int:
        return len(self.entries)

    def shown(self, entry: MemoryEntry) -> MemoryEntry:
        """``entry``, one of this tier's, as a readout shows it: on its grid in this tier."""
        grid = fit_grid(entry.grid, self.budget)
        if grid == entry.grid:
            return entry
        shown = self._shown.get(id(entry))
        if shown is None:
            tokens = resize_token_grid(entry.tokens, entry.grid, grid, self.mode)
            shown = self._shown[id(entry)] = dataclasses.replace(entry, tokens=tokens, grid=grid)
        return shown

    def shown_entries(self) -> list[MemoryEntry]:
        """The entries in time order, each as :meth:`shown` gives it."""
        return [self.shown(e) for e in self.entries]

    def shown_tokens(self) -> int:
        """Tokens of :meth:`shown_entries`, counted without resizing anything."""
        return sum(math.prod(fit_grid(e.grid, self.budget)) for e in self.entries)

    def units(self) -> list[torch.Tensor]:
        """Each entry's ``(C,)`` float32 unit pooled descriptor on its grid here, on the host: from its chain,
        or, in a tier after the last that compares (empty chains), from its :meth:`shown` tokens, summed
        in float32 as the chains' sums are (only rounding tells the two apart)."""
        return [c.unit() if c.sums else _Chain.of_sum(self.shown(e).tokens.sum(0, dtype=torch.float32).cpu()).unit()
                for e, c in zip(self.entries, self.chains)]

    def insert(self, entry: MemoryEntry, chain: _Chain) -> None:
        """Insert ``entry`` (descriptor chain ``chain``) in time order; the one or two pairs it makes are unknown."""
        key = (entry.timestamp, entry.frame_index)
        keys = self.keys
        if not keys or key >= keys[-1]:  # later than every entry held (a new frame): appended
            keys.append(key)
            self.entries.append(entry)
            self.chains.append(chain)
            if len(keys) > 1:
                self.sims.append(None)
            return
        pos = bisect.bisect_right(keys, key)
        self.entries.insert(pos, entry)
        keys.insert(pos, key)
        self.chains.insert(pos, chain)
        n = len(self.entries)
        if pos == 0:
            self.sims.insert(0, None)
        elif pos == n - 1:
            self.sims.append(None)
        else:  # between two: their pair becomes (pos - 1, pos) and (pos, pos + 1)
            self.sims[pos - 1: pos] = [None, None]

    def pop(self, pos: int) -> tuple[MemoryEntry, _Chain]:
        """Remove the entry at ``pos`` and return it with its chain; its two neighbours become one adjacent pair."""
        n = len(self.entries)
        del self.keys[pos]
        entry, chain = self.entries.pop(pos), self.chains.pop(pos)
        if self._shown:
            self._shown.pop(id(entry), None)
        if 0 < pos < n - 1:  # pairs (pos - 1, pos) and (pos, pos + 1) become (pos - 1, pos + 1)
            self.sims[pos - 1: pos + 1] = [None]
        elif self.sims:
            del self.sims[0 if pos == 0 else -1]
        return entry, chain

    def replace_pair(self, pos: int, entry: MemoryEntry, chain: _Chain) -> None:
        """Replace the adjacent pair ``(pos, pos + 1)`` by ``entry`` (their merge, which starts where the first
        does: the same place in time order) with its chain; the one or two pairs it makes are unknown."""
        n = len(self.entries)
        if self._shown:
            self._shown.pop(id(self.entries[pos]), None)
            self._shown.pop(id(self.entries[pos + 1]), None)
        self.entries[pos: pos + 2] = [entry]
        self.chains[pos: pos + 2] = [chain]
        del self.keys[pos + 1]
        self.sims[max(pos - 1, 0): pos + 2] = [None] * ((pos > 0) + (pos + 2 < n))

    def most_similar_adjacent_pair(self) -> int:
        """Position ``i`` of the adjacent pair ``(i, i + 1)`` with the highest cosine similarity (the first on ties)."""
        sims = self.sims
        if len(sims) == 1:
            return 0
        if None in sims:  # cosine similarity of the pooled descriptors: sums_a . sums_b / (norm_a * norm_b)
            chains, dot, eps2 = self.chains, torch.dot, _EPS * _EPS
            for i, sim in enumerate(sims):
                if sim is None:
                    a, b = chains[i], chains[i + 1]
                    sims[i] = dot(a.sums[0], b.sums[0]).item() / max(a.norms[0] * b.norms[0], eps2)
        return sims.index(max(sims))  # the first of equal maxima


class HierarchicalMemoryBank(MemoryBackend):
    """Bounded memory of a video stream in tiers of decreasing resolution.

    A new frame enters the first tier (``short``) at full size. When a tier is
    over capacity, the most similar *temporally adjacent* pair of its entries
    (cosine similarity of the pooled descriptors) is found and the earlier
    entry of that pair moves down: it is shrunk to the next tier's token budget (by
    area, keeping its aspect ratio; :meth:`MemoryBankConfig.tier_grids`) and
    inserted there in time order; the next tier then checks its own capacity
    the same way (full cascade). The last tier merges its most similar adjacent
    pair (token-wise mean weighted by how many frames each summarises) instead
    of dropping, so the oldest past is summarised, not lost.

    Visual tokens held are bounded by ``config.max_tokens`` (1444 by default)
    for any stream length, and an :meth:`add` costs O(sum of capacities).

    Tokens are kept in the dtype and on the device they were added with (all
    frames must share one device); similarity and resizing run in float32.
    The bank keeps a reference to the added tensor (no copy unless it is a view
    into a larger buffer): do not modify it in place afterwards.

    Cost of an add: when a frame arrives, one ``F.embedding_bag`` over its tokens, while
    they are in cache (:func:`~memory_bank.resize.arrival_operator`), gives both its pooled
    descriptor in every tier it may reach that compares entries (a tier of capacity 1 never
    does: its one pair is forced; by default the long tier, whose entries' descriptors a
    retrieval reads off their tokens) and its tokens already shrunk for the second
    tier. The descriptors are copied to the host (at most ``tiers x C``, float32: the one device
    sync of an add, or of a whole batch with :meth:`add_frames`, the path of a stream
    encoded in batches) and all similarity bookkeeping runs there, so the cascade decides
    every move without touching tokens; a frame leaving the first tier takes its
    shrunk tokens, so its full grid is never read again. The rest of the token work is
    one sparse shrink per entry moving between two later tiers
    (:func:`~memory_bank.resize.resize_token_grid`) and one ``lerp`` per merge, written into the
    last merge's tokens while no one else can hold them (:meth:`_merge_pair`); a merged
    entry's descriptor is the merge of the two descriptors' sums (both are linear).
    The last tier keeps an entry on the grid it arrives with (8x8 by default) and merges there:
    shrinking and merging are both linear, so the order does not change the result (to float32
    rounding), and a readout shrinks each such entry once, remembered until it changes, where an
    add would shrink every frame entering the tier. :meth:`state_dict` saves them as they are kept,
    so a restored bank goes on exactly like the original.
    The shrunk copies are the price: the first tier's entries hold their second-tier
    tokens too (``capacity_0 * size_1`` tokens: 512 by default, beside the 1444 a
    readout holds; not counted in :meth:`stats`), and the last tier's entries hold their
    larger grid (64 tokens instead of 36 by default) beside the shrunk copy a readout made.

    Args:
        config: a :class:`MemoryBankConfig` (defaults when None).
        **overrides: config fields to override, e.g. ``memory_capacities=(3, 2, 1)``.

    Raises:
        MemoryConfigError: for an invalid configuration.
    """

    config_class = MemoryBankConfig

    # ------------------------------------------------------------------ state
    def clear(self) -> None:
        """Drop every entry, counter and the time-order history; keep the config."""
        cfg = self.config
        self._arrival_operators: dict[tuple[tuple[int, int], int, torch.device], ArrivalOperator] = {}
        # the last tier that compares entries (capacity > 1): no descriptor is computed for one after it
        self._compared = max((i for i, c in enumerate(cfg.memory_capacities) if c > 1), default=0)
        self._tiers = [_Tier(c, b, cfg.memory_resize_mode)
                       for c, b in zip(cfg.memory_capacities, cfg.memory_reduced_sizes)]
        self._evictions = [0] * cfg.num_tiers
        self._merges = [0] * cfg.num_tiers
        self._private: MemoryEntry | None = None  # the last merge's result while no one else can hold its tokens
        self._cursor.reset()

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiers)

    @property
    def num_tokens(self) -> int:
        """Visual tokens held now, over all tiers."""
        return sum(t.shown_tokens() for t in self._tiers)

    @property
    def memory_tier_names(self) -> tuple[str, ...]:
        """Tier names, newest first (``config.memory_tier_names``)."""
        return self.config.memory_tier_names

    def tiers(self) -> dict[str, list[MemoryEntry]]:
        """Entries of each tier by tier name, each list in time order."""
        return {name: t.shown_entries() for name, t in zip(self.config.memory_tier_names, self._tiers)}

    # -------------------------------------------------------------------- add
    def add(
        self,
        tokens: torch.Tensor,
        frame_index: int,
        timestamp: float,
        frame: torch.Tensor | None = None,
    ) -> bool:
        """Add one frame and cascade evictions down the tiers.

        Args:
            tokens: ``(h, w, C)`` floating tensor of any grid (``(h * w, C)`` for a square
                one), ``C == config.mm_hidden_size``; a grid over the first tier's budget
                is shrunk to it (:func:`~memory_bank.resize.fit_grid`).
            frame_index: integer larger than every frame index added before.
            timestamp: seconds; not earlier than the last frame's.
            frame: the raw frame; unused here (pixel criteria of other backends).

        Returns:
            True (this backend stores every frame).

        Raises:
            MemoryBankError: wrong rank, an empty grid, a flat non-square token count,
                a wrong width, NaN/Inf values, a timestamp earlier than the last one, a
                frame index already added, a device other than earlier frames'.
                The bank is unchanged when it raises.
        """
        cfg = self.config
        flat, grid, frame_index, timestamp, _ = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=cfg.mm_hidden_size, describe=False
        )
        fitted = fit_grid(grid, cfg.memory_reduced_sizes[0])
        if fitted != grid:  # more tokens than the first tier's budget: shrink on the way in
            flat, grid = resize_token_grid(flat, grid, fitted, cfg.memory_resize_mode), fitted
        chain = self._descriptor_chain(flat, grid, 0)
        self._take(flat, grid, frame_index, timestamp, chain)
        return True

    def add_frames(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor],
        frame_indices: Sequence[int],
        timestamps: Sequence[float],
        frames: Sequence[torch.Tensor | None] | None = None,
    ) -> list[bool]:
        """:meth:`MemoryBackend.add_frames`: the same memory as :meth:`add` for each frame in turn.

        Frames given as one ``(B, h, w, C)`` / ``(B, h*w, C)`` tensor (a batch of the vision encoder)
        arrive together: one ``F.embedding_bag`` over the batch gives every frame's descriptors and
        shrunk tokens (:func:`~memory_bank.resize.arrival_operator` with ``count = B``), and the
        descriptors reach the host in one copy: one device sync for the batch instead of one per frame.
        On the CPU, where there is no sync to save, frames arrive in chunks of at most
        :data:`ARRIVAL_CHUNK_BYTES` of tokens instead (one at a time at a real checkpoint's width),
        which keeps the work in cache. Then each frame is inserted and cascaded in turn, as :meth:`add`
        does. A sequence of per-frame tensors, or a grid over the first tier's budget, is added frame by frame.

        Returns:
            B Trues (this backend stores every frame).

        Raises:
            MemoryBankError: as :meth:`MemoryBackend.add_frames`: for the first bad frame, after adding
                the frames before it.
        """
        check_batch(tokens, frame_indices, timestamps, frames)
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or len(tokens) < 2:
            return super().add_frames(tokens, frame_indices, timestamps, frames)
        tokens = tokens.detach()  # as check_frame does for one frame: the memory keeps no autograd graph
        accepted: list[tuple[torch.Tensor, int, float]] = []
        error, index, timestamp = None, self._cursor.frame_index, self._cursor.timestamp
        for frame_tokens, given_index, given_time in zip(tokens, frame_indices, timestamps):
            try:  # each frame against the one before it; nothing changes yet
                flat, grid, index, timestamp, _ = check_frame(
                    frame_tokens, given_index, given_time, hidden_size=cfg.mm_hidden_size, last_frame_index=index,
                    last_timestamp=timestamp, describe=False)
                check_device(flat, self._cursor.device, index)
            except MemoryBankError as e:
                error = e
                break
            accepted.append((flat, index, timestamp))
        if accepted and fit_grid(grid, cfg.memory_reduced_sizes[0]) != grid:  # shrunk on the way in, one by one
            return super().add_frames(tokens, frame_indices, timestamps, frames)
        if accepted:
            batch = tokens[: len(accepted)].reshape(-1, cfg.mm_hidden_size)  # a view of the encoder's output
            n = grid[0] * grid[1]  # tokens per frame
            per_chunk = max(1, ARRIVAL_CHUNK_BYTES // (n * batch.shape[1] * batch.element_size())) if batch.is_cpu \
                else len(accepted)
            for first in range(0, len(accepted), per_chunk):
                part = accepted[first: first + per_chunk]
                chains = self._descriptor_chains(batch[first * n: (first + len(part)) * n], grid, len(part)) \
                    if len(part) > 1 else [self._descriptor_chain(part[0][0], grid, 0)]
                for (flat, index, timestamp), chain in zip(part, chains):
                    self._take(flat, grid, index, timestamp, chain)
        if error is not None:
            raise error
        return [True] * len(accepted)

    def _take(self, flat: torch.Tensor, grid: tuple[int, int], frame_index: int, timestamp: float, chain: _Chain) -> None:
        """Insert a checked frame's ``(h * w, C)`` tokens with their :class:`_Chain` in the first tier and
        cascade; the finite check first, so a bad frame changes nothing."""
        if self.config.memory_check_finite:
            check_finite_norm(chain.norms[0], frame_index)
        self._tiers[0].insert(MemoryEntry(own_storage(flat), grid, frame_index, timestamp, tier=0), chain)
        self._cascade()
        self._cursor.advance(frame_index, timestamp, flat.device)

    def _arrival_operator(self, grid: tuple[int, int], tier: int, device: torch.device, count: int = 1
                          ) -> ArrivalOperator:
        """:func:`~memory_bank.resize.arrival_operator` of an entry on ``grid`` in ``tier``: the tokens resized
        for the next tier, and ``k = max(1, _compared - tier + 1)`` token sums (the tiers from ``tier`` to
        the last that compares; at least its own, whose norm the finite check reads)."""
        return arrival_operator(self.config.tier_grids(grid, tier), self.config.memory_resize_mode, device, count,
                                max(1, self._compared - tier + 1))

    def _descriptor_chain(self, flat: torch.Tensor, grid: tuple[int, int], tier: int) -> _Chain:
        """The :class:`_Chain` of an entry of ``(h * w, C)`` tokens ``flat`` on ``grid`` in ``tier``: one
        ``F.embedding_bag`` (:meth:`_arrival_operator`) gives the tokens resized for the next tier and
        its ``k`` token sums (each of two halves, added in float32), copied to the host (the one device
        sync of an add). An entry in a tier after the last that compares gets an empty chain."""
        # every call and tensor op counts here: in a stream the encoder has emptied the caches between two adds
        key = (grid, tier, None if flat.is_cpu else flat.device)
        op = self._arrival_operators.get(key)
        if op is None:  # one per grid, tier and device of a bank: the lookup is a dict's, not lru_cache's
            op = self._arrival_operators[key] = self._arrival_operator(grid, tier, flat.device)
        out = weighted_bags(flat if flat.dtype is torch.float32 else flat.float(), op.indices, op.offsets, op.weights)
        sums = op.token_sums(out)
        if not sums.is_cpu:
            sums = sums.cpu()
        shrunk = op.resized_tokens(out) if op.resized else None
        if shrunk is not None and shrunk.dtype != flat.dtype:
            shrunk = shrunk.to(flat.dtype)
        if tier > self._compared:  # its one sum is not needed (a bank restored, a merge of unlike grids)
            return _Chain((), [], shrunk)
        return _Chain(sums.unbind(0), torch.linalg.vector_norm(sums, dim=1).tolist(), shrunk)

    def _descriptor_chains(self, batch: torch.Tensor, grid: tuple[int, int], count: int) -> list[_Chain]:
        """:meth:`_descriptor_chain` of ``count`` frames arriving in the first tier, whose tokens are stacked
        in ``batch`` ``(count * h * w, C)``, in one ``F.embedding_bag`` and one host copy of all the sums
        (one device sync for the batch). Each frame's resized tokens are copied out of the batch's output,
        which an entry would otherwise keep alive."""
        op = self._arrival_operator(grid, 0, batch.device, count)
        out = weighted_bags(batch.float(), op.indices, op.offsets, op.weights)
        out = out.view(count, op.rows, batch.shape[1])
        sums = op.token_sums(out).cpu()
        norms = torch.linalg.vector_norm(sums, dim=2).tolist()
        shrunk = [own_storage(frame.to(batch.dtype)) for frame in op.resized_tokens(out).unbind(0)] \
            if op.resized else [None] * count
        return [_Chain(sums[j].unbind(0), norms[j], shrunk[j]) for j in range(count)]

    def _cascade(self) -> None:
        cfg = self.config
        last = len(self._tiers) - 1
        for i, tier in enumerate(self._tiers):
            if len(tier.entries) <= tier.capacity:
                return
            pos = tier.most_similar_adjacent_pair()
            if i == last:
                self._merge_pair(tier, pos)
                self._merges[i] += 1
                return
            e, chain = tier.pop(pos)
            self._evictions[i] += 1
            grid = fit_grid(e.grid, self._tiers[i + 1].budget)
            if chain.shrunk is not None:
                tokens = chain.shrunk
            elif i + 1 == last:  # kept on its grid: the last tier's merges are linear, it shrinks the result when read
                tokens, grid = e.tokens, e.grid
            else:
                tokens = resize_token_grid(e.tokens, e.grid, grid, cfg.memory_resize_mode)
            moved = MemoryEntry(tokens, grid, e.frame_index, e.timestamp, i + 1, e.last_frame_index, e.end_timestamp,
                                e.num_frames)
            self._tiers[i + 1].insert(moved, chain.down())

    def _merge_pair(self, tier: _Tier, pos: int) -> None:
        """Replace the adjacent pair ``(pos, pos + 1)`` of ``tier`` (the last) by their merge: tokens
        ``lerp(a, b, n_b / (n_a + n_b))`` in float32, weighted by the frames each summarises.

        The lerp writes into the tokens of ``a`` or ``b``, not a new tensor, when one is the last merge's
        result (``_private``: in a long tier of capacity 1, every merge after the first) and no one else
        can hold its tokens: float32 on the grid of both, and a grid this tier shows resized (a readout
        hands out a shrunk copy, never these tokens); :meth:`state_dict`, the one other way out, ends
        it. Tokens made under ``torch.inference_mode`` are written in place only under it, as torch
        allows. Same kernel, same values; the add writes no fresh ``h * w x C`` tensor (one merge per
        add by default: 1.04x-1.05x as fast an add, 2-core VM, 1 and 2 threads, out of cache;
        ``vl3mem bench memory --against``).
        """
        a, b = tier.entries[pos], tier.entries[pos + 1]
        total = a.num_frames + b.num_frames
        weight = b.num_frames / total
        private = self._private if self._private is a or self._private is b else None
        if private is not None and a.grid == b.grid and a.tokens.dtype == b.tokens.dtype == torch.float32 \
                and fit_grid(a.grid, tier.budget) != a.grid \
                and (torch.is_inference_mode_enabled() or not private.tokens.is_inference()):
            # the same kernel, into the tokens no one else holds (an output may be one of the inputs)
            tokens = torch.lerp(a.tokens, b.tokens, weight, out=private.tokens)
            grid, same_grid = a.grid, True
        else:
            if a.grid != b.grid:  # one kept on a larger grid, or a stream that changed resolution
                a, b = tier.shown(a), tier.shown(b)
            # frames of one stream share a grid; if the stream changed resolution, average on the common sub-grid
            grid = (min(a.grid[0], b.grid[0]), min(a.grid[1], b.grid[1]))
            same_grid = grid == a.grid == b.grid
            a_tokens, b_tokens = (a.tokens, b.tokens) if same_grid else \
                (resize_token_grid(e.tokens, e.grid, grid, tier.mode) for e in (a, b))
            # (a * n_a + b * n_b) / total, as a + (b - a) * n_b / total in float32: one fused op
            tokens = torch.lerp(a_tokens.float(), b_tokens.float(), weight)
            if tokens.dtype != a.tokens.dtype:
                tokens = tokens.to(a.tokens.dtype)
        merged = MemoryEntry(
            tokens,
            grid,
            a.frame_index,
            a.timestamp,
            tier=a.tier,
            last_frame_index=max(a.last_frame_index, b.last_frame_index),
            end_timestamp=max(a.end_timestamp, b.end_timestamp),
            num_frames=total,
        )
        if same_grid:  # the token sum of the merge is the merge of the sums (both linear)
            chain = tier.chains[pos].merge(tier.chains[pos + 1], weight)
        else:
            chain = self._descriptor_chain(tokens, grid, a.tier)
        tier.replace_pair(pos, merged, chain)
        self._private = merged

    # ---------------------------------------------------------------- readout
    def readout(self) -> list[MemoryEntry]:
        """All entries of all tiers in time order (by start timestamp, then frame index).

        Returns:
            A list of :class:`MemoryEntry`; ``entry.tokens`` is ``(n_i, C)``.
        """
        return list(heapq.merge(*(t.shown_entries() for t in self._tiers), key=lambda e: (e.timestamp, e.frame_index)))

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """:meth:`MemoryBackend.retrieve`, with ``threshold`` defaulting to ``config.memory_similarity_threshold``."""
        threshold = self.config.memory_similarity_threshold if threshold is None else float(threshold)
        return super().retrieve(query, k, threshold)

    def _retrieval_index(self) -> tuple[list[MemoryEntry], torch.Tensor | None]:
        entries = [e for t in self._tiers for e in t.shown_entries()]
        return entries, torch.stack([u for t in self._tiers for u in t.units()]) if entries else None

    def stats(self) -> dict[str, Any]:
        """Per tier: entries, capacity, tokens, bytes, evictions, merges; and totals.

        ``bytes`` counts the token tensors a readout holds (not the descriptors, the first tier's
        tokens already shrunk for the second, nor the larger grids the last tier keeps).
        """
        tiers = {}
        for name, tier, ev, mg in zip(self.config.memory_tier_names, self._tiers, self._evictions, self._merges):
            tiers[name] = {
                "entries": len(tier),
                "capacity": tier.capacity,
                "tokens": tier.shown_tokens(),
                "bytes": sum(e.nbytes for e in tier.shown_entries()),
                "evictions": ev,
                "merges": mg,
            }
        return {
            "tiers": tiers,
            "entries": len(self),
            "tokens": self.num_tokens,
            "max_tokens": self.config.max_tokens,
            "bytes": sum(t["bytes"] for t in tiers.values()),
            "frames_added": self._cursor.frames_added,
        }

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Config, entries (tokens + metadata), counters and time-order history.

        The tensors are the bank's own (not copies); :meth:`load_state_dict`
        restores the bank exactly. An entry the last tier keeps on the larger grid it arrived with is
        saved so, with that grid (a readout shows it shrunk). Once handed out here, the last merge's
        tokens are no longer merged into in place (:meth:`_merge_pair`): they stay as returned.
        """
        self._private = None
        return {
            "format": _FORMAT,
            "config": self.config.to_dict(),
            "entries": [{"tokens": e.tokens, **e.metadata()} for t in self._tiers for e in t.entries],
            "evictions": list(self._evictions),
            "merges": list(self._merges),
            **self._cursor.state_dict(),
        }

    @rejects_malformed_states
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the bank from :meth:`state_dict` output.

        Raises:
            MemoryConfigError: when the state was saved with another config.
            MemoryBankError: when the state is malformed; the bank is unchanged.
        """
        check_state_format(state, _FORMAT, _FORMAT_1)
        saved = MemoryBankConfig.from_dict(state["config"])
        if saved != self.config:
            raise MemoryConfigError(
                f"state was saved with config {saved} but this bank has {self.config}; "
                "build the bank with the saved config (HierarchicalMemoryBank.load does)"
            )
        cfg = self.config
        tiers = [_Tier(c, b, cfg.memory_resize_mode) for c, b in zip(cfg.memory_capacities, cfg.memory_reduced_sizes)]
        entries = entries_from_state(sorted(state["entries"], key=lambda item: (item["timestamp"], item["frame_index"])),
                                     self.config.mm_hidden_size)
        for entry in entries:
            if isinstance(entry.tier, bool) or not isinstance(entry.tier, int) or not 0 <= entry.tier < len(tiers):
                raise MemoryBankError(f"entry of frame {entry.frame_index} does not fit tier {entry.tier}")
            tier = entry.tier
            kept = entry.num_tokens > tiers[tier].budget  # only the last tier keeps one, on the grid before its own
            if kept and (tier == 0 or tier != len(tiers) - 1
                         or fit_grid(entry.grid, tiers[tier - 1].budget) != entry.grid):
                raise MemoryBankError(f"entry of frame {entry.frame_index} does not fit tier {tier}")
            chain = self._descriptor_chain(entry.tokens, entry.grid, tier - 1 if kept else tier)
            if tier > 0:  # as the saved bank held it: only the first tier's entries carry tokens shrunk ahead
                chain = _Chain(chain.sums, chain.norms)
            tiers[tier].insert(entry, chain.down() if kept else chain)
        if any(len(t) > t.capacity for t in tiers):
            raise MemoryBankError("state holds more entries than a tier's capacity")
        counters = [int(x) for x in state["evictions"]], [int(x) for x in state["merges"]]
        if any(len(c) != len(tiers) for c in counters):
            raise MemoryBankError(f"state's evictions and merges must have one count per tier ({len(tiers)})")
        cursor = StreamCursor.from_state(state, entries)
        self._tiers, (self._evictions, self._merges), self._cursor = tiers, counters, cursor
        self._private = None

    def save(self, path: str | Path) -> None:
        """Write the state to a safetensors file (tokens as tensors, the rest as JSON metadata).

        Raises:
            MemoryBankError: when the file cannot be written (a folder, a missing or read-only folder, a
                full disk), naming the path and the reason; the bank is unchanged.
        """
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        state = self.state_dict()
        tensors = {f"entries.{i}.tokens": item.pop("tokens").contiguous() for i, item in enumerate(state["entries"])}
        try:
            save_file(tensors, str(path), metadata={"format": _FORMAT, "state": json.dumps(state)})
        except (SafetensorError, OSError) as e:
            raise MemoryBankError(f"cannot write the memory bank to {path} ({e.__class__.__name__}: "
                                  f"{' '.join(str(e).split())[:160]})") from None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> HierarchicalMemoryBank:
        """Build a bank from a file written by :meth:`save`, with its saved config.

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            MemoryBankError: when the file is not a saved memory bank, or is truncated or damaged.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no memory bank file at {path}")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                if meta.get("format") not in (_FORMAT, _FORMAT_1):
                    raise MemoryBankError(f"{path} is not a saved HierarchicalMemoryBank")
                state = json.loads(meta["state"])
                for i, item in enumerate(state["entries"]):
                    item["tokens"] = f.get_tensor(f"entries.{i}.tokens")
            bank = cls(MemoryBankConfig.from_dict(state["config"]))
            bank.load_state_dict(state)
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            if isinstance(e, MemoryBankError):
                raise
            raise MemoryBankError(f"{path} is not a readable saved memory bank ({e.__class__.__name__}: "
                                  f"{' '.join(str(e).split())[:120]}); it may be truncated") from None
        return bank


register_memory("hierarchical", MemoryBankConfig, HierarchicalMemoryBank)
