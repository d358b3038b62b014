"""Token-grid resizing between memory tiers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import MemoryBankError

RESIZE_MODES = ("area", "bilinear")
"""What :func:`resize_token_grid` accepts as ``mode``."""


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
