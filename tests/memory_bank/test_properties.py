"""Property-based tests (Hypothesis) of every backend: random sequences of valid and invalid calls.

Invariants after every step: readout in time order and bounded; a rejected call (bad frame, bad
state) changes nothing; a state round trip is exact; a retrieval finds every entry by the mean of
the tokens a readout shows (whatever tier, grid or precision holds it). CI settings: the ``ci``
profile of tests/conftest.py (derandomized, no deadline), plus two explicit sequences that fill
every tier and merge in the last (4x4 frames; frames of the three grids in turn).
"""

import copy
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from memory_bank import MemoryBankError, build_memory

from .test_conformance import BACKENDS, C, assert_same_state, assert_time_ordered

GRIDS = [(4, 4), (3, 5), (2, 2)]
OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.floats(0, 3, allow_nan=False), st.integers(0, 10**6)),
    st.tuples(st.just("adds"), st.integers(2, 12), st.integers(0, 10**6)),  # a burst: deeper tiers, merges
    st.tuples(st.just("bad_add"), st.sampled_from(["nan", "earlier", "repeat", "width", "rank", "text_time"])),
    st.tuples(st.just("readout")), st.tuples(st.just("question")), st.tuples(st.just("round_trip")),
    st.tuples(st.just("retrieve")),
    st.tuples(st.just("bad_state"), st.sampled_from(["none", "missing", "nan_tokens", "nan_time", "behind",
                                                     "other_backend", "wrong_type"])),
), min_size=1, max_size=40)


def bad_state(memory, kind):
    state = copy.deepcopy(memory.state_dict())
    if kind == "none":
        return None
    if kind == "missing":
        state.pop("last_timestamp")
    elif kind == "wrong_type":
        state["frames_added"] = "many"
    elif kind == "other_backend":
        state["format"] = "memory_bank.someone_else/1"
    elif kind == "behind" and state["entries"]:
        state["last_frame_index"] = -1 if state["last_frame_index"] is None else 0
        state["last_timestamp"] = 0.0
        state["entries"][-1]["timestamp"] = state["entries"][-1]["end_timestamp"] = 1e9
    elif kind == "nan_tokens" and state["entries"] and state["entries"][0]["tokens"].is_floating_point():
        state["entries"][0]["tokens"] = state["entries"][0]["tokens"].clone().fill_(math.nan)
    elif kind == "nan_time" and state["entries"]:
        state["entries"][0]["timestamp"] = math.nan
    else:
        return None  # nothing to damage in an empty memory: None is damaged enough
    return state


SEQUENCE_BACKENDS = {key: (name, {k: v for k, v in options.items() if k != "memory_reduced_sizes"}, max_entries)
                     for key, (name, options, max_entries, _) in BACKENDS.items()}
# 16 / 9 / 4 tokens a frame: grids shrink down the tiers (4x4 -> 3x3 -> 2x2; 3x5 -> 2x4 -> 1x4), the long
# tier keeps its entries on the mid tier's grid, and frames of different grids merge there
SEQUENCE_BACKENDS["hierarchical_shrinking"] = BACKENDS["hierarchical"][:3]


@pytest.mark.parametrize("key", list(SEQUENCE_BACKENDS))
@given(ops=OPS)
@example(ops=[*(("add", 0, 0.5, seed) for seed in range(9)), ("retrieve",), ("round_trip",), ("retrieve",)])
@example(ops=[("adds", 12, 0), ("retrieve",), ("question",), ("round_trip",), ("retrieve",)])  # grids mixed
def test_random_call_sequences_keep_the_invariants(key, ops):
    name, options, max_entries = SEQUENCE_BACKENDS[key]
    memory = build_memory(name, mm_hidden_size=C, **options)
    g = torch.Generator().manual_seed(0)
    index, t = -1, 0.0
    for op in ops:
        before = copy.deepcopy(memory.state_dict())
        if op[0] in ("add", "adds"):  # one frame, or a burst of frames of mixed grids 0.5 s apart
            frames = [op[1:]] if op[0] == "add" else [((op[2] + k) % 3, 0.5, op[2] + k) for k in range(op[1])]
            for grid, dt, seed in frames:
                h, w = GRIDS[grid]
                tokens = torch.randn(h, w, C, generator=g.manual_seed(seed))
                index, t = index + 1, t + dt
                assert memory.add(tokens, index, t, frame=torch.zeros(8, 8, 3, dtype=torch.uint8)) in (True, False)
        elif op[0] == "bad_add":
            tokens = torch.randn(2, 2, C)
            args = {"nan": (tokens.clone().fill_(math.nan), index + 1, t), "earlier": (tokens, index + 1, t - 1),
                    "repeat": (tokens, max(index, 0), t), "width": (torch.randn(2, 2, C + 1), index + 1, t),
                    "rank": (torch.randn(C), index + 1, t), "text_time": (tokens, index + 1, "later")}[op[1]]
            if op[1] == "repeat" and index < 0 or op[1] == "earlier" and index < 0 and t < 1:
                continue  # not invalid on an empty stream
            with pytest.raises(MemoryBankError):
                memory.add(*args, frame=torch.zeros(8, 8, 3, dtype=torch.uint8))
            assert_same_state(before, memory.state_dict())
        elif op[0] == "readout":
            memory.readout()
        elif op[0] == "question" and index >= 0:
            memory.readout()
            memory.on_question(index)
        elif op[0] == "retrieve":  # each entry is found by the mean of the tokens it shows, at similarity ~1
            # (lru_quantized ranks by the tokens as added and shows them dequantised: 8 bits are 0.2 % off)
            tolerance = 1e-3 if name == "lru_quantized" else 1e-5
            for entry in memory.readout():
                hits = memory.retrieve(entry.tokens.float().mean(0), threshold=-1.0)
                scores = [score for _, score in hits]
                assert scores == sorted(scores, reverse=True) and all(-1.001 <= x <= 1.001 for x in scores)
                assert max(score for e, score in hits if e.frame_index == entry.frame_index) > 1 - tolerance
        elif op[0] == "round_trip":
            other = build_memory(name, mm_hidden_size=C, **options)
            other.load_state_dict(copy.deepcopy(memory.state_dict()))
            assert_same_state(memory.state_dict(), other.state_dict())
        elif op[0] == "bad_state":
            with pytest.raises(MemoryBankError):
                memory.load_state_dict(bad_state(memory, op[1]))
            assert_same_state(before, memory.state_dict())
        stats = memory.stats()
        entries = memory.readout() if name != "lru_quantized" else [s.entry for s in memory._slots]
        assert_time_ordered(entries)
        assert stats["entries"] == len(entries) <= max_entries
        assert stats["frames_added"] == index + 1


@pytest.mark.parametrize("key", list(BACKENDS))
@pytest.mark.parametrize("kind", ["none", "missing", "nan_tokens", "nan_time", "behind", "other_backend", "wrong_type"])
def test_a_rejected_state_leaves_the_memory_as_it_was(key, kind):
    from .test_conformance import Stream, feed, make

    memory = make(key)
    feed(memory, Stream(), 0, 20)
    before = copy.deepcopy(memory.state_dict())
    with pytest.raises(MemoryBankError):
        memory.load_state_dict(bad_state(memory, kind))
    assert_same_state(before, memory.state_dict())
