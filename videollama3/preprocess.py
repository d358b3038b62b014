"""Frame preprocessing in plain torch, in the native VideoLLaMA3 layout.

Equal to ``VideoLlama3VideoProcessor`` (resize with antialiased bicubic, rescale
1/255, normalise with mean 0.5 / std 0.5, patchify in merge blocks) for a fixed
square size, without its torchvision dependency (docs/design.md section 3).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PATCH_SIZE = 14
MERGE_SIZE = 2
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(T, 3, H, W)`` uint8 frames to ``(T, 3, size, size)`` uint8.

    Antialiased bicubic interpolation in float32, rounded and clamped back to
    uint8, as torchvision's ``resize`` does for uint8 tensors.
    """
    if frames.shape[-2:] == (size, size):
        return frames
    x = F.interpolate(frames.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def patchify(pixels: torch.Tensor, patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE) -> torch.Tensor:
    """``(T, C, H, W)`` -> ``(T * gh * gw, C * p * p)`` patches, ordered frame, merge block row,
    merge block column, row in block, column in block (the native layout)."""
    t, c, h, w = pixels.shape
    gh, gw = h // patch_size, w // patch_size
    x = pixels.reshape(t, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size)
    return x.permute(0, 2, 5, 3, 6, 1, 4, 7).reshape(t * gh * gw, c * patch_size * patch_size)


def preprocess_frames(
    frames: torch.Tensor | np.ndarray,
    size: int = 336,
    patch_size: int = PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn RGB frames into VideoLLaMA3 vision-encoder inputs.

    Args:
        frames: ``(H, W, 3)`` or ``(T, H, W, 3)`` uint8 RGB (numpy or torch).
        size: output side in pixels; a multiple of ``patch_size * merge_size``
            (336 -> 24x24 patches -> 12x12 = 144 tokens after the 2x2 merge).
        device, dtype: of the returned ``pixel_values`` (frames are resized on ``device``).

    Returns:
        ``pixel_values`` ``(T * gh * gw, 3 * p * p)``, ``grid_thw`` ``(T, 3)``
        long (one row ``[1, gh, gw]`` per frame, so the encoder treats each frame on
        its own), ``merge_sizes`` ``(T,)`` long.

    Raises:
        ValueError: for a wrong shape or dtype, or a size that is not a multiple
            of ``patch_size * merge_size``.
    """
    if size % (patch_size * merge_size):
        raise ValueError(f"frame size {size} must be a multiple of {patch_size * merge_size}")
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 RGB arrays, got {getattr(frames, 'dtype', type(frames))}")
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (H, W, 3) or (T, H, W, 3), got {tuple(frames.shape)}")
    x = resize_frames(frames.to(device).permute(0, 3, 1, 2), size)
    mean = torch.tensor(IMAGE_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=x.device).view(1, 3, 1, 1)
    x = (x.float() / 255.0 - mean) / std
    t = x.shape[0]
    g = size // patch_size
    grid_thw = torch.tensor([[1, g, g]] * t, dtype=torch.long, device=x.device)
    merge_sizes = torch.full((t,), merge_size, dtype=torch.long, device=x.device)
    return patchify(x, patch_size, merge_size).to(dtype), grid_thw, merge_sizes
