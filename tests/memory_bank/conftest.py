import math

import torch


def plane_vector(deg: float, dims: int = 4) -> torch.Tensor:
    """Unit vector at angle ``deg`` in the plane of the last two axes."""
    v = torch.zeros(dims)
    v[-2], v[-1] = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return v


def axis(i: int, dims: int = 4) -> torch.Tensor:
    v = torch.zeros(dims)
    v[i] = 1.0
    return v


def constant_grid(v: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, C)`` tokens all equal to ``v``: their descriptor is ``v`` in every tier."""
    return v.expand(n, -1).clone()


def snapshot(bank):
    """Everything observable about a bank, for before/after comparisons."""
    return (
        bank.stats(),
        [(e.frame_index, e.tier, e.timestamp, e.end_timestamp, e.num_frames, e.tokens.clone()) for e in bank.readout()],
        bank._cursor.frame_index,
        bank._cursor.timestamp,
    )


def same(a, b) -> bool:
    if a[0] != b[0] or a[2:] != b[2:] or len(a[1]) != len(b[1]):
        return False
    return all(x[:5] == y[:5] and torch.equal(x[5], y[5]) for x, y in zip(a[1], b[1]))
