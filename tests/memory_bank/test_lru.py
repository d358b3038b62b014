"""LRUQuantizedMemory: least-used eviction, precision by use count, bytes held."""

import pytest
import torch

from memory_bank import LRUQuantizedMemory, dequantize_uint8, quantize_uint8

C = 8
FRAME_BYTES = 16 * C * 4  # 16 tokens x 8 channels float32


def frames(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, C, generator=g) * (i + 1) for i in range(n)]


def stored_dtypes(m):
    return [s["dtype"] for s in m.state_dict()["slots"]], [e["tokens"].dtype for e in m.state_dict()["entries"]]


def test_bytes_drop_as_unused_entries_fall_to_8_bits():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=4, grace_frames=1)
    xs = frames(4)
    expected = [FRAME_BYTES, FRAME_BYTES + 128 + 8, FRAME_BYTES + 2 * 136, FRAME_BYTES + 3 * 136]
    for i, x in enumerate(xs):
        m.add(x, i, float(i))
        assert m.stats()["bytes"] == expected[i]
    assert m.stats()["bytes_per_precision"] == {"32": FRAME_BYTES, "16": 0, "8": 3 * 136}
    assert [e.tier for e in m.readout()] == [2, 2, 2, 0]


def test_8_bit_error_is_below_one_percent_of_the_range():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=4, grace_frames=1)
    xs = frames(3)
    for i, x in enumerate(xs):
        m.add(x, i, float(i))
    for x, e in zip(xs[:2], m.readout()[:2]):
        assert e.tier == 2 and e.tokens.dtype == torch.float32
        value_range = float(x.max() - x.min())
        error = float((e.tokens - x).abs().max())
        assert 0 < error <= value_range / 510 * 1.001  # half a quantisation step
        assert error / value_range < 0.01


def test_quantize_uint8_round_trip_and_constant_input():
    x = torch.tensor([[-10.0, -9.0], [0.0, 500.0]])  # range 510: a step of exactly 2
    q, scale, offset = quantize_uint8(x)
    assert q.dtype == torch.uint8 and q.tolist() == [[0, 0], [5, 255]]  # -9 and 0 are 0.5 and 5 steps up
    assert float(scale) == 2.0 and float(offset) == -10.0
    assert dequantize_uint8(q, scale, offset, torch.float32).tolist() == [[-10.0, -10.0], [0.0, 500.0]]
    q, scale, offset = quantize_uint8(torch.full((3,), 7.0))
    assert torch.equal(dequantize_uint8(q, scale, offset, torch.float32), torch.full((3,), 7.0))


def test_precision_follows_use_counts_and_least_used_is_evicted():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=4, full_precision_uses=2, half_precision_uses=1, grace_frames=1)
    xs = frames(6)
    m.add(xs[0], 0, 0.0)
    m.readout()  # f0: 1 use
    m.add(xs[1], 1, 1.0)  # f0 earns 16 bits
    m.readout()  # f0: 2 uses, f1: 1
    m.add(xs[2], 2, 2.0)  # f0 would earn 32 bits again but precision never goes up; f1 -> 16 bits
    m.add(xs[3], 3, 3.0)  # f2: no use -> 8 bits
    state = m.state_dict()
    assert [s["level"] for s in state["slots"]] == [1, 1, 2, 0]
    assert [e["tokens"].dtype for e in state["entries"]] == [torch.float16, torch.float16, torch.uint8, torch.float32]
    assert m.stats()["bytes_per_precision"] == {"32": FRAME_BYTES, "16": 2 * FRAME_BYTES // 2, "8": 136}
    assert m.stats()["uses"] == [2, 1, 0, 0]

    m.add(xs[4], 4, 4.0)  # full: f2 (0 uses; f3 is the newest, protected) goes
    assert [e.frame_index for e in m.readout()] == [0, 1, 3, 4]  # this readout is a use of each
    assert m.stats()["uses"] == [3, 2, 1, 1]
    (hit, score), = m.retrieve(xs[3], k=1)  # f3: one more use, most recent
    assert hit.frame_index == 3 and score == pytest.approx(1.0, abs=1e-2)
    m.add(xs[5], 5, 5.0)  # candidates f0 (3 uses), f1 (2), f3 (2, used later than f1): f1 goes
    assert [e.frame_index for e in m.readout()] == [0, 3, 4, 5]
    assert m.stats()["evictions"] == 2
    # readout is dequantised to the dtype added; 16-bit entries are close, not equal
    e0 = m.readout()[0]
    assert e0.tokens.dtype == torch.float32 and torch.allclose(e0.tokens, xs[0], rtol=1e-3, atol=1e-3)


def test_use_decay_ages_counts():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=4, use_decay=0.5)
    xs = frames(4)
    m.add(xs[0], 0, 0.0)
    m.readout()
    for i in (1, 2, 3):
        m.add(xs[i], i, float(i))
    assert m.stats()["uses"] == [0.125, 0, 0, 0]


def test_bfloat16_tokens_stay_bfloat16_at_16_bits():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=3, grace_frames=0, half_precision_uses=0)
    x = frames(1)[0].bfloat16()
    m.add(x, 0, 0.0)
    (e,) = m.readout()
    assert e.tokens.dtype == torch.bfloat16 and torch.equal(e.tokens, x)
    assert m.stats()["bytes_per_precision"] == {"32": 0, "16": 16 * C * 2, "8": 0}
