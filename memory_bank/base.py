"""What every memory backend shares: the stored entry, input checks, the protocol."""

from __future__ import annotations

import abc
import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .config import MemoryConfig
from .errors import MemoryBankError, MemoryConfigError


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
    def nbytes(self) -> int:
        """Bytes of the token tensor held."""
        return self.tokens.numel() * self.tokens.element_size()

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
    def from_metadata(cls, tokens: torch.Tensor, meta: dict[str, Any]) -> MemoryEntry:
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
    describe: bool = True,
) -> tuple[torch.Tensor, tuple[int, int], int, float, torch.Tensor | None]:
    """Validate one frame given to a backend's ``add``; change nothing.

    Args:
        tokens: ``(h, w, C)`` floating tensor of any grid, or ``(h * w, C)`` for a square one.
        frame_index: integer, larger than any frame index added before.
        timestamp: seconds, finite, not earlier than the last timestamp.
        hidden_size: the channel width ``C`` the backend was configured with.
        last_frame_index / last_timestamp: the last accepted frame, or None.
        check_finite: reject NaN / Inf values (one host sync). The check reads
            the norm of the per-channel sum, which is needed for the descriptor
            anyway and is non-finite exactly when some value is (or when the values
            are too large to add up in float32), so it costs nothing over ``h*w*C``.
        describe: compute the descriptor (and with it the finite check). A backend that
            computes its own descriptors passes False and checks them with
            :func:`check_finite_norm`.

    Returns:
        ``(tokens (h*w, C), (h, w), frame_index, timestamp, descriptor (C,) float32)``: ``tokens``
        detached from autograd (a memory keeps no graph: a merge of tokens that required grad would
        chain the graphs of every frame it summarises); ``descriptor`` is the unit pooled descriptor
        (:func:`pooled_descriptor`), on the tokens' device; None when ``describe`` is False.

    Raises:
        MemoryBankError: naming the problem and what to do about it.
    """
    if not isinstance(tokens, torch.Tensor):
        raise MemoryBankError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if not tokens.is_floating_point():
        raise MemoryBankError(f"tokens must be a floating-point tensor, got dtype {tokens.dtype}")
    check_dense(tokens, "tokens")
    if tokens.dim() == 3:
        h, w, c = tokens.shape
        if h == 0 or w == 0:
            raise MemoryBankError(f"tokens of shape {tuple(tokens.shape)} form an empty {h}x{w} grid")
        flat = tokens.reshape(h * w, c)
    elif tokens.dim() == 2:
        n, c = tokens.shape
        side = math.isqrt(n)
        if side * side != n or n == 0:
            raise MemoryBankError(
                f"tokens of shape {tuple(tokens.shape)} hold {n} tokens, not a square grid; "
                "pass a non-square grid as (h, w, C) (e.g. (9, 16, C) for a 16:9 frame)"
            )
        h = w = side
        flat = tokens
    else:
        raise MemoryBankError(
            f"tokens must have shape (h*w, C) or (h, w, C), got rank {tokens.dim()} with shape {tuple(tokens.shape)}"
        )
    if flat.requires_grad:
        flat = flat.detach()
    if c != hidden_size:
        raise MemoryBankError(
            f"tokens have {c} channels but the memory is configured for mm_hidden_size={hidden_size}; "
            "set mm_hidden_size to the encoder width"
        )
    try:  # ints, numpy and 0-d tensor integers; not floats (1.5 would silently become frame 1), not bools
        index = -1 if isinstance(frame_index, bool) else operator.index(frame_index)
    except (TypeError, ValueError, RuntimeError):
        index = -1
    if index < 0:
        raise MemoryBankError(f"frame_index must be an integer >= 0, got {frame_index!r}")
    frame_index = index
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
    if not describe:
        return flat, (h, w), frame_index, timestamp, None
    pooled = flat.sum(dim=0, dtype=torch.float32)
    norm = torch.linalg.vector_norm(pooled)
    if check_finite:
        value = float(norm)
        check_finite_norm(value, frame_index)
        return flat, (h, w), frame_index, timestamp, pooled / max(value, _EPS)
    return flat, (h, w), frame_index, timestamp, pooled / norm.clamp_min(_EPS)


def check_batch(
    tokens: Any, frame_indices: Sequence[Any], timestamps: Sequence[Any], frames: Sequence[Any] | None
) -> Sequence[Any]:
    """Check that a batch of :meth:`MemoryBackend.add_frames` has one index, time (and raw frame) per
    frame; return ``frames``, or B Nones when None.

    Raises:
        MemoryBankError: for a tensor of the wrong rank, or sequences of different lengths.
    """
    if isinstance(tokens, torch.Tensor) and tokens.dim() not in (3, 4):
        raise MemoryBankError(f"a batch of tokens must be a (B, h*w, C) or (B, h, w, C) tensor or a list of frames' "
                              f"tokens, got shape {tuple(tokens.shape)}; add one frame with add()")
    try:
        sizes = [len(tokens), len(frame_indices), len(timestamps)] + ([] if frames is None else [len(frames)])
    except TypeError as e:
        raise MemoryBankError(f"add_frames takes sequences (one item per frame): {e}") from None
    if len(set(sizes)) != 1:
        raise MemoryBankError(f"add_frames got {sizes[0]} frames' tokens, {sizes[1]} frame indices and {sizes[2]} "
                              f"timestamps{'' if frames is None else f' and {sizes[3]} raw frames'}; give one of each "
                              "per frame")
    return [None] * sizes[0] if frames is None else frames


def check_dense(tensor: torch.Tensor, what: str) -> None:
    """Raise :class:`MemoryBankError` unless ``tensor`` is a dense tensor holding values: not sparse,
    not meta (no data), not nested. ``what`` names it in the message."""
    if tensor.layout != torch.strided or tensor.is_meta or tensor.is_nested:
        kind = "a meta tensor (no data)" if tensor.is_meta else "a nested tensor" if tensor.is_nested else \
            f"layout {tensor.layout}"
        raise MemoryBankError(f"{what} must be a dense tensor holding values, got {kind}; pass .to_dense() of it")


def check_finite_norm(norm: float, frame_index: int) -> None:
    """Raise :class:`MemoryBankError` when ``norm`` (of a frame's per-channel sum, or of a sum
    weighted by positive weights) is NaN or Inf: some token value was, or they were too large to
    add up in float32."""
    if not math.isfinite(norm):
        raise MemoryBankError(
            f"tokens of frame {frame_index} contain NaN or Inf values (or values too large to add up in float32)"
        )


def check_device(flat: torch.Tensor, device: torch.device | None, frame_index: int) -> None:
    """Raise :class:`MemoryBankError` when ``flat`` is not on ``device`` (None: no frame stored yet)."""
    if device is not None and flat.device != device:
        raise MemoryBankError(
            f"frame {frame_index} is on {flat.device} but the memory holds tokens on {device}; "
            "keep every frame on one device"
        )


def own_storage(tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` detached (when it requires grad), copied only when it is a view into a larger buffer.

    Keeping a view would pin the whole buffer (for instance a batch of frames)
    in memory for as long as the entry lives.
    """
    if tokens.requires_grad:
        tokens = tokens.detach()
    if tokens.is_contiguous() and tokens.untyped_storage().nbytes() == tokens.nbytes:
        return tokens
    return tokens.clone(memory_format=torch.contiguous_format)


_EPS = 1e-12  # F.normalize's


def unit(vector: torch.Tensor) -> torch.Tensor:
    """``vector / max(||vector||, 1e-12)``: ``F.normalize`` of a ``(C,)`` vector without its argument
    handling (the per-frame hot path), same values."""
    return vector / torch.linalg.vector_norm(vector).clamp_min(_EPS)


def pooled_descriptor(tokens: torch.Tensor) -> torch.Tensor:
    """Unit-norm mean of ``(n, C)`` tokens, as a float32 ``(C,)`` vector (zero stays zero).

    Computed as the normalised sum (same direction as the mean, half the cost).
    """
    return unit(tokens.sum(dim=0, dtype=torch.float32))


def check_query(query: Any, hidden_size: int, k: Any) -> torch.Tensor:
    """Validate a retrieval query and return its unit float32 ``(C,)`` descriptor.

    Args:
        query: ``(C,)`` vector or ``(n, C)`` tokens (mean-pooled), any float dtype.
        hidden_size: the backend's ``C``.
        k: None or a positive integer.

    Raises:
        MemoryBankError: for a query of the wrong type or shape, no tokens, NaN or Inf values (a ranking
            by NaN scores would be arbitrary), a sparse or meta tensor, or a bad ``k``.
    """
    if not isinstance(query, torch.Tensor) or query.dim() not in (1, 2) or query.shape[-1] != hidden_size:
        shape = tuple(query.shape) if isinstance(query, torch.Tensor) else type(query).__name__
        raise MemoryBankError(f"query must be a ({hidden_size},) vector or (n, {hidden_size}) tokens, got {shape}")
    check_dense(query, "query")
    if query.numel() == 0:
        raise MemoryBankError(f"query of shape {tuple(query.shape)} holds no tokens")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise MemoryBankError(f"k must be a positive integer or None, got {k!r}")
    descriptor = pooled_descriptor(query.detach().reshape(-1, hidden_size))
    if not bool(torch.isfinite(descriptor).all()):
        raise MemoryBankError("query holds NaN or Inf values (or values too large to add up in float32)")
    return descriptor


def rank_by_similarity(
    entries: list[MemoryEntry], descriptors: torch.Tensor, query: torch.Tensor, k: int | None, threshold: float | None
) -> list[tuple[MemoryEntry, float]]:
    """``[(entry, cosine similarity)]``, best first, at least ``threshold``, at most ``k``.

    Args:
        entries: ``n`` entries.
        descriptors: ``(n, C)`` float32 unit descriptors of the entries (same order).
        query: ``(C,)`` unit descriptor (from :func:`check_query`).
        k / threshold: limits (None: no limit). Ties keep the order of ``entries``.
    """
    if not entries:
        return []
    scores = descriptors @ query.to(descriptors.device)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    values = scores.tolist()
    hits = [(entries[i], values[i]) for i in order if threshold is None or values[i] >= threshold]
    return hits if k is None else hits[:k]


class MemoryBackend(abc.ABC):
    """Base class of every memory backend (docs/design.md section 6).

    Streaming sessions, training and evaluation use only these methods, so a backend
    can be swapped by name. A backend is a :class:`~memory_bank.config.MemoryConfig`
    subclass plus a subclass of this class naming it in :attr:`config_class`, bound to
    a name by one :func:`~memory_bank.register_memory` call.

    A memory is not thread-safe: one thread at a time adds, reads out or saves (a streaming session's
    caller; ``vl3mem serve`` takes a lock per request). A readout's tokens are never changed by later
    adds.

    Args:
        config: the backend's settings (an instance of :attr:`config_class`; defaults when None).
        **overrides: settings to set on top of ``config``, e.g. ``mm_hidden_size=1152``.

    Raises:
        MemoryConfigError: for a config of another backend, an unknown option or an invalid value.
    """

    config_class: ClassVar[type[MemoryConfig]]
    """The settings dataclass of this backend."""

    memory_tier_names: tuple[str, ...]
    """Name of each tier index that :attr:`MemoryEntry.tier` takes."""

    state_format: ClassVar[str]
    """Tag of this backend's ``state_dict()`` (``"memory_bank.NAME/VERSION"``); a state of another tag is refused."""

    def __init__(self, config: MemoryConfig | None = None, **overrides: Any) -> None:
        cls = self.config_class
        if config is None:
            config = cls.from_dict(overrides, what=type(self).__name__)
        elif not isinstance(config, cls):
            raise MemoryConfigError(f"{type(self).__name__} takes a {cls.__name__}, got {type(config).__name__}")
        elif overrides:
            config = cls.from_dict({**config.to_dict(), **overrides}, what=type(self).__name__)
        self.config = config
        self._cursor = StreamCursor()
        self.clear()

    @property
    def mm_hidden_size(self) -> int:
        """Channel width ``C`` of the tokens this memory stores."""
        return self.config.mm_hidden_size

    @property
    def frames_added(self) -> int:
        """Frames accepted by :meth:`add` since the last :meth:`clear` (stored or not)."""
        return self._cursor.frames_added

    @property
    def last_frame_index(self) -> int | None:
        """Index of the last frame accepted (None before the first)."""
        return self._cursor.frame_index

    @property
    def last_timestamp(self) -> float | None:
        """Time in seconds of the last frame accepted (None before the first)."""
        return self._cursor.timestamp

    @abc.abstractmethod
    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: torch.Tensor | None = None) -> bool:
        """Offer one frame's ``(h*w, C)`` or ``(h, w, C)`` tokens (and optionally its raw ``(H, W, 3)`` uint8
        frame); return whether the backend stored it.

        Raises:
            MemoryBankError: on bad input; the backend is then unchanged.
        """

    def add_frames(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor],
        frame_indices: Sequence[int],
        timestamps: Sequence[float],
        frames: Sequence[torch.Tensor | None] | None = None,
    ) -> list[bool]:
        """Offer several frames in time order: the same as :meth:`add` for each in turn (a backend may do
        the work of the whole batch at once, with the same result).

        Args:
            tokens: ``(B, h, w, C)`` or ``(B, h*w, C)`` tensor (frames of one grid: one batch of the vision
                encoder), or ``B`` per-frame tensors as :meth:`add` takes them.
            frame_indices: ``B`` increasing integers, each larger than every index added before.
            timestamps: ``B`` times in seconds, in time order.
            frames: ``B`` raw frames (or Nones), as :meth:`add` takes them; None: no raw frames.

        Returns:
            For each frame, whether the backend stored it.

        Raises:
            MemoryBankError: when ``tokens``, ``frame_indices``, ``timestamps`` and ``frames`` differ in
                length; or, as :meth:`add`, for the first bad frame: the frames before it are added, it and
                the later ones are not.
        """
        frames = check_batch(tokens, frame_indices, timestamps, frames)
        return [self.add(t, i, s, f) for t, i, s, f in zip(tokens, frame_indices, timestamps, frames)]

    @abc.abstractmethod
    def readout(self) -> list[MemoryEntry]:
        """Entries held, in time order (a backend may count this as a use of each entry)."""

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """Entries whose pooled descriptor (unit mean token) is most similar to ``query``, best first.

        Args:
            query: ``(C,)`` vector or ``(n, C)`` tokens (mean-pooled), any float dtype.
            k: at most this many results (all when None).
            threshold: minimum cosine similarity (none when None, unless the backend has a default).

        Returns:
            ``[(entry, cosine_similarity), ...]`` sorted by similarity, highest first (ties in time order).

        Raises:
            MemoryBankError: for a query of the wrong shape or a bad ``k``.
        """
        q = check_query(query, self.mm_hidden_size, k)
        entries, descriptors = self._retrieval_index()
        return rank_by_similarity(entries, descriptors, q, k, threshold) if entries else []

    def _retrieval_index(self) -> tuple[list[MemoryEntry], torch.Tensor | None]:
        """``(entries, (n, C) float32 unit descriptors)`` that :meth:`retrieve` ranks; a backend
        either provides this or overrides :meth:`retrieve`."""
        raise NotImplementedError(f"{type(self).__name__} implements neither retrieve() nor _retrieval_index()")

    def on_question(self, frame_index: int) -> None:
        """What asking a question at frame ``frame_index`` (the newest frame) does to the memory.

        Called once per question, after the readout the question is answered from. A no-op
        here; ``fifo`` keeps that frame regardless of age (SAM2's prompted frames).
        """

    @abc.abstractmethod
    def clear(self) -> None:
        """Drop every entry and counter; keep the config."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """``tiers`` (per tier: entries, tokens, bytes...), ``entries``, ``tokens``, ``bytes``, ``frames_added``."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the backend exactly."""

    def _state(self, entries: list[MemoryEntry], **fields: Any) -> dict[str, Any]:
        """A state dict: the format tag, the options, ``entries`` (tensors not copied), ``fields``, the stream cursor."""
        return {"format": self.state_format, "options": self.config.state_options(),
                "entries": entries_to_state(entries), **fields, **self._cursor.state_dict()}

    def _entries_of(self, state: Any) -> list[MemoryEntry]:
        """The entries of a :meth:`_state` dict, after checking its format and options (changes nothing).

        Raises:
            MemoryBankError: for another backend's state, other options or malformed entries.
        """
        return entries_of_state(state, self.state_format, self.config.state_options(), self.mm_hidden_size)

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output.

        Raises:
            MemoryBankError: for a state this backend cannot take; the backend is then unchanged.
        """


class StreamCursor:
    """Where a backend's stream is: the last frame accepted, the device of its tokens, the count.

    Backends hold one and call :meth:`check` before changing anything, then
    :meth:`advance` once the frame is taken, so bad input leaves them unchanged.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to an empty stream."""
        self.frame_index: int | None = None
        self.timestamp: float | None = None
        self.device: torch.device | None = None
        self.frames_added = 0

    def check(
        self, tokens: Any, frame_index: Any, timestamp: Any, *, hidden_size: int, check_finite: bool = True,
        describe: bool = True,
    ) -> tuple[torch.Tensor, tuple[int, int], int, float, torch.Tensor | None]:
        """:func:`check_frame` against the last frame, plus the device check; changes nothing.

        Raises:
            MemoryBankError: see :func:`check_frame` and :func:`check_device`.
        """
        flat, grid, frame_index, timestamp, descriptor = check_frame(
            tokens, frame_index, timestamp, hidden_size=hidden_size,
            last_frame_index=self.frame_index, last_timestamp=self.timestamp, check_finite=check_finite,
            describe=describe,
        )
        check_device(flat, self.device, frame_index)
        return flat, grid, frame_index, timestamp, descriptor

    def advance(self, frame_index: int, timestamp: float, device: torch.device) -> None:
        """Record an accepted frame."""
        self.frame_index, self.timestamp, self.device = frame_index, timestamp, device
        self.frames_added += 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the device is restored from the entries)."""
        return {"last_frame_index": self.frame_index, "last_timestamp": self.timestamp, "frames_added": self.frames_added}

    @classmethod
    def from_state(cls, state: dict[str, Any], entries: list[MemoryEntry]) -> StreamCursor:
        """A cursor restored from :meth:`state_dict` output, checked against the restored ``entries``.

        Raises:
            MemoryBankError: for missing or wrong-typed fields, or a cursor behind its entries.
        """
        index, timestamp, count = state["last_frame_index"], state["last_timestamp"], state["frames_added"]
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise MemoryBankError(f"state's last_frame_index must be None or an integer >= 0, got {index!r}")
        if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))
                                      or not math.isfinite(timestamp)):
            raise MemoryBankError(f"state's last_timestamp must be None or finite seconds, got {timestamp!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < len(entries):
            raise MemoryBankError(f"state's frames_added must be an integer >= its {len(entries)} entries, got {count!r}")
        if entries and (index is None or timestamp is None or index < max(e.last_frame_index for e in entries)
                        or timestamp < max(e.end_timestamp for e in entries)):
            raise MemoryBankError("state's cursor (last frame index and time) is behind its own entries")
        cursor = cls()
        cursor.frame_index, cursor.timestamp, cursor.frames_added = index, timestamp, count
        cursor.device = entries[-1].tokens.device if entries else None
        return cursor


def rejects_malformed_states(load: Any) -> Any:
    """Decorator of ``load_state_dict``: a state that is not a dict, or misses a key or has one of the
    wrong type, is a :class:`MemoryBankError` (the backend computes everything before assigning, so it is
    unchanged)."""

    @functools.wraps(load)
    def wrapper(self: Any, state: Any) -> None:
        if not isinstance(state, dict):
            raise MemoryBankError(f"a memory state is a dict from state_dict(), got {type(state).__name__}")
        try:
            load(self, state)
        except MemoryBankError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise MemoryBankError(f"malformed memory state ({e.__class__.__name__}: {e}); load a state saved by "
                                  f"{type(self).__name__}.state_dict()") from None

    return wrapper


def entries_to_state(entries: list[MemoryEntry]) -> list[dict[str, Any]]:
    """Entries as ``[{"tokens": tensor, **metadata}]`` (the tensors themselves, not copies)."""
    return [{"tokens": e.tokens, **e.metadata()} for e in entries]


def entries_from_state(items: list[dict[str, Any]], hidden_size: int) -> list[MemoryEntry]:
    """Inverse of :func:`entries_to_state`, checking every token shape.

    Raises:
        MemoryBankError: for an item that is not an entry or whose tokens do not match its grid.
    """
    entries = []
    for item in items:
        try:
            entry = MemoryEntry.from_metadata(item["tokens"], {k: v for k, v in item.items() if k != "tokens"})
        except (KeyError, TypeError) as e:
            raise MemoryBankError(f"malformed memory entry in state ({e}); pass the output of state_dict()") from None
        if not isinstance(entry.tokens, torch.Tensor) or entry.tokens.shape != (entry.num_tokens, hidden_size):
            shape = tuple(entry.tokens.shape) if isinstance(entry.tokens, torch.Tensor) else type(entry.tokens).__name__
            raise MemoryBankError(
                f"entry of frame {entry.frame_index} has tokens {shape}, expected ({entry.num_tokens}, {hidden_size})"
            )
        check_entry(entry)
        entries.append(entry)
    keys = [(e.timestamp, e.frame_index) for e in entries]
    if keys != sorted(keys):
        raise MemoryBankError("state's entries are not in time order")
    return entries


def check_entry(entry: MemoryEntry) -> None:
    """Raise :class:`MemoryBankError` for a restored entry with NaN / Inf tokens or times, or inconsistent spans
    (integer tokens are a quantised store, e.g. ``lru_quantized``'s 8 bits)."""
    if entry.tokens.is_floating_point() and not bool(torch.isfinite(entry.tokens).all()):
        raise MemoryBankError(f"entry of frame {entry.frame_index} holds NaN or Inf tokens")
    if not all(math.isfinite(x) for x in (entry.timestamp, entry.end_timestamp)) or entry.end_timestamp < entry.timestamp:
        raise MemoryBankError(f"entry of frame {entry.frame_index} has times {entry.timestamp}..{entry.end_timestamp}")
    if entry.frame_index < 0 or entry.last_frame_index < entry.frame_index or entry.num_frames < 1:
        raise MemoryBankError(f"entry of frame {entry.frame_index} has an inconsistent frame span")


def check_state_format(state: Any, expected: str, *older: str) -> None:
    """Raise :class:`MemoryBankError` unless ``state`` is a dict saved by the backend ``expected`` (or in one
    of the ``older`` formats the backend still reads)."""
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found != expected and found not in older:
        raise MemoryBankError(f"not a {expected} state (format {found!r}); load a state saved by the same backend")


def entries_of_state(state: Any, expected_format: str, options: dict[str, Any], hidden_size: int) -> list[MemoryEntry]:
    """The entries of a backend state, after checking its format and options.

    Args:
        state: a ``state_dict()`` output.
        expected_format: the loading backend's format tag.
        options: the loading backend's options; the state must have been saved with the same.
        hidden_size: the loading backend's ``C``.

    Raises:
        MemoryBankError: for another backend's state, other options or malformed entries.
    """
    check_state_format(state, expected_format)
    if state.get("options") != options:
        raise MemoryBankError(
            f"state was saved with options {state.get('options')} but this memory has {options}; "
            "build the memory with the saved options"
        )
    return entries_from_state(state["entries"], hidden_size)
