"""HierarchicalMemoryBank: config, cascade, invariants, merge, retrieval, state, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from memory_bank import (
    HierarchicalMemoryBank,
    MemoryBankConfig,
    MemoryBankError,
    MemoryConfigError,
    fit_grid,
    hierarchical,
    resize_token_grid,
)

from .conftest import axis, constant_grid, plane_vector, same, snapshot


def frame_ids(entries):
    return [e.frame_index for e in entries]


def tier_content(bank):
    """{tier: [(first frame, last frame), ...]} in tier order."""
    return {name: [(e.frame_index, e.last_frame_index) for e in es] for name, es in bank.tiers().items()}


# ---------------------------------------------------------------- config
def test_defaults():
    cfg = MemoryBankConfig()
    assert cfg.memory_capacities == (8, 4, 1)
    assert cfg.memory_reduced_sizes == (144, 64, 36)
    assert cfg.tier_grids((12, 12)) == ((12, 12), (8, 8), (6, 6))
    assert cfg.tier_grids((9, 16)) == ((9, 16), (6, 10), (5, 7))
    assert cfg.memory_similarity_threshold == 0.8
    assert cfg.mm_hidden_size == 1152
    assert cfg.memory_resize_mode == "area"
    assert cfg.memory_tier_names == ("short", "mid", "long")
    assert cfg.max_tokens == 8 * 144 + 4 * 64 + 36 == 1444
    assert MemoryBankConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"memory_capacities": (8, 0, 1)}, "positive"),
        ({"memory_capacities": ()}, "empty"),
        ({"memory_reduced_sizes": (144, 0, 0)}, "positive token budgets"),
        ({"memory_reduced_sizes": (64, 144, 36)}, "must not grow"),
        ({"memory_reduced_sizes": (144, 64)}, "one token count per tier"),
        ({"memory_resize_mode": "nearest"}, "memory_resize_mode"),
        ({"memory_similarity_threshold": 1.5}, "cosine similarity"),
        ({"mm_hidden_size": 0}, "mm_hidden_size"),
        ({"memory_tier_names": ("a", "a", "b")}, "distinct"),
    ],
)
def test_config_rejects_invalid_settings(kwargs, message):
    with pytest.raises(MemoryConfigError, match=message):
        MemoryBankConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(MemoryConfigError, match="unknown"):
        MemoryBankConfig.from_dict({"memory_capacity": (1,)})


# --------------------------------------------------------------- cascade
SMALL = dict(memory_capacities=(3, 2, 1), memory_reduced_sizes=(4, 1, 1), mm_hidden_size=4)


def test_cascade_passes_frames_all_the_way_down():
    """Frames 0 and 1 are orthogonal to everything; frames 2..6 sit at 0, 30, 40, 45, 47 degrees.

    Short always evicts the earlier frame of its newest pair (2, 3, 4, 5 in turn).
    Mid [2, 3, 4] evicts 3 (30-40 is closer than 0-30) to long, then mid [2, 4, 5]
    evicts 4 (40-45 beats 0-40), so long merges 3 and 4. The reference
    implementation's one-level cascade drops those instead and ends with
    short [0, 1, 6] / mid [2, 5] / long [].
    """
    vectors = [axis(0), axis(1)] + [plane_vector(d) for d in (0, 30, 40, 45, 47)]
    expected = [
        {"short": [(0, 0)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1), (2, 2)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1), (3, 3)], "mid": [(2, 2)], "long": []},
        {"short": [(0, 0), (1, 1), (4, 4)], "mid": [(2, 2), (3, 3)], "long": []},
        {"short": [(0, 0), (1, 1), (5, 5)], "mid": [(2, 2), (4, 4)], "long": [(3, 3)]},
        {"short": [(0, 0), (1, 1), (6, 6)], "mid": [(2, 2), (5, 5)], "long": [(3, 4)]},
    ]
    bank = HierarchicalMemoryBank(**SMALL)
    for i, (v, want) in enumerate(zip(vectors, expected)):
        bank.add(constant_grid(v, 4), i, float(i))
        assert tier_content(bank) == want, f"after frame {i}"
    merged = bank.tiers()["long"][0]
    assert merged.num_frames == 2 and (merged.timestamp, merged.end_timestamp) == (3.0, 4.0)
    assert torch.allclose(merged.tokens, ((vectors[3] + vectors[4]) / 2).expand(1, -1))
    stats = bank.stats()["tiers"]
    assert [stats[t]["evictions"] for t in ("short", "mid", "long")] == [4, 2, 0]
    assert stats["long"]["merges"] == 1


def test_pushed_down_entries_are_inserted_in_time_order():
    """Angles 0, 10, 30, 35, 80, 100, 101 (all in one plane).

    Frame 3: pair (2, 3) is closest -> 2 goes to mid. Frame 4: pair (0, 1) is
    closest -> 0 goes to mid and lands *before* 2. Frame 5: short evicts 4, mid
    [0, 2, 4] evicts 0 to long. Frame 6: short evicts 5, mid [2, 4, 5] evicts 4,
    long merges 0 and 4.
    """
    angles = (0, 10, 30, 35, 80, 100, 101)
    expected = [
        {"short": [(0, 0)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1), (2, 2)], "mid": [], "long": []},
        {"short": [(0, 0), (1, 1), (3, 3)], "mid": [(2, 2)], "long": []},
        {"short": [(1, 1), (3, 3), (4, 4)], "mid": [(0, 0), (2, 2)], "long": []},
        {"short": [(1, 1), (3, 3), (5, 5)], "mid": [(2, 2), (4, 4)], "long": [(0, 0)]},
        {"short": [(1, 1), (3, 3), (6, 6)], "mid": [(2, 2), (5, 5)], "long": [(0, 4)]},
    ]
    bank = HierarchicalMemoryBank(**SMALL)
    for i, (deg, want) in enumerate(zip(angles, expected)):
        bank.add(constant_grid(plane_vector(deg), 4), i, float(i))
        assert tier_content(bank) == want, f"after frame {i}"
    assert frame_ids(bank.readout()) == [0, 1, 2, 3, 5, 6]


def test_long_stream_invariants():
    """10,000 frames: tiers stay time-ordered and within capacity, tokens stay bounded,
    and every frame is accounted for exactly once (the last tier summarises, never drops)."""
    cfg = MemoryBankConfig(mm_hidden_size=16)
    bank = HierarchicalMemoryBank(cfg)
    g = torch.Generator().manual_seed(0)
    walk = torch.randn(144, 16, generator=g)
    for i in range(10_000):
        walk = walk + 0.3 * torch.randn(144, 16, generator=g)
        bank.add(walk, i, i * 0.5)
        assert bank.num_tokens <= cfg.max_tokens
        if i % 97 == 0 or i > 9_990:
            for name, entries in bank.tiers().items():
                keys = [(e.timestamp, e.frame_index) for e in entries]
                assert keys == sorted(keys), name
            counts = [len(es) for es in bank.tiers().values()]
            assert all(n <= c for n, c in zip(counts, cfg.memory_capacities))
            assert sum(e.num_frames for e in bank.readout()) == i + 1
    assert bank.num_tokens == cfg.max_tokens
    readout = bank.readout()
    assert [(e.timestamp, e.frame_index) for e in readout] == sorted((e.timestamp, e.frame_index) for e in readout)
    assert [e.tokens.shape for e in readout] == [(e.num_tokens, 16) for e in readout]
    assert bank.frames_added == 10_000


def test_every_kept_similarity_is_the_cosine_of_the_entries_shown():
    """After every add, each adjacent pair's similarity a tier keeps (computed now if unknown) is the cosine
    of the two entries' token sums on their grids there: no value outlives the pair it was computed for,
    through evictions, inserts in time order and merges at every position of a last tier that compares."""
    g = torch.Generator().manual_seed(8)
    bank = HierarchicalMemoryBank(mm_hidden_size=16, memory_capacities=(3, 2, 4), memory_reduced_sizes=(16, 9, 4))
    last, merged_at = bank._tiers[-1], set()
    replace_pair = last.replace_pair

    def record(pos, entry, chain):
        merged_at.add(pos)
        replace_pair(pos, entry, chain)

    last.replace_pair = record
    x = torch.randn(16, 16, generator=g)
    for i in range(150):
        x = torch.randn(16, 16, generator=g) if i % 11 == 0 else x + 0.5 * torch.randn(16, 16, generator=g)
        bank.add(x, i, float(i))
        for tier, shown in zip(bank._tiers, bank.tiers().values()):
            if len(tier) < 2:
                continue
            tier.most_similar_adjacent_pair()  # fills the unknown ones (a tier of two never needs its one)
            sums = [e.tokens.double().sum(0) for e in shown]
            want = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in zip(sums, sums[1:])]
            got = [w if s is None and len(tier) == 2 else s for s, w in zip(tier.sims, want)]
            assert got == pytest.approx(want, abs=1e-5), f"frame {i}, tier of {tier.budget} tokens"
    assert merged_at == {0, 1, 2, 3}  # every pair of five entries: the first, the middle ones and the last


# ---------------------------------------------------------------- resize
def test_area_resize_12_to_6_is_a_2x2_average():
    x = torch.randn(144, 5)
    got = resize_token_grid(x, (12, 12), (6, 6), "area")
    want = F.avg_pool2d(x.reshape(12, 12, 5).permute(2, 0, 1), 2).permute(1, 2, 0).reshape(36, 5)
    assert torch.allclose(got, want, atol=1e-6)


def test_area_resize_12_to_8_averages_overlapping_cells():
    """adaptive pooling: output row i covers input rows floor(12i/8) .. ceil(12(i+1)/8) - 1."""
    x = torch.arange(144, dtype=torch.float32).reshape(144, 1)
    got = resize_token_grid(x, (12, 12), (8, 8), "area").reshape(8, 8)
    grid = x.reshape(12, 12)
    assert got[0, 0] == grid[0:2, 0:2].mean()
    assert got[1, 1] == grid[1:3, 1:3].mean()
    assert got[7, 7] == grid[10:12, 10:12].mean()


@pytest.mark.parametrize("mode", ["area", "bilinear"])
@pytest.mark.parametrize("src, dst", [((12, 12), (8, 8)), ((8, 8), (6, 6)), ((12, 12), (6, 6))])
def test_constant_grid_stays_constant(mode, src, dst):
    v = torch.randn(7)
    out = resize_token_grid(v.expand(src[0] * src[1], -1), src, dst, mode)
    assert out.shape == (dst[0] * dst[1], 7)
    assert torch.allclose(out, v.expand_as(out), atol=1e-5)


def test_bilinear_mode_is_antialiased():
    """A one-cell checkerboard averages to its mean under antialiased resizing.

    At 12 -> 6 the triangle filter weights 4 input cells by 1/8, 3/8, 3/8, 1/8 per
    axis, so interior outputs are exactly 0.5; the filter is truncated at the border.
    """
    board = ((torch.arange(12)[:, None] + torch.arange(12)[None, :]) % 2).float().reshape(144, 1)
    out = resize_token_grid(board, (12, 12), (6, 6), "bilinear").reshape(6, 6)
    assert torch.allclose(out[1:-1, 1:-1], torch.full((4, 4), 0.5), atol=1e-6)
    assert (out - 0.5).abs().max() < 0.02


@pytest.mark.parametrize("mode", ["area", "bilinear"])
@pytest.mark.parametrize("src, dst", [((12, 12), (8, 8)), ((8, 8), (6, 6)), ((9, 16), (6, 10)), ((6, 10), (4, 9)),
                                      ((12, 16), (10, 14)), ((5, 5), (5, 5))])
def test_sparse_resize_equals_the_torch_function(mode, src, dst):
    """The embedding_bag product gives adaptive_avg_pool2d's / antialiased interpolate's values."""
    x = torch.randn(src[0] * src[1], 24, dtype=torch.float64).float()
    grid = x.reshape(1, *src, 24).permute(0, 3, 1, 2)
    if mode == "area":
        want = F.adaptive_avg_pool2d(grid, dst)
    else:
        want = F.interpolate(grid, size=dst, mode="bilinear", align_corners=False, antialias=True)
    got = resize_token_grid(x, src, dst, mode)
    # area: exact bins, rounding only; bilinear: torch computes its filter weights in float32
    atol = 1e-6 if mode == "area" else 1e-5
    torch.testing.assert_close(got, want.permute(0, 2, 3, 1).reshape(-1, 24), rtol=0, atol=atol)


def test_resize_refuses_to_grow_a_grid():
    with pytest.raises(MemoryBankError, match="only shrinks"):
        resize_token_grid(torch.zeros(36, 4), (6, 6), (8, 8))


@pytest.mark.parametrize("mode", ["area", "bilinear"])
@pytest.mark.parametrize("grids", [((12, 12), (8, 8), (6, 6)), ((9, 16), (6, 10), (4, 9)), ((4, 4), (4, 4))])
def test_sum_weights_give_the_token_sum_of_each_resized_grid(mode, grids):
    from memory_bank.resize import sum_weights

    x = torch.randn(grids[0][0] * grids[0][1], 16)
    sums = sum_weights(grids, mode).float() @ x
    assert sums.shape == (len(grids), 16)
    tokens = x
    for j, (src, dst) in enumerate(zip((grids[0], *grids), grids)):
        tokens = resize_token_grid(tokens, src, dst, mode)
        torch.testing.assert_close(sums[j], tokens.sum(dim=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["area", "bilinear"])
@pytest.mark.parametrize("grids", [((12, 12), (8, 8), (6, 6)), ((9, 16), (6, 10), (4, 9)), ((4, 4), (4, 4)), ((5, 5),),
                                   ((1, 7), (1, 5))])
def test_arrival_operator_gives_the_next_grid_and_the_sums_in_one_bag(mode, grids):
    from memory_bank.resize import arrival_operator, sum_weights

    x = torch.randn(grids[0][0] * grids[0][1], 16)
    op = arrival_operator(grids, mode)
    out = F.embedding_bag(op.indices, x, op.offsets, mode="sum", per_sample_weights=op.weights)
    shrinks = len(grids) > 1 and grids[1] != grids[0]
    n, k = op.resized, op.sums
    assert n == (grids[1][0] * grids[1][1] if shrinks else 0) and k == len(grids)
    assert out.shape == (op.rows, 16) == (n + 2 * k, 16)
    if shrinks:  # the same bags as resize_token_grid: the same values
        assert torch.equal(out[k: k + n], resize_token_grid(x, grids[0], grids[1], mode))
        assert torch.equal(op.resized_tokens(out), out[k: k + n])
    # the halves added in float32, into a tensor of their own
    sums = op.token_sums(out)
    assert sums.dtype == torch.float32 and sums.shape == (k, 16)
    assert torch.equal(sums, out[:k] + out[k + n:])
    assert sums.untyped_storage().data_ptr() != out.untyped_storage().data_ptr()
    assert torch.equal(op.token_sums(out.t().contiguous().t()), sums)  # any layout
    torch.testing.assert_close(sums.double(), sum_weights(grids, mode) @ x.double(), rtol=1e-5, atol=1e-5)
    # the first sums read only the top half of the grid's rows, the last ones only the bottom half
    top = (grids[0][0] + 1) // 2 * grids[0][1]
    bottom = x.clone()
    bottom[:top] = 0
    torch.testing.assert_close(out[k + n:], sum_weights(grids, mode).float() @ bottom, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("summed", [1, 2, 3])
def test_arrival_operator_sums_only_the_grids_asked_for(summed):
    """A bank asks only for the sums of the tiers that compare: the same bags as the full operator's,
    so the same resized tokens and the same first sums, bit for bit."""
    from memory_bank.resize import arrival_operator, sum_weights

    grids = ((12, 12), (8, 8), (6, 6))
    x = torch.randn(144, 16)
    full, op = arrival_operator(grids, "area"), arrival_operator(grids, "area", torch.device("cpu"), 1, summed)
    assert (op.sums, op.resized, op.rows) == (summed, 64, 64 + 2 * summed)
    out, full_out = (F.embedding_bag(o.indices, x, o.offsets, mode="sum", per_sample_weights=o.weights)
                     for o in (op, full))
    assert torch.equal(op.resized_tokens(out), full.resized_tokens(full_out))
    assert torch.equal(op.token_sums(out), full.token_sums(full_out)[:summed])
    torch.testing.assert_close(op.token_sums(out).double(), sum_weights(grids[:summed], "area") @ x.double(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("summed", [0, 4])
def test_arrival_operator_refuses_to_sum_no_grid_or_more_than_it_has(summed):
    from memory_bank.resize import arrival_operator

    with pytest.raises(MemoryBankError, match="summed must be between 1 and the 3 grids given, got " + str(summed)):
        arrival_operator(((12, 12), (8, 8), (6, 6)), "area", torch.device("cpu"), 1, summed)


@pytest.mark.parametrize("summed", [2, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_arrival_work_is_split_evenly_between_two_threads(threads, summed):
    """F.embedding_bag's threads take equal runs of bags: with two, each gets half the rows read of a
    12x12 arrival, and reads only its own half of the grid; the results do not depend on the threads."""
    from memory_bank.resize import arrival_operator

    op = arrival_operator(((12, 12), (8, 8), (6, 6)), "area", torch.device("cpu"), 1, summed)
    bags = op.offsets.numel()
    half = op.offsets[bags // 2].item()
    assert bags % 2 == 0 and half * 2 == op.indices.numel()
    assert op.indices[:half].max() < 72 <= op.indices[half:].min()
    x = torch.randn(144, 64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = F.embedding_bag(op.indices, x, op.offsets, mode="sum", per_sample_weights=op.weights)
    finally:
        torch.set_num_threads(before)
    torch.set_num_threads(3 - threads)
    try:
        again = F.embedding_bag(op.indices, x, op.offsets, mode="sum", per_sample_weights=op.weights)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out, again)


@pytest.mark.parametrize("count", [2, 5])
@pytest.mark.parametrize("grids", [((12, 12), (8, 8), (6, 6)), ((9, 16), (6, 10), (4, 9)), ((4, 4), (4, 4)), ((5, 5),)])
def test_arrival_operator_of_a_batch_gives_each_frame_its_own_rows(grids, count):
    from memory_bank.resize import arrival_operator

    x = torch.randn(count, grids[0][0] * grids[0][1], 16)
    one = arrival_operator(grids, "area")
    batch = arrival_operator(grids, "area", torch.device("cpu"), count)
    assert (batch.resized, batch.sums, batch.rows) == (one.resized, one.sums, one.rows)
    out = F.embedding_bag(batch.indices, x.flatten(0, 1), batch.offsets, mode="sum", per_sample_weights=batch.weights)
    each = [F.embedding_bag(one.indices, frame, one.offsets, mode="sum", per_sample_weights=one.weights) for frame in x]
    assert torch.equal(out, torch.cat(each))
    assert torch.equal(batch.token_sums(out.view(count, batch.rows, 16)), torch.stack([one.token_sums(e) for e in each]))


@pytest.mark.parametrize("chunk", [None, 3, 1])
@pytest.mark.parametrize("shape, dtype", [((12, 12, 32), torch.float32), ((9, 16, 32), torch.bfloat16),
                                          ((16, 16, 32), torch.float32)])
def test_add_frames_equals_adding_in_turn(shape, dtype, chunk, monkeypatch):
    """One batch tensor per call (a 16x16 grid, over the first tier's budget, is added frame by frame),
    its arrival work done for the whole batch at once, or on the CPU in chunks of ``chunk`` frames
    (``ARRIVAL_CHUNK_BYTES``): the same entries, tokens, descriptors and counters as add() in turn, and no
    entry keeps a batch's buffers alive (at most its own rows and the 6 rows of partial descriptor sums
    computed beside them)."""
    frame_bytes = 144 * 32 * torch.empty(0, dtype=dtype).element_size()
    if chunk is not None:  # frames of a chunk: floor(budget / frame_bytes); 3.5 frames' bytes still make 3
        monkeypatch.setattr(hierarchical, "ARRIVAL_CHUNK_BYTES", int((chunk + 0.5) * frame_bytes))
    counts = []
    chains = HierarchicalMemoryBank._descriptor_chains
    monkeypatch.setattr(HierarchicalMemoryBank, "_descriptor_chains",
                        lambda self, batch, grid, count: counts.append(count) or chains(self, batch, grid, count))
    g = torch.Generator().manual_seed(11)
    frames = (torch.randn(30, *shape, generator=g).cumsum(0) * 0.3).to(dtype)
    one, batched = HierarchicalMemoryBank(mm_hidden_size=32), HierarchicalMemoryBank(mm_hidden_size=32)
    for i, x in enumerate(frames):
        one.add(x, i, 0.5 * i)
    for first in range(0, 30, 8):
        batch = frames[first: first + 8]
        indices = range(first, first + len(batch))
        assert batched.add_frames(batch, indices, [0.5 * i for i in indices]) == [True] * len(batch)
    expected = {None: [8, 8, 8, 6], 3: [3, 3, 2] * 3 + [3, 3], 1: []}[chunk]
    assert counts == ([] if shape[0] * shape[1] > 144 else expected)
    assert same(snapshot(one), snapshot(batched)) and one.stats() == batched.stats()
    for a, b in zip(one.readout(), batched.readout()):
        assert a.metadata() == b.metadata() and a.tokens.dtype == dtype and torch.equal(a.tokens, b.tokens)
        assert b.tokens.untyped_storage().nbytes() <= (b.num_tokens + 6) * 32 * b.tokens.element_size()
    query = frames[3].flatten(0, 1).float()
    assert [(e.frame_index, s) for e, s in one.retrieve(query, threshold=-1)] == \
        [(e.frame_index, s) for e, s in batched.retrieve(query, threshold=-1)]


class MergeOutOfPlace(HierarchicalMemoryBank):
    """Every merge into a new tensor, as before merges were written in place."""

    def _merge_pair(self, tier, pos):
        self._private = None
        super()._merge_pair(tier, pos)


def _last_kept(bank):
    return bank._tiers[-1].entries[0].tokens


def test_the_last_merge_is_written_in_place_with_the_same_values():
    """From its second merge on, the long tier (capacity 1) merges into the tokens of the last merge,
    which no one else holds: the same tensor after every add, bit for bit the memory of merges into new
    tensors."""
    g = torch.Generator().manual_seed(12)
    frames = torch.randn(60, 144, 16, generator=g).cumsum(0) * 0.3
    bank, fresh = HierarchicalMemoryBank(mm_hidden_size=16), MergeOutOfPlace(mm_hidden_size=16)
    kept = []
    for i, x in enumerate(frames):
        bank.add(x, i, 0.5 * i)
        fresh.add(x, i, 0.5 * i)
        assert same(snapshot(bank), snapshot(fresh))
        if bank.stats()["tiers"]["long"]["merges"]:
            kept.append(_last_kept(bank))
    assert bank.stats()["tiers"]["long"]["merges"] == 60 - 13  # from the 14th frame on (8 + 4 + 1 held)
    assert all(t is kept[0] for t in kept) and _last_kept(fresh) is not kept[0]  # made by the first merge


@pytest.mark.parametrize("way_out", ["readout", "state_dict", "readout of an unshrunk last tier", "bfloat16",
                                     "inference mode"])
def test_tokens_handed_out_are_never_merged_into(way_out):
    """What a readout or state_dict returned stays as it was while the stream goes on: state_dict ends
    merging in place into the tokens it returned (the next merge makes new ones, merged into in place
    again), so do tokens made under inference mode when the stream goes on outside it, and a last tier
    shown on its own grid or bfloat16 tokens are always merged into new tensors. The memory equals
    merges into new tensors throughout."""
    g = torch.Generator().manual_seed(13)
    sizes = (144, 64, 64) if way_out == "readout of an unshrunk last tier" else (144, 64, 36)
    dtype = torch.bfloat16 if way_out == "bfloat16" else torch.float32
    frames = (torch.randn(50, 144, 16, generator=g).cumsum(0) * 0.3).to(dtype)
    bank = HierarchicalMemoryBank(mm_hidden_size=16, memory_reduced_sizes=sizes)
    fresh = MergeOutOfPlace(mm_hidden_size=16, memory_reduced_sizes=sizes)
    with torch.inference_mode(way_out == "inference mode"):
        for i, x in enumerate(frames[:30]):
            bank.add(x, i, float(i))
            fresh.add(x, i, float(i))
    if way_out == "state_dict":
        held = [item["tokens"] for item in bank.state_dict()["entries"]]
    else:
        held = [e.tokens for e in bank.readout()]
    before = [t.clone() for t in held]
    last = _last_kept(bank)
    for i, x in enumerate(frames[30:], start=30):
        bank.add(x, i, float(i))
        fresh.add(x, i, float(i))
    assert all(torch.equal(t, b) for t, b in zip(held, before))
    assert same(snapshot(bank), snapshot(fresh))
    assert (_last_kept(bank) is last) == (way_out == "readout")  # a readout hands out a shrunk copy
    last = _last_kept(bank)
    bank.add(frames[0], 50, 50.0)
    assert (_last_kept(bank) is last) == (way_out in ("readout", "state_dict", "inference mode"))


def test_a_frame_moves_down_with_the_tokens_resized_when_it_arrived():
    """The first tier's entries carry their next-tier tokens (made at arrival, with the descriptors):
    what reaches the second tier is exactly the resize of the frame's tokens."""
    g = torch.Generator().manual_seed(5)
    frames = [torch.randn(144, 32, generator=g) for _ in range(12)]
    bank = HierarchicalMemoryBank(mm_hidden_size=32)
    for i, x in enumerate(frames):
        bank.add(x, i, float(i))
    mid = bank.tiers()["mid"]
    assert mid and all(e.grid == (8, 8) for e in mid)
    for e in mid:
        assert torch.equal(e.tokens, resize_token_grid(frames[e.frame_index], (12, 12), (8, 8)))


@pytest.mark.parametrize("shape", [(12, 12, 32), (9, 16, 32)])
def test_descriptors_kept_for_every_entry_are_its_pooled_tokens(shape):
    """Descriptors are computed when a frame arrives (and merged linearly); after a long stream with
    cascades and merges, each entry's is still the unit mean of the tokens it holds."""
    from memory_bank import pooled_descriptor

    g = torch.Generator().manual_seed(3)
    bank = HierarchicalMemoryBank(mm_hidden_size=32)
    for i in range(300):
        bank.add(torch.randn(*shape, generator=g) + (i // 20), i, float(i))
    entries, descriptors = bank._retrieval_index()
    assert any(e.is_merged for e in entries) and {e.tier for e in entries} == {0, 1, 2}
    for entry, unit in zip(entries, descriptors):
        torch.testing.assert_close(unit, pooled_descriptor(entry.tokens), rtol=0, atol=1e-5)


def test_resize_keeps_dtype():
    x = torch.randn(144, 8, dtype=torch.bfloat16)
    assert resize_token_grid(x, (12, 12), (8, 8)).dtype == torch.bfloat16


# ----------------------------------------------------------------- merge
def test_last_tier_merge_is_weighted_by_frames_summarised():
    """Capacities (1, 1): every frame ends in one long entry; the mean is weighted, not pairwise."""
    bank = HierarchicalMemoryBank(memory_capacities=(1, 1), memory_reduced_sizes=(1, 1),
                                  mm_hidden_size=2, memory_tier_names=("short", "long"))
    values = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 4.0]]), torch.tensor([[3.0, 3.0]]),
              torch.tensor([[9.0, 1.0]])]
    for i, v in enumerate(values):
        bank.add(v, i, float(i))
    (long,) = bank.tiers()["long"]
    # long holds frames 0..2 (frame 3 is in short): (a + b + c) / 3, not ((a + b) / 2 + c) / 2.
    assert long.num_frames == 3 and (long.frame_index, long.last_frame_index) == (0, 2)
    assert (long.timestamp, long.end_timestamp) == (0.0, 2.0)
    assert torch.allclose(long.tokens, (values[0] + values[1] + values[2]) / 3)
    assert bank.stats()["tiers"]["long"]["merges"] == 2


# ------------------------------------------------------------- retrieval
def test_retrieve_orders_by_similarity_and_applies_threshold_and_k():
    bank = HierarchicalMemoryBank(memory_capacities=(8,), memory_reduced_sizes=(4,), mm_hidden_size=4,
                                  memory_tier_names=("short",))
    angles = [0, 50, 10, 80, 25]
    for i, deg in enumerate(angles):
        bank.add(constant_grid(plane_vector(deg), 4), i, float(i))
    hits = bank.retrieve(plane_vector(20), threshold=0.8)
    # cos(20-deg) >= 0.8 keeps |20 - deg| <= 36.87 degrees: 25, 10, 0, 50 in that order.
    assert frame_ids(e for e, _ in hits) == [4, 2, 0, 1]
    assert [round(s, 5) for _, s in hits] == [round(math.cos(math.radians(d)), 5) for d in (5, 10, 20, 30)]
    assert frame_ids(e for e, _ in bank.retrieve(plane_vector(20), k=2, threshold=0.8)) == [4, 2]
    assert frame_ids(e for e, _ in bank.retrieve(plane_vector(20))) == [4, 2, 0, 1]  # config default 0.8
    assert bank.retrieve(plane_vector(20), threshold=0.999) == []
    tokens_query = constant_grid(plane_vector(80), 3)
    assert frame_ids(e for e, _ in bank.retrieve(tokens_query, k=1)) == [3]


@pytest.mark.parametrize("capacities", [(8, 4, 1), (3, 2, 2)])
def test_every_tier_retrieves_by_the_unit_mean_of_the_tokens_it_shows(capacities):
    """A tier of capacity 1 never compares its entries, so they keep no descriptor (the default long tier):
    retrieval reads theirs off their tokens. A tier that compares keeps one from the arrival sums (merged
    by the merges). Either way it is the direction of the mean token a readout shows."""
    g = torch.Generator().manual_seed(5)
    bank = HierarchicalMemoryBank(memory_capacities=capacities, mm_hidden_size=16)
    for i in range(40):
        bank.add(torch.randn(144, 16, generator=g) + torch.randn(16, generator=g), i, float(i))
    entries = bank.readout()
    assert entries[0].tier == 2 and entries[0].num_frames > 1
    for entry in entries:
        (best, sim), *_ = bank.retrieve(entry.tokens.mean(0), threshold=-1.0)
        assert best.frame_index == entry.frame_index and sim == pytest.approx(1.0, abs=1e-6)


def test_retrieve_rejects_bad_queries():
    bank = HierarchicalMemoryBank(**SMALL)
    with pytest.raises(MemoryBankError, match="query"):
        bank.retrieve(torch.zeros(5))
    with pytest.raises(MemoryBankError, match="k must"):
        bank.retrieve(torch.zeros(4), k=0)
    assert bank.retrieve(torch.ones(4)) == []


# ----------------------------------------------------------------- state
def _filled_bank(n=23, seed=0):
    bank = HierarchicalMemoryBank(mm_hidden_size=8)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        bank.add(torch.randn(144, 8, generator=g), i, i * 0.25)
    return bank


def test_state_dict_round_trip_is_exact_and_continues_identically(tmp_path):
    bank = _filled_bank()
    copy = HierarchicalMemoryBank(mm_hidden_size=8)
    copy.load_state_dict(bank.state_dict())
    assert same(snapshot(copy), snapshot(bank))
    path = tmp_path / "bank.safetensors"
    bank.save(path)
    loaded = HierarchicalMemoryBank.load(path)
    assert loaded.config == bank.config
    assert same(snapshot(loaded), snapshot(bank))
    g = torch.Generator().manual_seed(1)
    for i in range(23, 40):
        x = torch.randn(144, 8, generator=g)
        for b in (bank, copy, loaded):
            b.add(x, i, i * 0.25)
    assert same(snapshot(copy), snapshot(bank)) and same(snapshot(loaded), snapshot(bank))
    with pytest.raises(MemoryBankError, match="already added"):
        loaded.add(torch.randn(144, 8), 3, 100.0)


def test_load_state_dict_rejects_another_config():
    with pytest.raises(MemoryConfigError, match="saved with config"):
        HierarchicalMemoryBank(**SMALL).load_state_dict(_filled_bank().state_dict())


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        HierarchicalMemoryBank.load(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(MemoryBankError, match="not a saved"):
        HierarchicalMemoryBank.load(tmp_path / "other.safetensors")


def test_save_where_no_file_can_be_written_is_a_memory_bank_error(tmp_path):
    bank = _filled_bank()
    before = snapshot(bank)
    for path, reason in [(tmp_path, "Is a directory"), (tmp_path / "none" / "bank.safetensors", "No such file")]:
        with pytest.raises(MemoryBankError, match=f"cannot write the memory bank to {path} .*{reason}"):
            bank.save(path)
    assert same(snapshot(bank), before) and list(tmp_path.iterdir()) == []
    bank.save(tmp_path / "bank.safetensors")  # and where it can, it does
    assert same(snapshot(HierarchicalMemoryBank.load(tmp_path / "bank.safetensors")), before)


def test_clear_empties_the_bank_and_allows_a_new_stream():
    bank = _filled_bank()
    bank.clear()
    assert len(bank) == 0 and bank.readout() == [] and bank.num_tokens == 0
    assert bank.stats()["frames_added"] == 0
    assert all(t["evictions"] == 0 for t in bank.stats()["tiers"].values())
    bank.add(torch.randn(144, 8), 0, 0.0)  # time order restarts
    assert frame_ids(bank.readout()) == [0]


def test_stats_reports_bytes_per_tier():
    bank = _filled_bank()
    tiers = bank.stats()["tiers"]
    assert tiers["short"]["bytes"] == 8 * 144 * 8 * 4
    assert tiers["mid"]["bytes"] == 4 * 64 * 8 * 4
    assert tiers["long"]["bytes"] == 36 * 8 * 4
    assert bank.stats()["tokens"] == 1444


def test_views_into_larger_buffers_are_copied():
    batch = torch.randn(4, 144, 8)
    bank = HierarchicalMemoryBank(mm_hidden_size=8)
    bank.add(batch[1], 0, 0.0)
    stored = bank.readout()[0].tokens
    assert torch.equal(stored, batch[1])
    assert stored.untyped_storage().nbytes() == 144 * 8 * 4


# ------------------------------------------------------------- bad input
BAD = [
    (lambda: torch.randn(0, 12, 8), 5, 9.0, "empty 0x12 grid"),
    (lambda: torch.randn(1, 2, 144, 8), 5, 9.0, "rank 4"),
    (lambda: torch.randn(1152), 5, 9.0, "rank 1"),
    (lambda: torch.randn(143, 8), 5, 9.0, "not a square grid; pass a non-square grid as"),
    (lambda: torch.randn(144, 7), 5, 9.0, "mm_hidden_size=8"),
    (lambda: torch.randn(12, 0, 8), 5, 9.0, "empty 12x0 grid"),
    (lambda: torch.randn(12, 12, 8).index_put_((torch.tensor(3),), torch.tensor(float("nan"))), 5, 9.0, "NaN"),
    (lambda: torch.full((144, 8), float("inf")), 5, 9.0, "NaN or Inf"),
    (lambda: torch.randn(144, 8), 5, 1.0, "earlier than the last"),
    (lambda: torch.randn(144, 8), 4, 9.0, "already added"),
    (lambda: torch.randn(144, 8), 2, 9.0, "already added"),
    (lambda: torch.randint(0, 9, (144, 8)), 5, 9.0, "floating-point"),
    (lambda: [[0.0] * 8] * 144, 5, 9.0, "torch.Tensor"),
    (lambda: torch.randn(144, 8), "x", 9.0, "frame_index"),
    (lambda: torch.randn(144, 8), 5, float("nan"), "finite"),
    (lambda: torch.randn(144, 8), 5, "later", "seconds"),
]


@pytest.mark.parametrize("make, frame_index, timestamp, message", BAD)
def test_bad_input_raises_and_leaves_the_bank_unchanged(make, frame_index, timestamp, message):
    bank = HierarchicalMemoryBank(mm_hidden_size=8)
    for i in range(5):
        bank.add(torch.randn(144, 8), i, 2.0 * i)  # last: frame 4 at 8.0 s
    before = snapshot(bank)
    with pytest.raises(MemoryBankError, match=message):
        bank.add(make(), frame_index, timestamp)
    assert same(snapshot(bank), before)
    bank.add(torch.randn(12, 12, 8), 5, 8.0)  # (h, w, C) input and an equal timestamp are fine
    assert frame_ids(bank.readout())[-1] == 5


def test_errors_are_value_errors():
    assert issubclass(MemoryBankError, ValueError) and issubclass(MemoryConfigError, ValueError)


# ------------------------------------------------------- non-square grids
@pytest.mark.parametrize("grid, budget, expected", [
    ((12, 12), 144, (12, 12)), ((12, 12), 64, (8, 8)), ((12, 12), 36, (6, 6)), ((9, 16), 64, (6, 10)),
    ((16, 9), 64, (10, 6)), ((9, 16), 36, (4, 9)), ((10, 13), 64, (7, 9)), ((7, 18), 36, (4, 9)),
    ((5, 6), 64, (5, 6)), ((1, 200), 36, (1, 36)), ((100, 1), 4, (4, 1)), ((12, 16), 48, (6, 8)),
])
def test_fit_grid_examples(grid, budget, expected):
    assert fit_grid(grid, budget) == expected


def test_fit_grid_invariants():
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        h, w, budget = (int(x) for x in torch.randint(1, 60, (3,), generator=g))
        fh, fw = fit_grid((h, w), budget)
        assert 1 <= fh <= h and 1 <= fw <= w and fh * fw <= max(budget, 1)
        assert fit_grid((fh, fw), budget) == (fh, fw)  # a fitted grid stays
        if h * w <= budget:
            assert (fh, fw) == (h, w)
        else:  # the budget is used: no side could grow by one within it (for fits of the same aspect)
            assert fh * fw > budget // 2


def test_area_shrink_equals_average_pooling_where_the_factor_is_whole():
    x = torch.randn(12, 16, 5)
    out = resize_token_grid(x.reshape(-1, 5), (12, 16), fit_grid((12, 16), 48))
    pooled = torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0).reshape(-1, 5)
    torch.testing.assert_close(out, pooled)


def test_cascade_on_a_16_9_stream_keeps_bounds_order_and_aspect():
    cfg = MemoryBankConfig(mm_hidden_size=4)
    bank = HierarchicalMemoryBank(cfg)
    g = torch.Generator().manual_seed(0)
    constant = torch.ones(9, 16, 4) * 3.0
    for i in range(60):
        tokens = constant if i % 7 == 0 else torch.randn(9, 16, 4, generator=g)
        bank.add(tokens, i, float(i))
        entries = bank.readout()
        keys = [(e.timestamp, e.frame_index) for e in entries]
        assert keys == sorted(keys)
        assert sum(e.num_tokens for e in entries) <= cfg.max_tokens
    tiers = bank.tiers()
    assert {e.grid for e in tiers["short"]} == {(9, 16)} and {e.grid for e in tiers["mid"]} == {(6, 10)}
    assert {e.grid for e in tiers["long"]} == {(5, 7)}
    assert bank.num_tokens == 8 * 144 + 4 * 60 + 35
    # a constant grid stays constant through every shrink (area averaging)
    for e in bank.readout():
        if e.frame_index % 7 == 0 and not e.is_merged:
            assert torch.allclose(e.tokens, torch.full_like(e.tokens, 3.0))


def test_a_frame_larger_than_the_first_budget_is_shrunk_on_the_way_in():
    bank = HierarchicalMemoryBank(mm_hidden_size=4)
    bank.add(torch.ones(12, 16, 4), 0, 0.0)  # 192 tokens > 144
    (entry,) = bank.readout()
    assert entry.grid == fit_grid((12, 16), 144) == (10, 14) and torch.allclose(entry.tokens, torch.ones(140, 4))


@pytest.mark.parametrize("batch", [1, 8, 13])
@pytest.mark.parametrize("case", ["square", "wide"])
def test_readout_after_1000_frames_equals_the_pinned_implementation(case, batch):
    """data/readout_1000.safetensors was written by the implementation before the faster add
    (make_readout_fixture.py): the faster one must give the same memory to 1e-6, frames added one at
    a time or in batches (``add_frames``)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    from .make_readout_fixture import readout

    with safe_open(str(Path(__file__).parent / "data" / "readout_1000.safetensors"), "pt") as f:
        expected_meta = json.loads(f.metadata()["entries"])[case]
        expected = [f.get_tensor(f"{case}.{k}") for k in range(len(expected_meta))]
    entries = readout(case, batch)
    assert [e.metadata() for e in entries] == expected_meta
    for e, tokens in zip(entries, expected):
        torch.testing.assert_close(e.tokens, tokens, rtol=0, atol=1e-6)


class ShrinkOnArrival(HierarchicalMemoryBank):
    """The behaviour before the last tier kept entries on a larger grid: after every cascade, each
    kept entry is replaced by its shrunk form, so every merge there happens on the tier's own grid."""

    def _cascade(self):
        super()._cascade()
        last = self._tiers[-1]
        last.entries = last.shown_entries()
        last._shown.clear()


@pytest.mark.parametrize("shape, capacities", [((12, 12, 16), (8, 4, 1)), ((9, 16, 16), (3, 2, 3))])
def test_the_last_tier_shrinks_when_read_as_if_on_arrival(shape, capacities):
    """The last tier keeps an entry on the grid it arrives with and merges there (merges are linear),
    shrinking when read: after every frame it shows the memory of a bank that shrinks on arrival (to
    float32 rounding), with the same descriptors and counters; a readout is cached until the entry
    changes; a restored bank goes on exactly like the original."""
    g = torch.Generator().manual_seed(5)
    frames = torch.randn(120, *shape, generator=g).cumsum(0) * 0.2
    lazy = HierarchicalMemoryBank(mm_hidden_size=16, memory_capacities=capacities)
    eager = ShrinkOnArrival(mm_hidden_size=16, memory_capacities=capacities)
    for i, x in enumerate(frames[:100]):
        lazy.add(x, i, 0.5 * i)
        eager.add(x, i, 0.5 * i)
        shown, want = lazy.readout(), eager.readout()
        assert [e.metadata() for e in shown] == [e.metadata() for e in want]
        for e, w in zip(shown, want):
            torch.testing.assert_close(e.tokens, w.tokens, rtol=0, atol=1e-6)
        assert lazy.stats() == eager.stats() and lazy.num_tokens == eager.num_tokens
        assert all(a is b for a, b in zip(lazy.readout(), shown))  # cached: nothing resized again
    last = lazy.memory_tier_names[-1]
    assert any(kept.grid != e.grid for kept, e in zip(lazy._tiers[-1].entries, lazy.tiers()[last]))
    query = frames[99].flatten(0, 1)
    assert [(e.frame_index, round(s, 5)) for e, s in lazy.retrieve(query, threshold=-1)] == \
        [(e.frame_index, round(s, 5)) for e, s in eager.retrieve(query, threshold=-1)]
    # the state holds the kept grids: a restored bank reads and goes on bit for bit like the original
    restored = HierarchicalMemoryBank(mm_hidden_size=16, memory_capacities=capacities)
    restored.load_state_dict(lazy.state_dict())
    for i, x in enumerate(frames[100:], start=100):
        lazy.add(x, i, 0.5 * i)
        restored.add(x, i, 0.5 * i)
    assert all(a.metadata() == b.metadata() and torch.equal(a.tokens, b.tokens)
               for a, b in zip(lazy.readout(), restored.readout()))


def test_a_state_of_format_1_still_loads():
    """States saved before the last tier kept larger grids (every entry on its own grid) load as they are."""
    bank = HierarchicalMemoryBank(mm_hidden_size=8)
    for i in range(30):
        bank.add(torch.randn(144, 8), i, float(i))
    state = bank.state_dict()
    state["format"] = "memory_bank.hierarchical/1"
    shown = bank.tiers()
    state["entries"] = [{"tokens": e.tokens, **e.metadata()} for entries in shown.values() for e in entries]
    old = HierarchicalMemoryBank(mm_hidden_size=8)
    old.load_state_dict(state)
    assert all(a.metadata() == b.metadata() and torch.equal(a.tokens, b.tokens)
               for a, b in zip(old.readout(), bank.readout()))
    with pytest.raises(MemoryBankError, match="hierarchical/2"):
        old.load_state_dict({**state, "format": "memory_bank.hierarchical/9"})


@pytest.mark.parametrize("mode", ["area", "bilinear"])
@pytest.mark.parametrize("grid, size", [((12, 12), (8, 8)), ((9, 16), (6, 10)), ((1, 40), (1, 7)), ((40, 1), (13, 1)),
                                        ((2, 9), (1, 4)), ((23, 17), (23, 17)), ((64, 64), (12, 12))])
def test_separable_resize_matrix_equals_the_identity_one(mode, grid, size):
    """Large grids get their resize as the Kronecker product of the two axes' (the identity of a 300x300 grid
    would take 65 GB); it is the 2-D identity's matrix to float64 rounding, 1-wide grids included."""
    from memory_bank.resize import resize_matrix, separable_resize_matrix

    torch.testing.assert_close(separable_resize_matrix(grid, size, mode), resize_matrix(grid, size, mode),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["area", "bilinear"])
def test_a_frame_of_90000_tokens_is_shrunk_on_the_way_in(mode):
    """A 300x300 grid is resized with the torch function's values, without the 2-D identity's 65 GB."""
    x = torch.randn(300, 300, 4, generator=torch.Generator().manual_seed(3))
    bank = HierarchicalMemoryBank(mm_hidden_size=4, memory_resize_mode=mode)
    bank.add(x, 0, 0.0)
    (entry,) = bank.readout()
    grid = x.permute(2, 0, 1)[None]
    want = F.adaptive_avg_pool2d(grid, entry.grid) if mode == "area" else \
        F.interpolate(grid, size=entry.grid, mode="bilinear", align_corners=False, antialias=True)
    assert entry.grid == (12, 12)
    torch.testing.assert_close(entry.tokens, want[0].permute(1, 2, 0).reshape(144, 4), rtol=0, atol=1e-5)


def test_a_first_tier_of_image_sized_frames_needs_no_identity_of_its_grid():
    """A 128x128 first-tier grid (VideoLLaMA3's image budget is 16384 tokens): the descriptor weights of its
    later tiers come from the resize matrices alone (the identity would be 2 GB); the cascade still holds
    the exact pooled tokens of each entry."""
    g = torch.Generator().manual_seed(4)
    bank = HierarchicalMemoryBank(mm_hidden_size=4, memory_capacities=(2, 1), memory_reduced_sizes=(16384, 36),
                                  memory_tier_names=("short", "mid"))
    frames = [torch.randn(128, 128, 4, generator=g) for _ in range(3)]
    for i, x in enumerate(frames):
        bank.add(x, i, float(i))
    tiers = bank.tiers()
    assert [e.grid for e in tiers["short"]] == [(128, 128)] * 2 and tiers["mid"][0].grid == (6, 6)
    want = F.adaptive_avg_pool2d(frames[tiers["mid"][0].frame_index].permute(2, 0, 1)[None], (6, 6))
    torch.testing.assert_close(tiers["mid"][0].tokens, want[0].permute(1, 2, 0).reshape(36, 4), rtol=0, atol=1e-5)
