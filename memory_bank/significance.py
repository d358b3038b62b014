"""SignificanceMemory: keep a frame only when it differs enough from the last one kept.

Origin: keyframe selection by change detection, the significance filter of the
SAM2-style strategies in DESIGN.md section 6. The ``ssim`` criterion is the
structural similarity of Wang et al. ("Image quality assessment: from error
visibility to structural similarity", IEEE TIP 2004), Gaussian window 11,
sigma 1.5, on a downsampled grey image; ``histogram`` is the total-variation
distance of per-channel colour histograms, the classic shot-boundary cue.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .base import (
    MemoryEntry,
    StreamCursor,
    check_query,
    entries_of_state,
    entries_to_state,
    own_storage,
    pooled_descriptor,
    rank_by_similarity,
)
from .config import RESIZE_MODES, number_in, one_of, positive_int
from .errors import MemoryBankError, MemoryConfigError
from .resize import resize_token_grid

_FORMAT = "memory_bank.significance/1"
CRITERIA = ("feature", "pixel", "histogram", "ssim")
PIXEL_CRITERIA = ("pixel", "histogram", "ssim")
DEFAULT_THRESHOLDS = {"feature": 0.1, "pixel": 0.08, "histogram": 0.25, "ssim": 0.35}
"""Distances above which a frame is significant, in each criterion's own unit (all in [0, 1])."""


def check_raw_frame(frame: Any) -> torch.Tensor:
    """A raw frame as a ``(H, W, 3)`` uint8 tensor (numpy arrays are wrapped, not copied).

    Raises:
        MemoryBankError: for anything else.
    """
    if not isinstance(frame, torch.Tensor):
        try:
            frame = torch.as_tensor(frame)
        except (TypeError, ValueError, RuntimeError):
            raise MemoryBankError(f"frame must be an (H, W, 3) uint8 array, got {type(frame).__name__}") from None
    if frame.dim() != 3 or frame.shape[-1] != 3 or frame.dtype != torch.uint8 or frame.numel() == 0:
        raise MemoryBankError(
            f"frame must be an (H, W, 3) uint8 RGB array, got shape {tuple(frame.shape)} dtype {frame.dtype}"
        )
    return frame


def frame_signature(frame: torch.Tensor, criterion: str, size: int = 64, bins: int = 16) -> torch.Tensor:
    """What a pixel criterion compares, from a ``(H, W, 3)`` uint8 frame; float32 on the frame's device.

    - ``pixel``: ``(3, size, size)`` area-downsampled image in ``[0, 1]``;
    - ``ssim``: ``(1, size, size)`` grey image (ITU-R BT.601 luma) in ``[0, 1]``;
    - ``histogram``: ``(3, bins)`` per-channel colour histograms, each summing to 1
      (from every pixel of a grid subsampled to about 256 x 256).
    """
    if criterion == "histogram":
        h, w = frame.shape[:2]
        step = max(1, math.ceil(max(h, w) / 256))
        px = frame[::step, ::step].reshape(-1, 3).long()
        index = (px * bins) // 256 + torch.arange(3, device=frame.device) * bins
        counts = torch.bincount(index.flatten(), minlength=3 * bins).float().reshape(3, bins)
        return counts / px.shape[0]
    image = F.adaptive_avg_pool2d(frame.permute(2, 0, 1).float()[None], (size, size))[0] / 255.0
    if criterion == "ssim":
        return (image * torch.tensor([0.299, 0.587, 0.114], device=image.device)[:, None, None]).sum(0, keepdim=True)
    return image


def _gaussian_window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean structural similarity of two ``(1, S, S)`` grey images in ``[0, 1]`` (Wang et al. 2004)."""
    window = _gaussian_window(min(11, a.shape[-1]), device=a.device)
    c1, c2 = 0.01**2, 0.03**2
    x = torch.stack([a, b, a * a, b * b, a * b])  # (5, 1, S, S)
    mu_a, mu_b, aa, bb, ab = F.conv2d(x, window).unbind(0)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def distance(criterion: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """Distance in ``[0, 1]`` (``[0, 2]`` at most for ``feature`` / ``ssim``) between two signatures.

    ``feature``: cosine distance ``1 - cos`` of unit descriptors; ``pixel``: mean
    absolute difference; ``histogram``: total variation ``0.5 * sum|h_a - h_b|``
    averaged over channels; ``ssim``: ``1 - SSIM``.
    """
    if criterion == "feature":
        return float(1.0 - (a * b).sum())
    if criterion == "pixel":
        return float((a - b).abs().mean())
    if criterion == "histogram":
        return float(0.5 * (a - b).abs().sum(dim=1).mean())
    return 1.0 - ssim(a, b)


class SignificanceMemory:
    """A rolling buffer of the last ``buffer_size`` significant frames, at a reduced grid.

    A frame is significant when its distance to the last *stored* frame exceeds
    the threshold (the first frame always is). The distance is measured by
    ``criterion``: ``feature`` (cosine distance of the pooled tokens, default),
    or, from the raw frame given to :meth:`add`, ``pixel`` (mean absolute
    difference), ``histogram`` (colour histogram distance) or ``ssim``
    (``1 - SSIM``). With ``adaptive=True`` the threshold follows the stream:
    after ``adaptive_warmup`` background distances (those of frames judged not
    significant) it is ``mean + adaptive_k * std`` of them, never below
    ``threshold_floor``: a shaky or busy video raises it above its own jitter, a
    calm one lowers it to catch small changes. The significant distances are left
    out of the statistics, so a run of cuts does not blind the detector to the
    next one. Stored frames are resized to ``stored_tokens`` (default 64 = 8x8)
    by area averaging.

    A static video thus keeps one frame; a video with cuts keeps about one per cut.

    Args:
        mm_hidden_size: channel width ``C`` of the tokens.
        criterion: one of ``feature``, ``pixel``, ``histogram``, ``ssim``.
        threshold: fixed threshold (default per criterion, :data:`DEFAULT_THRESHOLDS`).
        adaptive: set the threshold from the running distribution of distances.
        adaptive_k: standard deviations above the mean (default 3).
        adaptive_warmup: background distances seen before the adaptive threshold
            takes over (default 8; until then ``threshold`` applies).
        threshold_floor: the adaptive threshold never goes below this (default:
            half of ``threshold``).
        buffer_size: significant frames kept (default 8).
        stored_tokens: tokens per stored frame, a square number (default 64; a frame
            with fewer tokens is kept as it is).
        resize_mode: ``area`` or ``bilinear``.
        signature_size: side of the downsampled image of the pixel criteria (default 64).
        histogram_bins: bins per colour channel (default 16).
        check_finite: reject NaN / Inf frames.

    Raises:
        MemoryConfigError: for an unknown criterion or an out-of-range option.
    """

    memory_tier_names = ("significant",)

    def __init__(self, mm_hidden_size: int = 1152, criterion: str = "feature", threshold: float | None = None,
                 adaptive: bool = False, adaptive_k: float = 3.0, adaptive_warmup: int = 8,
                 threshold_floor: float | None = None, buffer_size: int = 8, stored_tokens: int = 64,
                 resize_mode: str = "area", signature_size: int = 64, histogram_bins: int = 16,
                 check_finite: bool = True) -> None:
        self.mm_hidden_size = positive_int("mm_hidden_size", mm_hidden_size)
        self.criterion = one_of("criterion", criterion, CRITERIA)
        self.threshold = number_in("threshold", DEFAULT_THRESHOLDS[criterion] if threshold is None else threshold, 0, 2)
        self.adaptive = bool(adaptive)
        self.adaptive_k = number_in("adaptive_k", adaptive_k, 0, 100)
        self.adaptive_warmup = positive_int("adaptive_warmup", adaptive_warmup)
        floor = self.threshold / 2 if threshold_floor is None else threshold_floor
        self.threshold_floor = number_in("threshold_floor", floor, 0, 2)
        self.buffer_size = positive_int("buffer_size", buffer_size)
        self.stored_tokens = positive_int("stored_tokens", stored_tokens)
        side = math.isqrt(self.stored_tokens)
        if side * side != self.stored_tokens:
            raise MemoryConfigError(f"stored_tokens must be a square number (a square grid), got {stored_tokens}")
        self.stored_grid = (side, side)
        self.resize_mode = one_of("resize_mode", resize_mode, RESIZE_MODES)
        self.signature_size = positive_int("signature_size", signature_size, minimum=8)
        self.histogram_bins = positive_int("histogram_bins", histogram_bins, minimum=2)
        self.check_finite = bool(check_finite)
        self._cursor = StreamCursor()
        self.clear()

    def _options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "criterion", "threshold", "adaptive", "adaptive_k", "adaptive_warmup", "threshold_floor",
            "buffer_size", "stored_tokens", "resize_mode", "signature_size", "histogram_bins")}

    def clear(self) -> None:
        """Drop every frame, the reference frame and the distance statistics."""
        self._entries: list[MemoryEntry] = []
        self._descriptors: list[torch.Tensor] = []
        self._reference: torch.Tensor | None = None  # signature of the last stored frame
        self._count, self._mean, self._m2 = 0, 0.0, 0.0  # Welford statistics of background distances
        self._stored = 0
        self._evictions = 0
        self._cursor.reset()

    def __len__(self) -> int:
        return len(self._entries)

    def current_threshold(self) -> float:
        """The threshold the next frame is held to."""
        if not self.adaptive or self._count < self.adaptive_warmup:
            return self.threshold
        std = math.sqrt(self._m2 / self._count)
        return max(self.threshold_floor, self._mean + self.adaptive_k * std)

    def add(self, tokens: torch.Tensor, frame_index: int, timestamp: float, frame: Any = None) -> bool:
        """Offer one frame; store it (resized) when it is significant.

        Args:
            tokens: ``(h*w, C)`` or ``(h, w, C)`` floating tensor on the device of earlier frames.
            frame_index: larger than every index added before.
            timestamp: seconds, not earlier than the last frame's.
            frame: ``(H, W, 3)`` uint8 raw frame (numpy or torch); required by the
                ``pixel``, ``histogram`` and ``ssim`` criteria.

        Returns:
            Whether the frame was stored.

        Raises:
            MemoryBankError: for bad tokens (see :func:`~memory_bank.check_frame`), or a
                missing or malformed raw frame under a pixel criterion; nothing changes.
        """
        flat, grid, frame_index, timestamp, pooled = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.check_finite
        )
        descriptor = F.normalize(pooled, dim=0)
        if self.criterion in PIXEL_CRITERIA:
            if frame is None:
                raise MemoryBankError(
                    f"criterion {self.criterion!r} compares raw frames: pass frame=(H, W, 3) uint8 to add(), "
                    "or use criterion='feature'"
                )
            signature = frame_signature(check_raw_frame(frame), self.criterion, self.signature_size, self.histogram_bins)
        else:
            signature = descriptor
        store = self._reference is None
        if not store:
            d = distance(self.criterion, self._reference, signature.to(self._reference.device))
            store = d > self.current_threshold()
            if not store:  # Welford update of the background (non-significant) distances
                self._count += 1
                delta = d - self._mean
                self._mean += delta / self._count
                self._m2 += delta * (d - self._mean)
        if store:
            resized = grid[0] * grid[1] > self.stored_tokens
            if resized:
                flat = resize_token_grid(flat, grid, self.stored_grid, self.resize_mode)
                grid = self.stored_grid
            self._entries.append(MemoryEntry(own_storage(flat), grid, frame_index, timestamp))
            self._descriptors.append(pooled_descriptor(flat) if resized else descriptor)
            self._reference = signature
            self._stored += 1
            if len(self._entries) > self.buffer_size:
                del self._entries[0], self._descriptors[0]
                self._evictions += 1
        self._cursor.advance(frame_index, timestamp, flat.device)
        return store

    def readout(self) -> list[MemoryEntry]:
        """Stored frames in time order (reduced grid)."""
        return list(self._entries)

    def retrieve(
        self, query: torch.Tensor, k: int | None = None, threshold: float | None = None
    ) -> list[tuple[MemoryEntry, float]]:
        """Stored frames by cosine similarity of their pooled tokens to ``query``, best first.

        Args:
            query: ``(C,)`` vector or ``(n, C)`` tokens.
            k: at most this many (all when None).
            threshold: minimum cosine similarity (none when None).

        Raises:
            MemoryBankError: for a query of the wrong shape or a bad ``k``.
        """
        q = check_query(query, self.mm_hidden_size, k)
        if not self._entries:
            return []
        return rank_by_similarity(self._entries, torch.stack(self._descriptors), q, k, threshold)

    def stats(self) -> dict[str, Any]:
        """Entries, tokens, bytes; frames stored and skipped; the current threshold."""
        tokens = sum(e.num_tokens for e in self._entries)
        nbytes = sum(e.nbytes for e in self._entries)
        tier = {"entries": len(self._entries), "capacity": self.buffer_size, "tokens": tokens, "bytes": nbytes}
        return {
            "tiers": {"significant": tier},
            "entries": len(self._entries),
            "tokens": tokens,
            "bytes": nbytes,
            "frames_stored": self._stored,
            "frames_skipped": self._cursor.frames_added - self._stored,
            "evictions": self._evictions,
            "threshold": self.current_threshold(),
            "mean_distance": self._mean,
            "frames_added": self._cursor.frames_added,
        }

    def state_dict(self) -> dict[str, Any]:
        """Options, entries, the reference signature, distance statistics and counters."""
        return {
            "format": _FORMAT,
            "options": self._options(),
            "entries": entries_to_state(self._entries),
            "descriptors": list(self._descriptors),
            "reference": self._reference,
            "distances": {"count": self._count, "mean": self._mean, "m2": self._m2},
            "stored": self._stored,
            "evictions": self._evictions,
            **self._cursor.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output exactly.

        Raises:
            MemoryBankError: for another backend's state, other options or malformed entries;
                nothing changes.
        """
        entries = entries_of_state(state, _FORMAT, self._options(), self.mm_hidden_size)
        descriptors = list(state["descriptors"])
        if len(descriptors) != len(entries) or len(entries) > self.buffer_size:
            raise MemoryBankError("state's entries and descriptors do not match, or exceed buffer_size")
        self._entries, self._descriptors = entries, descriptors
        self._reference = state["reference"]
        d = state["distances"]
        self._count, self._mean, self._m2 = int(d["count"]), float(d["mean"]), float(d["m2"])
        self._stored = int(state["stored"])
        self._evictions = int(state["evictions"])
        self._cursor.load_state_dict(state, entries[-1].tokens.device if entries else None)
