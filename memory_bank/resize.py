"""Token-grid resizing between memory tiers."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .errors import MemoryBankError

RESIZE_MODES = ("area", "bilinear")
"""What :func:`resize_token_grid` accepts as ``mode``."""


@functools.lru_cache(maxsize=1024)
def fit_grid(grid: tuple[int, int], budget: int) -> tuple[int, int]:
    """The grid a token grid shrinks to under a token budget, keeping its aspect ratio.

    A grid within the budget is kept. Otherwise the grid is scaled by
    ``s = sqrt(budget / (h * w))``: one side is rounded (``round(h * s)``, or ``round(w * s)``)
    and the other takes as many cells as the budget leaves; of the two, the one with more
    tokens wins, then the one whose aspect ratio is closer. The result is never larger than
    the input in either side, and is ``(h', w')`` with ``h' * w' <= budget``: ``12x12`` gives
    ``8x8`` for 64 and ``6x6`` for 36; a 16:9 ``9x16`` gives ``6x10`` and ``4x9``.

    Args:
        grid: ``(h, w)``, positive.
        budget: tokens, positive.

    Raises:
        MemoryBankError: for a non-positive grid side or budget.
    """
    h, w = grid
    if min(h, w, budget) < 1:
        raise MemoryBankError(f"grid {h}x{w} and token budget {budget} must be positive")
    if h * w <= budget:
        return h, w
    scale = math.sqrt(budget / (h * w))
    rows = min(h, max(1, round(h * scale)))
    cols = min(w, max(1, round(w * scale)))
    candidates = [(rows, min(w, budget // rows)), (min(h, budget // cols), cols)]
    valid = [(a, b) for a, b in candidates if a >= 1 and b >= 1 and a * b <= budget] or [(1, 1)]
    return max(valid, key=lambda g: (g[0] * g[1], -abs(math.log(g[0] * w / (g[1] * h)))))


def resize_token_grid(
    tokens: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], mode: str = "area"
) -> torch.Tensor:
    """Resize a frame's token grid to a smaller (or equal) grid.

    ``area`` averages the input cells each output cell covers
    (``adaptive_avg_pool2d``: an exact 2x2 mean for 12x12 -> 6x6, overlapping
    bins for non-integer ratios such as 12x12 -> 8x8). ``bilinear`` is
    antialiased bilinear interpolation. Both keep a constant grid constant;
    plain bilinear without antialiasing (the reference implementation's choice)
    skips input cells at non-integer ratios, which is why it is not offered.

    Args:
        tokens: ``(h * w, C)`` tokens, row-major over ``grid``; any floating
            dtype and device. The arithmetic runs in float32.
        grid: ``(h, w)`` of the input.
        size: ``(h', w')`` of the output.
        mode: ``"area"`` or ``"bilinear"``.

    Returns:
        ``(h' * w', C)`` tokens in the input's dtype and device.

    Raises:
        MemoryBankError: when the shapes disagree or the mode is unknown.
    """
    h, w = grid
    if tokens.dim() != 2 or tokens.shape[0] != h * w:
        raise MemoryBankError(f"tokens of shape {tuple(tokens.shape)} do not match the grid {h}x{w}")
    if tuple(size) == (h, w):
        return tokens
    c = tokens.shape[1]
    x = tokens.reshape(1, h, w, c).permute(0, 3, 1, 2).float()
    if mode == "area":
        y = F.adaptive_avg_pool2d(x, size)
    elif mode == "bilinear":
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    else:
        raise MemoryBankError(f"unknown resize mode {mode!r}; use 'area' or 'bilinear'")
    return y.permute(0, 2, 3, 1).reshape(size[0] * size[1], c).to(tokens.dtype)
