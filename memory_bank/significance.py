"""SignificanceMemory: keep a frame only when it differs enough from the last one kept.

Origin: keyframe selection by change detection, the significance filter of the
SAM2-style strategies in docs/design.md section 6. The ``ssim`` criterion is the
structural similarity of Wang et al. ("Image quality assessment: from error
visibility to structural similarity", IEEE TIP 2004), Gaussian window 11,
sigma 1.5, on a downsampled grey image; ``histogram`` is the total-variation
distance of per-channel colour histograms, the classic shot-boundary cue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

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
from .resize import RESIZE_MODES, fit_grid, resize_token_grid

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


@dataclass
class SignificanceConfig(MemoryConfig):
    """Settings of :class:`SignificanceMemory` (see its docstring for the criteria)."""

    mm_hidden_size: int = hidden_size_option()
    criterion: str = option("feature", "what a frame is compared by", choices=CRITERIA)
    threshold: float | None = option(
        None, "distance above which a frame is significant (default per criterion)", minimum=0.0, maximum=2.0)
    adaptive: bool = option(False, "set the threshold from the running distribution of distances")
    adaptive_k: float = option(3.0, "standard deviations above the mean distance", minimum=0.0, maximum=100.0)
    adaptive_warmup: int = option(8, "background distances seen before the adaptive threshold applies", minimum=1)
    threshold_floor: float | None = option(
        None, "the adaptive threshold never goes below this (default: half the threshold)", minimum=0.0, maximum=2.0)
    buffer_size: int = option(8, "significant frames kept", minimum=1, maximum=MAX_FRAMES)
    stored_tokens: int = option(64, "token budget per stored frame (the grid shrinks keeping its aspect ratio)",
                                minimum=1)
    resize_mode: str = option("area", "how a frame moves to the stored grid", choices=RESIZE_MODES)
    signature_size: int = option(64, "side of the downsampled image of the pixel criteria", minimum=8)
    histogram_bins: int = option(16, "bins per colour channel", minimum=2)
    check_finite: bool = check_finite_option()

    def validate(self) -> None:
        """Defaults that depend on the criterion."""
        if self.threshold is None:
            self.threshold = DEFAULT_THRESHOLDS[self.criterion]
        if self.threshold_floor is None:
            self.threshold_floor = self.threshold / 2


class SignificanceMemory(MemoryBackend):
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
    next one. Stored frames are shrunk to the ``stored_tokens`` budget (default 64: 12x12 ->
    8x8, 9x16 -> 6x10) by area averaging, keeping their aspect ratio.

    A static video thus keeps one frame; a video with cuts keeps about one per cut.

    Args:
        config: a :class:`SignificanceConfig`.
        **overrides: its fields as keywords, e.g. ``criterion="histogram"``.

    Raises:
        MemoryConfigError: for an unknown criterion or an out-of-range option.
    """

    config_class = SignificanceConfig
    state_format = "memory_bank.significance/1"
    memory_tier_names = ("significant",)

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
        if not self.config.adaptive or self._count < self.config.adaptive_warmup:
            return self.config.threshold
        std = math.sqrt(self._m2 / self._count)
        return max(self.config.threshold_floor, self._mean + self.config.adaptive_k * std)

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
        flat, grid, frame_index, timestamp, descriptor = self._cursor.check(
            tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size, check_finite=self.config.check_finite
        )
        if self.config.criterion in PIXEL_CRITERIA:
            if frame is None:
                raise MemoryBankError(
                    f"criterion {self.config.criterion!r} compares raw frames: pass frame=(H, W, 3) uint8 to add(), "
                    "or use criterion='feature'"
                )
            signature = frame_signature(check_raw_frame(frame), self.config.criterion, self.config.signature_size, self.config.histogram_bins)
        else:
            signature = descriptor
        store = self._reference is None
        if not store:
            d = distance(self.config.criterion, self._reference, signature.to(self._reference.device))
            store = d > self.current_threshold()
            if not store:  # Welford update of the background (non-significant) distances
                self._count += 1
                delta = d - self._mean
                self._mean += delta / self._count
                self._m2 += delta * (d - self._mean)
        if store:
            stored = fit_grid(grid, self.config.stored_tokens)
            resized = stored != grid
            if resized:
                flat, grid = resize_token_grid(flat, grid, stored, self.config.resize_mode), stored
            self._entries.append(MemoryEntry(own_storage(flat), grid, frame_index, timestamp))
            self._descriptors.append(pooled_descriptor(flat) if resized else descriptor)
            self._reference = signature
            self._stored += 1
            if len(self._entries) > self.config.buffer_size:
                del self._entries[0], self._descriptors[0]
                self._evictions += 1
        self._cursor.advance(frame_index, timestamp, flat.device)
        return store

    def readout(self) -> list[MemoryEntry]:
        """Stored frames in time order (reduced grid)."""
        return list(self._entries)

    def _retrieval_index(self) -> tuple[list[MemoryEntry], torch.Tensor | None]:
        return list(self._entries), torch.stack(self._descriptors) if self._entries else None

    def stats(self) -> dict[str, Any]:
        """Entries, tokens, bytes; frames stored and skipped; the current threshold."""
        tokens = sum(e.num_tokens for e in self._entries)
        nbytes = sum(e.nbytes for e in self._entries)
        tier = {"entries": len(self._entries), "capacity": self.config.buffer_size, "tokens": tokens, "bytes": nbytes}
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
        return self._state(self._entries, descriptors=list(self._descriptors), reference=self._reference,
                           distances={"count": self._count, "mean": self._mean, "m2": self._m2},
                           stored=self._stored, evictions=self._evictions)

    @rejects_malformed_states
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output exactly.

        Raises:
            MemoryBankError: for another backend's state, other options or malformed entries;
                nothing changes.
        """
        entries = self._entries_of(state)
        descriptors = list(state["descriptors"])
        if len(descriptors) != len(entries) or len(entries) > self.config.buffer_size:
            raise MemoryBankError("state's entries and descriptors do not match, or exceed buffer_size")
        d = state["distances"]
        distances = int(d["count"]), float(d["mean"]), float(d["m2"])
        counters = int(state["stored"]), int(state["evictions"])
        cursor = StreamCursor.from_state(state, entries)
        self._entries, self._descriptors, self._reference, self._cursor = entries, descriptors, state["reference"], cursor
        self._count, self._mean, self._m2 = distances
        self._stored, self._evictions = counters


register_memory("significance", SignificanceConfig, SignificanceMemory)
