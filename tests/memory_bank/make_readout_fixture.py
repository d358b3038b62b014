"""Writes data/readout_1000.safetensors: the hierarchical readout after 1,000-frame streams.

Made once with the implementation before the faster add (commit 'frames keep their aspect
ratio...'), so tests/memory_bank/test_hierarchical.py can check every later implementation gives
the same readout to 1e-6. Run: ``python -m tests.memory_bank.make_readout_fixture``.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from memory_bank import HierarchicalMemoryBank

CASES = {"square": (12, 12, 32), "wide": (9, 16, 32)}
FRAMES = 1000


def stream(h: int, w: int, c: int, seed: int = 0):
    """A drifting random walk with scene cuts every 37 frames: ``FRAMES`` grids of ``(h, w, c)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(h, w, c, generator=g)
    for i in range(FRAMES):
        x = torch.randn(h, w, c, generator=g) if i % 37 == 0 else x + 0.2 * torch.randn(h, w, c, generator=g)
        yield x.clone(), i, 0.5 * i


def readout(case: str, batch: int = 1) -> list:
    """The readout after the stream of ``case``, its frames added one at a time (``batch`` 1, how the
    fixture was made) or ``batch`` at a time with ``add_frames`` (one ``(batch, h, w, c)`` tensor each)."""
    h, w, c = CASES[case]
    bank = HierarchicalMemoryBank(mm_hidden_size=c)
    frames = list(stream(h, w, c))
    for first in range(0, len(frames), batch):
        part = frames[first: first + batch]
        if batch == 1:
            bank.add(*part[0])
        else:
            bank.add_frames(torch.stack([x for x, _, _ in part]), [i for _, i, _ in part], [t for _, _, t in part])
    return bank.readout()


def main() -> None:
    tensors, meta = {}, {}
    for case in CASES:
        entries = readout(case)
        meta[case] = [e.metadata() for e in entries]
        tensors.update({f"{case}.{k}": e.tokens for k, e in enumerate(entries)})
    path = Path(__file__).parent / "data" / "readout_1000.safetensors"
    save_file(tensors, str(path), metadata={"entries": json.dumps(meta)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
