"""Frame preprocessing in plain torch, in the native VideoLLaMA3 layout.

As ``VideoLlama3VideoProcessor`` does it (docs/design.md section 3): each frame keeps its
aspect ratio, resized by transformers' own ``smart_resize`` (sides multiples of
``patch * merge`` = 28 pixels, within a per-frame pixel budget: ``max_tokens`` merged tokens
of 28x28 pixels), with antialiased bicubic as torchvision applies it to uint8 frames; then
rescale 1/255 and normalise with mean 0.5 / std 0.5 in one step, as the native processor fuses
them; patchify in merge blocks. Plain torch, without the native processor's torchvision
dependency, and bit for bit equal to it on the CPU (a test checks it where torchvision exists).
A 16:9 frame at 144 tokens gives a 9x16 token grid, a 4:3 one 10x13, a square one 12x12
(336x336 pixels).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

PATCH_SIZE = 14
MERGE_SIZE = 2
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
FRAME_TOKENS = 144
"""Default token budget per frame (DAMO's clip budget of 16384 tokens spread over ~114 frames)."""
MIN_FRAME_TOKENS = 4


def frame_size(height: int, width: int, max_tokens: int = FRAME_TOKENS, patch_size: int = PATCH_SIZE,
               merge_size: int = MERGE_SIZE) -> tuple[int, int]:
    """``(height, width)`` in pixels a frame is resized to: transformers' ``smart_resize`` with
    ``factor = patch * merge`` and at most ``max_tokens`` merged tokens (at least 4).

    Raises:
        ValueError: for a non-positive size or budget, or an aspect ratio above 200.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < MIN_FRAME_TOKENS:
        raise ValueError(f"max_tokens (tokens per frame) must be an integer >= {MIN_FRAME_TOKENS}, got {max_tokens!r}")
    if height < 1 or width < 1:
        raise ValueError(f"a frame of {height}x{width} pixels is empty")
    # imported here: transformers' image processing takes 2 s to import, which a command's --help need not pay
    from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import smart_resize

    factor = patch_size * merge_size
    return smart_resize(height, width, factor, MIN_FRAME_TOKENS * factor**2, max_tokens * factor**2)


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(T, 3, H, W)`` uint8 frames to ``(T, 3, *size)`` uint8 with antialiased bicubic
    interpolation, as torchvision's ``resize`` (which the native video processor calls on the decoded
    frames) does for uint8 tensors (``resize_image``); ``frames`` itself when already at ``size``.

    - On the CPU, torch's uint8 antialiased bicubic kernel. It runs in fixed point, like Pillow's
      resize, which DAMO's own processor uses: on trailer_bbb.mp4's 720p frames to 252x448 it is
      within 1 of Pillow's for every value (0.15 % differ), and about 15x faster than the float path
      on one core (1.0 against 16 ms a frame). It is fastest on the channels-last layout a decoded
      ``(H, W, 3)`` frame has, so the frames are not made contiguous first.
    - Elsewhere (a GPU: the uint8 kernel is the CPU's only), :func:`float_resize`.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if frames.device.type != "cpu":
        return float_resize(frames, size).to(torch.uint8)
    return F.interpolate(frames, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)


def float_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's bicubic resize of ``(T, 3, H, W)`` uint8 frames where torch has no uint8 kernel (a
    GPU): antialiased bicubic in float32, clamped to 0..255 and rounded; float32 ``(T, 3, *size)``, on
    the frames' device. The frames are made channels-first before the float conversion: the
    interpolation is faster on that layout, with the same values."""
    x = F.interpolate(frames.contiguous().float(), size=tuple(size), mode="bicubic", align_corners=False,
                      antialias=True)
    return x.clamp_(0, 255).round_()


def patchify(pixels: torch.Tensor, patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE) -> torch.Tensor:
    """``(T, C, H, W)`` -> ``(T * gh * gw, C * p * p)`` patches, ordered frame, merge block row,
    merge block column, row in block, column in block (the native layout)."""
    t, c, h, w = pixels.shape
    gh, gw = h // patch_size, w // patch_size
    x = pixels.reshape(t, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size)
    return x.permute(0, 2, 5, 3, 6, 1, 4, 7).reshape(t * gh * gw, c * patch_size * patch_size)


def preprocess_frames(
    frames: torch.Tensor | np.ndarray,
    max_tokens: int = FRAME_TOKENS,
    patch_size: int = PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn RGB frames into VideoLLaMA3 vision-encoder inputs.

    Args:
        frames: ``(H, W, 3)`` or ``(T, H, W, 3)`` uint8 RGB (numpy or torch).
        max_tokens: token budget per frame after the 2x2 merge (:func:`frame_size`).
        device, dtype: of the returned ``pixel_values``. Frames are resized on ``device`` (None: where
            they are, the CPU for arrays), so the device picks torchvision's path
            (:func:`resize_frames`): the CPU's is the native processor's default and within a level of
            DAMO's Pillow resize; a GPU's float path differs from it by a level on a few percent of the
            values. :class:`~videollama3.session.StreamingSession` preprocesses on the CPU.

    Returns:
        ``pixel_values`` ``(T * gh * gw, 3 * p * p)``, ``grid_thw`` ``(T, 3)``
        long (one row ``[1, gh, gw]`` per frame, so the encoder treats each frame on
        its own), ``merge_sizes`` ``(T,)`` long. The frame's token grid is
        ``(gh / merge, gw / merge)``.

    Raises:
        ValueError: for a wrong shape or dtype, a sparse or meta tensor, an empty frame, or a bad
            ``max_tokens``.
    """
    if isinstance(frames, np.ndarray):
        # a read-only array (np.frombuffer of a pipe's bytes) is copied: torch may not wrap it without a warning
        frames = torch.from_numpy(np.require(frames, requirements=("C", "W")))
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 RGB arrays, got {getattr(frames, 'dtype', type(frames))}")
    if frames.layout != torch.strided or frames.is_meta:
        raise ValueError(f"frames must be dense uint8 arrays holding pixels, got a {frames.layout}"
                         f"{' meta' if frames.is_meta else ''} tensor")
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (H, W, 3) or (T, H, W, 3), got {tuple(frames.shape)}")
    height, width = frame_size(frames.shape[1], frames.shape[2], max_tokens, patch_size, merge_size)
    patches = patchify(resize_frames(frames.to(device).permute(0, 3, 1, 2), (height, width)), patch_size, merge_size)
    # rescale and normalise in one, as the native processor fuses them: (x - 255 mean) / (255 std), on
    # the uint8 patches (a quarter of the bytes to reorder), each row's values channel by channel
    mean, std = _normalisation(patches.device)
    n, t = patches.shape[0], frames.shape[0]
    pixel_values = torch.sub(patches.view(n, 3, -1), mean).div_(std).view(n, -1)
    grid_thw = torch.tensor([[1, height // patch_size, width // patch_size]] * t, dtype=torch.long,
                            device=patches.device)
    merge_sizes = torch.full((t,), merge_size, dtype=torch.long, device=patches.device)
    return pixel_values.to(dtype), grid_thw, merge_sizes


@functools.lru_cache(maxsize=16)
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``255 * IMAGE_MEAN`` and ``255 * IMAGE_STD`` as float32 ``(1, 3, 1)`` tensors on ``device`` (cached)."""
    return tuple(torch.tensor(values, dtype=torch.float32).mul_(255).view(1, 3, 1).to(device)
                 for values in (IMAGE_MEAN, IMAGE_STD))
