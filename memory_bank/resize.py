"""Token-grid resizing between memory tiers."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

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

    ``area`` averages the input cells each output cell covers (the bins of
    ``adaptive_avg_pool2d``: an exact 2x2 mean for 12x12 -> 6x6, overlapping bins
    for non-integer ratios such as 12x12 -> 8x8). ``bilinear`` is antialiased
    bilinear interpolation (``F.interpolate(..., antialias=True)``). Both keep a
    constant grid constant; plain bilinear without antialiasing (the reference
    implementation's choice) skips input cells at non-integer ratios, which is why
    it is not offered.

    Both are linear maps, applied as one sparse product with
    :func:`pooling_operator` (``F.embedding_bag`` with per-token weights) on the
    ``(h * w, C)`` layout the tokens already have: no channels-first copy, and about
    half the time of ``adaptive_avg_pool2d`` on CPU. Values equal the torch
    function's to rounding (exactly where the bin weights are powers of two, as
    for 12 -> 8 -> 6).

    Args:
        tokens: ``(h * w, C)`` tokens, row-major over ``grid``; any floating
            dtype and device. The arithmetic runs in float32.
        grid: ``(h, w)`` of the input.
        size: ``(h', w')`` of the output.
        mode: ``"area"`` or ``"bilinear"``.

    Returns:
        ``(h' * w', C)`` tokens in the input's dtype and device (``tokens`` itself
        when ``size == grid``).

    Raises:
        MemoryBankError: when the shapes disagree or the mode is unknown.
    """
    h, w = grid
    if tokens.dim() != 2 or tokens.shape[0] != h * w:
        raise MemoryBankError(f"tokens of shape {tuple(tokens.shape)} do not match the grid {h}x{w}")
    size = (int(size[0]), int(size[1]))
    if size == (h, w):
        return tokens
    y = weighted_bags(tokens.float(), *pooling_operator((h, w), size, mode, tokens.device))
    return y if y.dtype == tokens.dtype else y.to(tokens.dtype)


def weighted_bags(tokens: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """``F.embedding_bag(indices, tokens, offsets, mode="sum", per_sample_weights=weights)``: output row ``k``
    is ``sum(weights[j] * tokens[indices[j]])`` over ``offsets[k] <= j < offsets[k + 1]``.

    Called as ``torch.embedding_bag``, without the functional form's argument checks: the arguments
    come from :func:`pooling_operator` or :func:`arrival_operator`, and on a memory's small grids those
    checks cost about a quarter of the call.

    Args:
        tokens: ``(n, C)`` float32 tokens.
        indices, offsets, weights: bags as :func:`pooling_operator` returns them, on ``tokens``' device.

    Returns:
        ``(len(offsets), C)`` float32, on ``tokens``' device.
    """
    # (weight, indices, offsets, scale_grad_by_freq, mode 0 = "sum", sparse, per_sample_weights) -> (output, ...)
    return torch.embedding_bag(tokens, indices, offsets, False, 0, False, weights)[0]


@functools.lru_cache(maxsize=256)
def resize_matrix(grid: tuple[int, int], size: tuple[int, int], mode: str) -> torch.Tensor:
    """The resize from ``grid`` to ``size`` as a dense float64 ``(h' * w', h * w)`` matrix, on the CPU.

    Built once per (grid, size, mode) by resizing the identity with the defining torch function
    (``adaptive_avg_pool2d`` for ``area``, antialiased ``interpolate`` for ``bilinear``):
    :func:`resize_token_grid` of ``x`` is ``matrix @ x`` up to rounding. The identity of a grid of
    ``n`` tokens takes ``8 n^2`` bytes, so above :data:`IDENTITY_TOKENS` tokens (a 100x100 grid would
    take 800 MB, a 300x300 one 65 GB) the matrix is the Kronecker product of the two axes' resizes,
    each built the same way: both modes are separable, so the weights are the same to float64
    rounding, and the memory is that of the matrix itself.

    Raises:
        MemoryBankError: for an unknown mode, or an output grid larger than the input.
    """
    (h, w), (oh, ow) = grid, size
    if mode not in RESIZE_MODES:
        raise MemoryBankError(f"unknown resize mode {mode!r}; use 'area' or 'bilinear'")
    if not (1 <= oh <= h and 1 <= ow <= w):
        raise MemoryBankError(f"cannot resize a {h}x{w} token grid to {oh}x{ow}: the memory only shrinks grids")
    if h * w > IDENTITY_TOKENS:
        return separable_resize_matrix(grid, size, mode)
    # column k of the identity is input token k: resizing it gives column k of the matrix
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    return _resize(eye, size, mode).reshape(h * w, oh * ow).T.contiguous()


def separable_resize_matrix(grid: tuple[int, int], size: tuple[int, int], mode: str) -> torch.Tensor:
    """:func:`resize_matrix` as the Kronecker product of the two axes' resizes, each measured with the
    defining torch function on a one-hot image of the other axis' width (2, or 1 when the grid is 1
    wide: torch resizes a 1-wide image differently, and so does this). Equal to the 2-D identity's
    matrix to float64 rounding (a test compares them), in the memory of the result only."""
    (h, w), (oh, ow) = grid, size
    rows = torch.eye(h, dtype=torch.float64).reshape(h, 1, h, 1).expand(h, 1, h, min(w, 2))
    cols = torch.eye(w, dtype=torch.float64).reshape(w, 1, 1, w).expand(w, 1, min(h, 2), w)
    along_h = _resize(rows, (oh, min(w, 2)), mode)[:, 0, :, 0].T  # (oh, h)
    along_w = _resize(cols, (min(h, 2), ow), mode)[:, 0, 0, :].T  # (ow, w)
    return torch.kron(along_h.contiguous(), along_w.contiguous())


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """The defining torch function of ``mode`` on ``(N, 1, h, w)`` float64 images."""
    if mode == "area":
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


IDENTITY_TOKENS = 4096
"""Grids up to this many tokens (64x64; 32 MB of identity) get :func:`resize_matrix` from the 2-D identity."""


@functools.lru_cache(maxsize=256)
def pooling_operator(
    grid: tuple[int, int], size: tuple[int, int], mode: str, device: torch.device = torch.device("cpu")
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`resize_matrix` in sparse, ``F.embedding_bag`` form, on ``device`` (cached).

    Returns:
        ``(indices (nnz,) int64, offsets (h' * w',) int64, weights (nnz,) float32)``:
        output token ``k`` is ``sum(weights[j] * x[indices[j]])`` over
        ``offsets[k] <= j < offsets[k + 1]``.

    Raises:
        MemoryBankError: for an unknown mode, or an output grid larger than the input.
    """
    return _bags(resize_matrix(grid, size, mode), device)


def _bags(matrix: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dense ``(rows, n)`` float64 matrix as ``F.embedding_bag`` arguments ``(indices, offsets,
    weights)``: bag ``k`` is row ``k``'s nonzero entries, in column order."""
    rows, cols = matrix.nonzero(as_tuple=True)  # row-major: grouped by output token, inputs in order
    offsets = torch.searchsorted(rows, torch.arange(matrix.shape[0]))
    return cols.to(device), offsets.to(device), matrix[rows, cols].to(torch.float32).to(device)


@functools.lru_cache(maxsize=256)
def sum_weights(grids: tuple[tuple[int, int], ...], mode: str) -> torch.Tensor:
    """Weights that give, from a grid's tokens, the token sum of that grid after each resize of a chain.

    For ``grids = (g_0, g_1, ..., g_k)``, row ``j`` of the result, times the ``(n_0, C)`` tokens of
    ``g_0``, is the per-channel sum of the tokens the grid has once resized ``g_0 -> g_1 -> ... -> g_j``
    (the resizes are linear, so the sum is ``ones @ P_j ... P_1``): row 0 is all ones. So a frame's
    pooled descriptor in every later tier of a memory comes from its tokens while they are at hand
    (:func:`arrival_operator` applies these rows; project-specific, see
    :class:`~memory_bank.HierarchicalMemoryBank`).

    Returns:
        ``(k + 1, n_0)`` float64 on the CPU (cached per grids and mode).

    Raises:
        MemoryBankError: for an unknown mode, or a grid larger than the one before it.
    """
    rows = [torch.ones(grids[0][0] * grids[0][1], dtype=torch.float64)]
    chain = None  # P_j ... P_1, without the identity of g_0 (8 n_0^2 bytes) that it would multiply, exactly
    for src, dst in zip(grids, grids[1:]):
        step = resize_matrix(src, dst, mode)
        chain = step if chain is None else step @ chain
        rows.append(chain.sum(dim=0))
    return torch.stack(rows)


def repeat_bags(indices: torch.Tensor, offsets: torch.Tensor, count: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.embedding_bag`` bags ``(indices, offsets)`` over a ``block``-row input, repeated for ``count`` such
    blocks stacked: copy ``j`` reads rows ``j * block ...`` and writes its bags after copy ``j - 1``'s.
    Per-sample weights, if any, repeat as they are (``weights.repeat(count)``)."""
    shift = torch.arange(count, device=indices.device)[:, None]
    return (indices + shift * block).flatten(), (offsets + shift * indices.numel()).flatten()


class ArrivalOperator(NamedTuple):
    """The bags of :func:`arrival_operator` and where its outputs are.

    Each frame's block of output rows is ``sums`` sums over the top half of the grid's rows,
    the ``resized`` tokens of the next grid, then ``sums`` sums over the bottom half: a frame's
    token sums are ``out[:sums] + out[-sums:]`` (:meth:`token_sums`) and its resized tokens
    ``out[sums:sums + resized]`` (:meth:`resized_tokens`).
    """

    indices: torch.Tensor
    """``(nnz,)`` int64 token rows read."""
    offsets: torch.Tensor
    """``(count * rows,)`` int64 start of each bag in ``indices``."""
    weights: torch.Tensor
    """``(nnz,)`` float32 weight of each row read."""
    resized: int
    """Rows of resized tokens per frame (``h_1 * w_1``, or 0 when the next grid is the same)."""
    sums: int
    """Token sums per frame (those of the chain's first ``summed`` grids), each given as two partial sums."""

    @property
    def rows(self) -> int:
        """Output rows per frame: ``resized + 2 * sums``."""
        return self.resized + 2 * self.sums

    def token_sums(self, blocks: torch.Tensor) -> torch.Tensor:
        """Each frame's token sums from its block of output rows: the top half's sums plus the bottom
        half's, in float32, by one ``torch.add`` (a new tensor: it holds no view of ``blocks``).

        float32 throughout, like the bag's own sums: one rounding more than a whole-grid sum. Adding the
        halves in float64 by one reduction over a strided view of both, and comparing in float64, made
        an add 1.06x-1.08x as slow (144 x 1152, 1 and 2 threads, out of cache; ``vl3mem bench memory
        --against``), for decisions that float32 takes alike (the readout after 1,000 frames equals the
        pinned implementation's, ``tests/memory_bank``).

        Args:
            blocks: one frame's ``(rows, C)`` float32 output, or ``(count, rows, C)`` for a batch (a view
                of the ``(count * rows, C)`` output); any strides.

        Returns:
            ``(sums, C)``, or ``(count, sums, C)``, float32 on ``blocks``' device.
        """
        k, rows = self.sums, self.rows
        if blocks.dim() == 2:
            return torch.add(blocks[:k], blocks[rows - k:])
        return torch.add(blocks[:, :k], blocks[:, rows - k:])

    def resized_tokens(self, blocks: torch.Tensor) -> torch.Tensor:
        """Each frame's ``resized`` tokens of the next grid from its block of output rows, as a view:
        ``(resized, C)``, or ``(count, resized, C)`` for a batch (``blocks`` as :meth:`token_sums` takes it)."""
        if blocks.dim() == 3:
            return blocks[:, self.sums: self.sums + self.resized]
        return blocks[self.sums: self.sums + self.resized]


@functools.lru_cache(maxsize=256)
def arrival_operator(
    grids: tuple[tuple[int, int], ...], mode: str, device: torch.device = torch.device("cpu"), count: int = 1,
    summed: int | None = None,
) -> ArrivalOperator:
    """One ``F.embedding_bag`` that gives, from a grid's ``(n_0, C)`` tokens, both the tokens resized to
    the next grid of the chain and the token sums of :func:`sum_weights`.

    For ``grids = (g_0, g_1, ..., g_k)`` the bags are: the first ``summed`` rows of :func:`sum_weights`
    (all ``k + 1`` when None; at least 1) over the tokens of the top half of ``g_0``'s rows, the rows
    of ``resize_matrix(g_0, g_1)`` (none when ``k == 0`` or ``g_1 == g_0``), and the same sums over the
    bottom half. A sum nobody will read costs a full pass over the tokens, so a memory asks only for
    the grids it compares (:class:`~memory_bank.HierarchicalMemoryBank`: a tier of capacity 1 never
    does). A memory applies it once, when a frame arrives and its tokens are still in cache, instead
    of a product for the sums now and a second read of the tokens when the frame moves to the next
    tier (project-specific; see :class:`~memory_bank.HierarchicalMemoryBank`). The halves are for ``F.embedding_bag``'s threads,
    which take equal runs of bags on the CPU: with two, each reads one half of the grid and does
    half the work (a 12x12 grid's resized top half reads exactly its top six rows), where whole
    sums would leave one thread all of them; the layout does not depend on the thread count, so
    neither do the results (whole sums, half of them at each end, balance two threads as well with no
    halves to add, but each thread then reads the whole frame: no faster overall, docs/design.md).
    The resized rows equal :func:`resize_token_grid`'s (the same bags); the two halves add up to
    ``sum_weights(grids[:summed]) @ x`` to float32 rounding. With ``count > 1``
    the input is ``count`` such grids stacked, ``(count * n_0, C)`` (a batch of frames), and the output holds
    each frame's block of :attr:`ArrivalOperator.rows` rows in turn.

    Returns:
        An :class:`ArrivalOperator` on ``device`` (cached).

    Raises:
        MemoryBankError: for an unknown mode, a grid larger than the one before it, or ``summed``
            outside ``1 .. len(grids)``.
    """
    summed = len(grids) if summed is None else summed
    if not 1 <= summed <= len(grids):
        raise MemoryBankError(f"summed must be between 1 and the {len(grids)} grids given, got {summed}")
    (h, w), sums = grids[0], sum_weights(grids[:summed], mode)
    top = torch.arange(h * w) < (h + 1) // 2 * w  # the tokens of the top half of the rows
    parts = [sums * top, sums * ~top]
    if len(grids) > 1 and grids[1] != grids[0]:
        parts.insert(1, resize_matrix(grids[0], grids[1], mode))
    resized = parts[1].shape[0] if len(parts) == 3 else 0
    indices, offsets, weights = _bags(torch.cat(parts), torch.device("cpu"))
    if count > 1:  # frame j reads rows j * n_0 ... and writes bags j * rows ...
        indices, offsets = repeat_bags(indices, offsets, count, h * w)
        weights = weights.repeat(count)
    return ArrivalOperator(indices.to(device), offsets.to(device), weights.to(device), resized, summed)
