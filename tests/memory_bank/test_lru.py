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


def test_values_beyond_float16_are_held_as_bfloat16_at_16_bits():
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=3, grace_frames=0, half_precision_uses=0)
    small, large = frames(2)
    large = large.clone()
    large[0, 0] = -1e5  # beyond float16's 65504: float16 would hold -inf
    m.add(small, 0, 0.0)
    m.add(large, 1, 1.0)
    first, second = m.readout()
    assert m.state_dict()["entries"][0]["tokens"].dtype == torch.float16
    assert m.state_dict()["entries"][1]["tokens"].dtype == torch.bfloat16
    assert torch.equal(first.tokens, small.half().float())
    assert torch.equal(second.tokens, large.bfloat16().float()) and second.tokens[0, 0] == -99840.0


def test_a_range_beyond_float32_arithmetic_stays_at_16_bits_not_nan():
    """(x - min) / scale overflows float32 when max - min > 3.4e38, and the 8-bit entry read NaN; such an
    entry is held at 16 bits (bfloat16) instead, and its 8-bit neighbours are unaffected."""
    m = LRUQuantizedMemory(mm_hidden_size=C, capacity=5, grace_frames=1)
    extreme = torch.zeros(16, C)
    extreme[0, 0], extreme[1, 0], extreme[2, 1] = 3e38, -3e38, 1.5
    plain = frames(1)[0]
    for i, x in enumerate([extreme, plain, plain * 2]):
        m.add(x, i, float(i))
    (a, b, c) = m.readout()
    assert [a.tier, b.tier, c.tier] == [1, 2, 0]
    assert m.state_dict()["entries"][0]["tokens"].dtype == torch.bfloat16
    assert torch.isfinite(a.tokens).all() and torch.equal(a.tokens, extreme.bfloat16().float())
    assert float((b.tokens - plain).abs().max()) <= float(plain.max() - plain.min()) / 510 * 1.001
    for i in (3, 4):  # later adds leave it at 16 bits, without counting a requantization each time
        m.add(plain * (i + 1), i, float(i))
    assert m.stats()["requantizations"] == 4 and torch.equal(m.readout()[0].tokens, extreme.bfloat16().float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("scale", [1e-40, 1e-3, 7.0, 1e30])
def test_quantize_uint8_spans_0_to_255_without_a_clamp(dtype, scale):
    """The extremes land on 0 and 255 and nothing falls outside (the clamp the arithmetic does not need)."""
    g = torch.Generator().manual_seed(11)
    scale = min(scale, torch.finfo(dtype).max / 100)  # finite in the dtype
    x = ((torch.randn(64, 33, generator=g) * scale) + scale / 3).to(dtype)
    q = quantize_uint8(x)[0]
    xf = x.float()
    reference = ((xf - xf.min()) / ((xf.max() - xf.min()) / 255).clamp_min(torch.finfo(torch.float32).tiny)).round()
    assert torch.equal(q, reference.clamp(0, 255).to(torch.uint8)) and torch.equal(reference, reference.clamp(0, 255))
    assert int(q.min()) == 0 and (int(q.max()) == 255 or float(xf.max() - xf.min()) < 255 * torch.finfo().tiny)


def test_8_bit_entries_after_16_bits_and_from_unchecked_frames_equal_the_direct_quantization():
    """An entry at 16 bits that later falls to 8 bits is quantised over its 16-bit values' range, with or
    without the finite check."""
    xs = frames(3, seed=5)
    for check_finite in (True, False):
        m = LRUQuantizedMemory(mm_hidden_size=C, capacity=4, grace_frames=1, full_precision_uses=2,
                               half_precision_uses=1, check_finite=check_finite)
        m.add(xs[0], 0, 0.0)
        m.readout()  # one use: 16 bits
        m.add(xs[1], 1, 1.0)
        m.add(xs[2], 2, 2.0)
        assert m.state_dict()["entries"][0]["tokens"].dtype == torch.float16
        m._slots[0].uses = 0  # forget the use (as a decay would): the next add lowers it to 8 bits
        m.add(xs[2] * 2, 3, 3.0)
        q, scale, offset = quantize_uint8(xs[0].half())
        slot = m._slots[0]
        assert slot.level == 2 and torch.equal(slot.entry.tokens, q)
        assert torch.equal(slot.scale, scale) and torch.equal(slot.offset, offset)
