"""One conformance suite, run against every memory backend (docs/design.md section 6)."""

import copy
import math
from dataclasses import dataclass

import pytest
import torch

from memory_bank import (
    MEMORY_BACKENDS,
    MemoryBackend,
    MemoryBankError,
    MemoryConfig,
    MemoryConfigError,
    MemoryEntry,
    build_memory,
    memory_config,
    memory_options,
    option,
    register_memory,
)

C = 8  # channels
SIDE = 4  # 4x4 = 16 tokens per frame


# name, options, bound on entries, bound on tokens, whether add() needs the raw frame
BACKENDS = {
    "hierarchical": ("hierarchical", {"memory_capacities": [3, 2, 1], "memory_reduced_sizes": [16, 9, 4]}, 6, 3 * 16 + 2 * 9 + 4),
    "fifo": ("fifo", {"num_recent": 3, "max_prompted": 2}, 5, 5 * 16),
    "lru_quantized": ("lru_quantized", {"capacity": 4, "grace_frames": 1}, 4, 4 * 16),
    "significance": ("significance", {"buffer_size": 3, "stored_tokens": 4, "threshold": 0.05}, 3, 3 * 4),
    "significance_pixel": ("significance", {"criterion": "pixel", "buffer_size": 3, "stored_tokens": 9,
                                            "adaptive": True, "adaptive_warmup": 4}, 3, 3 * 9),
    "significance_ssim": ("significance", {"criterion": "ssim", "buffer_size": 2, "signature_size": 16}, 2, 2 * 16),
}


def make(key):
    name, options, _, _ = BACKENDS[key]
    return build_memory(name, mm_hidden_size=C, **options)


class Stream:
    """A synthetic video: scenes of 5 frames (a new scene every 5th frame), small noise within a scene.

    Frame ``i`` gives ``(tokens (16, C) float32, i, timestamp 0.5 * i, raw frame (16, 16, 3) uint8)``.
    """

    def __init__(self, seed=0, scenes=23):
        g = torch.Generator().manual_seed(seed)
        self.tokens = torch.randn(scenes, SIDE * SIDE, C, generator=g)
        self.images = torch.randint(0, 256, (scenes, 16, 16, 3), generator=g, dtype=torch.uint8)
        self.noise = torch.randn(31, SIDE * SIDE, C, generator=g) * 0.01
        self.pixel_noise = torch.randint(-2, 3, (31, 16, 16, 3), generator=g)

    def frame(self, i):
        scene = (i // 5) % len(self.tokens)
        tokens = self.tokens[scene] + self.noise[i % 31]
        image = (self.images[scene].int() + self.pixel_noise[i % 31]).clamp(0, 255).to(torch.uint8)
        return tokens, i, 0.5 * i, image


def feed(memory, stream, start, stop, ask_every=7):
    """Add frames ``start..stop-1``; every ``ask_every`` frames ask a question (a readout, then ``on_question``)."""
    for i in range(start, stop):
        tokens, index, t, image = stream.frame(i)
        memory.add(tokens, index, t, frame=image)
        if i % ask_every == ask_every - 1:
            memory.readout()
            memory.on_question(index)


def assert_same_state(a, b, path="state"):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_time_ordered(entries):
    keys = [(e.timestamp, e.frame_index) for e in entries]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(e.end_timestamp >= e.timestamp and e.last_frame_index >= e.frame_index for e in entries)


backends = pytest.mark.parametrize("key", list(BACKENDS))


@backends
def test_implements_the_protocol(key):
    memory = make(key)
    assert isinstance(memory, MemoryBackend)
    assert memory.readout() == [] and memory.stats()["entries"] == 0 and memory.stats()["tokens"] == 0


@backends
def test_readout_is_in_time_order_after_every_add(key):
    memory, stream = make(key), Stream()
    for i in range(80):
        feed(memory, stream, i, i + 1)
        entries = memory.readout()
        assert_time_ordered(entries)
        assert entries and entries[-1].last_frame_index <= i
        assert all(0 <= e.tier < len(memory.memory_tier_names) for e in entries)


@backends
def test_what_a_readout_or_state_handed_out_is_never_changed_by_later_adds(key):
    """Readouts and states taken along the stream (the hierarchical bank merges into tokens of its own in
    place: never into ones it has handed out) hold the same values after 60 more frames and questions."""
    memory, stream = make(key), Stream()
    held = []
    for start in range(0, 60, 6):
        feed(memory, stream, start, start + 6)
        held += [e.tokens for e in memory.readout()] + [item["tokens"] for item in memory.state_dict()["entries"]
                                                          if isinstance(item, dict) and "tokens" in item]
    before = [t.clone() for t in held]
    feed(memory, stream, 60, 120)
    assert len(held) > 20 and all(torch.equal(t, b) for t, b in zip(held, before))


@backends
def test_memory_is_bounded_on_a_10000_frame_stream(key):
    _, _, max_entries, max_tokens = BACKENDS[key]
    memory, stream = make(key), Stream()
    peak_entries = peak_tokens = 0
    for start in range(0, 10_000, 100):
        feed(memory, stream, start, start + 100)
        stats = memory.stats()
        peak_entries, peak_tokens = max(peak_entries, stats["entries"]), max(peak_tokens, stats["tokens"])
        assert stats["tokens"] == sum(e.num_tokens for e in memory.readout())
    assert memory.stats()["frames_added"] == 10_000
    assert 0 < peak_entries <= max_entries and 0 < peak_tokens <= max_tokens
    assert memory.stats()["bytes"] <= max_tokens * C * 4 + 8 * max_entries


@backends
def test_state_round_trip_is_exact(key):
    stream = Stream()
    a = make(key)
    feed(a, stream, 0, 60)
    b = make(key)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert_same_state(a.state_dict(), b.state_dict())
    for x, y in zip(a.readout(), b.readout()):
        assert x.metadata() == y.metadata() and torch.equal(x.tokens, y.tokens)
    # the restored memory goes on exactly like the original
    feed(a, stream, 60, 100)
    feed(b, stream, 60, 100)
    assert_same_state(a.state_dict(), b.state_dict())
    assert a.stats() == b.stats()


@backends
def test_state_of_another_backend_or_config_is_refused(key):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 10)
    before = copy.deepcopy(memory.state_dict())
    other = build_memory("unbounded", mm_hidden_size=C)
    other.add(torch.randn(SIDE * SIDE, C), 0, 0.0)
    with pytest.raises(MemoryBankError):
        memory.load_state_dict(other.state_dict())
    assert_same_state(before, memory.state_dict())


def bad_inputs(last_index, last_t):
    good = torch.randn(SIDE * SIDE, C)
    nan = good.clone()
    nan[3, 2] = float("nan")
    inf = good.clone()
    inf[0, 0] = float("inf")
    image = torch.zeros(16, 16, 3, dtype=torch.uint8)
    return {
        "wrong width": (torch.randn(SIDE * SIDE, C + 1), last_index + 1, last_t + 1, image),
        "nan": (nan, last_index + 1, last_t + 1, image),
        "inf": (inf, last_index + 1, last_t + 1, image),
        "integer tokens": (good.long(), last_index + 1, last_t + 1, image),
        "rank 1": (good.flatten(), last_index + 1, last_t + 1, image),
        "not square": (good[:15], last_index + 1, last_t + 1, image),
        "not a tensor": (good.tolist(), last_index + 1, last_t + 1, image),
        "sparse tokens": (good.to_sparse(), last_index + 1, last_t + 1, image),
        "meta tokens": (torch.empty(SIDE * SIDE, C, device="meta"), last_index + 1, last_t + 1, image),
        "repeated index": (good, last_index, last_t + 1, image),
        "earlier time": (good, last_index + 1, last_t - 0.25, image),
        "negative index": (good, -1, last_t + 1, image),
        "fractional index": (good, last_index + 1.5, last_t + 1, image),
        "boolean index": (good, True, last_t + 1, image),
        "nan time": (good, last_index + 1, float("nan"), image),
        "text time": (good, last_index + 1, "soon", image),
    }


@backends
@pytest.mark.parametrize("case", list(bad_inputs(0, 0.0)))
def test_bad_input_is_rejected_and_changes_nothing(key, case):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 20)
    before = copy.deepcopy(memory.state_dict())
    tokens, index, t, image = bad_inputs(19, 9.5)[case]
    with pytest.raises(MemoryBankError):
        memory.add(tokens, index, t, frame=image)
    assert_same_state(before, memory.state_dict())
    feed(memory, stream, 20, 21)  # and it goes on
    assert memory.stats()["frames_added"] == 21


@pytest.mark.parametrize("key", ["significance_pixel", "significance_ssim"])
@pytest.mark.parametrize("frame", [None, "float", "gray", "empty", "sparse", "meta"])
def test_pixel_criteria_reject_a_missing_or_bad_raw_frame(key, frame):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 5)
    before = copy.deepcopy(memory.state_dict())
    bad = {None: None, "float": torch.zeros(16, 16, 3), "gray": torch.zeros(16, 16, dtype=torch.uint8),
           "empty": torch.zeros(0, 16, 3, dtype=torch.uint8),
           "sparse": torch.zeros(16, 16, 3, dtype=torch.uint8).to_sparse(),
           "meta": torch.empty(16, 16, 3, dtype=torch.uint8, device="meta")}[frame]
    with pytest.raises(MemoryBankError, match="frame"):
        memory.add(torch.randn(SIDE * SIDE, C), 5, 2.5, frame=bad)
    assert_same_state(before, memory.state_dict())


@backends
def test_clear_empties_everything(key):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 40)
    memory.clear()
    stats = memory.stats()
    assert memory.readout() == [] and stats["entries"] == 0 and stats["tokens"] == 0 and stats["bytes"] == 0
    assert stats["frames_added"] == 0
    assert_same_state(memory.state_dict(), make(key).state_dict())
    feed(memory, stream, 0, 3)  # a new stream may start again at frame 0
    assert memory.stats()["frames_added"] == 3


@backends
def test_retrieve_finds_the_entry_a_query_was_taken_from(key):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 30)
    target = memory.readout()[-1]
    hits = memory.retrieve(target.tokens.mean(0), k=2)
    assert 1 <= len(hits) <= 2
    assert hits[0][0].frame_index == target.frame_index and hits[0][1] == pytest.approx(1.0, abs=1e-3)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert memory.retrieve(target.tokens.mean(0), threshold=1.01) == []
    with pytest.raises(MemoryBankError, match="query"):
        memory.retrieve(torch.randn(C + 1))
    with pytest.raises(MemoryBankError, match="k must be"):
        memory.retrieve(torch.randn(C), k=0)


@backends
@pytest.mark.parametrize("case", ["nan", "inf", "no tokens", "sparse", "meta"])
def test_a_query_without_usable_values_is_refused_and_changes_nothing(key, case):
    """NaN scores would rank arbitrarily and an empty query has no direction: both are errors, as are tensors
    without values; a backend that counts retrievals as uses (lru_quantized) counts none."""
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 12)
    before = copy.deepcopy(memory.state_dict())
    nan, inf = torch.randn(C), torch.randn(3, C)
    nan[2], inf[1, 0] = float("nan"), float("inf")
    query = {"nan": nan, "inf": inf, "no tokens": torch.randn(0, C), "sparse": torch.randn(3, C).to_sparse(),
             "meta": torch.empty(C, device="meta")}[case]
    with pytest.raises(MemoryBankError, match="query"):
        memory.retrieve(query, k=2)
    assert_same_state(before, memory.state_dict())


# ------------------------------------------------------------------ registry
def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(MemoryConfigError) as e:
        build_memory("sam2")
    assert str(e.value) == (
        "unknown memory backend 'sam2'; known: hierarchical, fifo, lru_quantized, significance, unbounded"
    )


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(MemoryConfigError, match="unknown option.*num_frames.*accepted: mm_hidden_size, num_recent"):
        build_memory("fifo", num_frames=3)
    with pytest.raises(MemoryConfigError, match="unknown option.*capacity.*accepted: memory_capacities"):
        build_memory("hierarchical", capacity=3)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("fifo", {"num_recent": 0}, "num_recent must be an integer >= 1"),
        ("fifo", {"max_prompted": "8"}, "max_prompted must be an integer >= 0"),
        ("lru_quantized", {"capacity": 2.5}, "capacity"),
        ("lru_quantized", {"half_precision_uses": 4, "full_precision_uses": 2}, "must not exceed"),
        ("lru_quantized", {"use_decay": 0}, "use_decay"),
        ("significance", {"criterion": "optical_flow"}, "criterion must be one of feature, pixel, histogram, ssim"),
        ("significance", {"stored_tokens": 0}, "stored_tokens must be an integer >= 1"),
        ("significance", {"threshold": -0.1}, "threshold"),
        ("hierarchical", {"memory_capacities": [8, 0, 1]}, "positive"),
    ],
)
def test_invalid_option_values_are_named(name, options, message):
    with pytest.raises(MemoryConfigError, match=message):
        build_memory(name, **options)


def test_memory_options_give_the_defaults():
    assert memory_options("fifo") == {"mm_hidden_size": 1152, "num_recent": 6, "max_prompted": 8, "check_finite": True}
    assert memory_options("lru_quantized")["capacity"] == 7
    assert memory_options("hierarchical")["memory_capacities"] == [8, 4, 1]
    assert set(MEMORY_BACKENDS) >= {"hierarchical", "fifo", "lru_quantized", "significance"}


# The example of docs/design.md ("Adding a backend"): a whole backend in one file, bound by one line.
@dataclass
class LastFramesConfig(MemoryConfig):
    mm_hidden_size: int = option(1152, "channel width C of the stored tokens", minimum=1)
    keep: int = option(2, "newest frames kept", minimum=1)


class LastFramesMemory(MemoryBackend):
    config_class, memory_tier_names = LastFramesConfig, ("last",)

    def clear(self):
        self.entries = []
        self._cursor.reset()

    def add(self, tokens, frame_index, timestamp, frame=None):
        flat, grid, i, t, _ = self._cursor.check(tokens, frame_index, timestamp, hidden_size=self.mm_hidden_size)
        self.entries = [*self.entries, MemoryEntry(flat, grid, i, t)][-self.config.keep:]
        self._cursor.advance(i, t, flat.device)
        return True

    def readout(self):
        return list(self.entries)

    def retrieve(self, query, k=None, threshold=None):
        return []

    def stats(self):
        return {"tiers": {}, "entries": len(self.entries), "frames_added": self.frames_added,
                "tokens": sum(e.num_tokens for e in self.entries), "bytes": sum(e.nbytes for e in self.entries)}

    def state_dict(self):
        return {"entries": list(self.entries)}

    def load_state_dict(self, state):
        self.entries = list(state["entries"])


def test_a_new_backend_is_one_class_pair_and_one_register_line():
    register_memory("last_frames", LastFramesConfig, LastFramesMemory)
    try:
        memory = build_memory("last_frames", mm_hidden_size=C, keep=1)
        for i in range(3):
            memory.add(torch.randn(4, C), i, float(i))
        memory.on_question(2)  # the protocol's default: asking changes nothing
        assert [e.frame_index for e in memory.readout()] == [2] and memory.frames_added == 3
        assert memory_options("last_frames") == {"mm_hidden_size": 1152, "keep": 2}
        with pytest.raises(MemoryConfigError, match="keep must be an integer >= 1"):
            build_memory("last_frames", keep=0)
        with pytest.raises(MemoryConfigError, match="already registered"):
            register_memory("last_frames", LastFramesConfig, LastFramesMemory)
    finally:
        del MEMORY_BACKENDS["last_frames"]


def test_register_memory_refuses_classes_that_do_not_fit():
    class Other(LastFramesConfig):
        pass

    with pytest.raises(MemoryConfigError, match="config_class must be Other"):
        register_memory("mismatch", Other, LastFramesMemory)
    with pytest.raises(MemoryConfigError, match="must subclass memory_bank.MemoryBackend"):
        register_memory("plain", LastFramesConfig, object)
    with pytest.raises(MemoryConfigError, match="letters, digits"):
        register_memory("no spaces", LastFramesConfig, LastFramesMemory)
    assert "mismatch" not in MEMORY_BACKENDS and "plain" not in MEMORY_BACKENDS


@pytest.mark.parametrize("name", ["hierarchical", "fifo", "lru_quantized", "significance", "unbounded"])
def test_every_config_round_trips_and_documents_its_options(name):
    spec = MEMORY_BACKENDS[name]
    config = memory_config(name, mm_hidden_size=C)
    assert spec.config_class.from_dict(config.to_dict()) == config
    assert list(spec.config_class.help()) == list(config.to_dict())
    assert all(text for _, text in spec.config_class.help().values())
    assert build_memory(name, **config.to_dict()).config == config


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("hierarchical", {"memory_capacities": 8}, "memory_capacities must be a list of integers"),
        ("hierarchical", {"memory_capacities": [8, "4", 1]}, r"memory_capacities\[1\] must be an integer"),
        ("hierarchical", {"memory_check_finite": "abc"}, "memory_check_finite must be true or false"),
        ("fifo", {"num_recent": True}, "num_recent must be an integer >= 1"),
        ("fifo", {"num_recent": None}, "num_recent must be an integer >= 1"),
        ("lru_quantized", {"use_decay": float("nan")}, "use_decay must be a number in"),
        ("significance", {"adaptive": 1}, "adaptive must be true or false"),
        ("significance", {"criterion": 3}, "criterion must be one of"),
    ],
)
def test_option_types_are_checked_not_coerced(name, options, message):
    with pytest.raises(MemoryConfigError, match=message):
        build_memory(name, **options)


def test_a_backend_takes_its_own_config_only():
    with pytest.raises(MemoryConfigError, match="FIFOMemory takes a FIFOConfig, got UnboundedConfig"):
        MEMORY_BACKENDS["fifo"].backend_class(memory_config("unbounded"))
    fifo = MEMORY_BACKENDS["fifo"].backend_class(memory_config("fifo", num_recent=3), max_prompted=1)
    assert (fifo.config.num_recent, fifo.config.max_prompted) == (3, 1)


def test_stream_fixture_has_scene_cuts_every_5_frames():
    stream = Stream()
    t0, t1, t5 = stream.frame(0)[0], stream.frame(1)[0], stream.frame(5)[0]
    cos = torch.nn.functional.cosine_similarity
    assert cos(t0.flatten(), t1.flatten(), dim=0) > 0.99 > 0.5 > abs(cos(t0.flatten(), t5.flatten(), dim=0))
    assert math.isclose(stream.frame(7)[2], 3.5)


@backends
def test_non_square_grids_stream_and_round_trip(key):
    """16:9 frames as (9, 16, C) grids: every backend stores them, reads them out and restores them exactly."""
    name, options, _, _ = BACKENDS[key]
    options = {k: v for k, v in options.items() if k != "memory_reduced_sizes"}
    memory = build_memory(name, mm_hidden_size=C, **options)
    g = torch.Generator().manual_seed(1)
    for i in range(30):
        memory.add(torch.randn(9, 16, C, generator=g), i, 0.5 * i, frame=torch.zeros(9, 16, 3, dtype=torch.uint8))
        if i % 7 == 6:
            memory.readout()
            memory.on_question(i)
    entries = memory.readout()
    assert entries and all(e.tokens.shape == (e.grid[0] * e.grid[1], C) for e in entries)
    assert all(e.grid[0] <= 9 and e.grid[1] <= 16 for e in entries)
    assert any(e.grid == (9, 16) for e in entries) or name == "significance"
    restored = build_memory(name, mm_hidden_size=C, **options)
    restored.load_state_dict(copy.deepcopy(memory.state_dict()))
    assert_same_state(memory.state_dict(), restored.state_dict())


@pytest.mark.parametrize("name, options", [
    ("fifo", {"num_recent": 10**9}), ("lru_quantized", {"capacity": 10**9}), ("significance", {"buffer_size": 10**9}),
    ("hierarchical", {"memory_capacities": [10**9, 4, 1]}), ("hierarchical", {"memory_capacities": None}),
])
def test_absurd_or_missing_sizes_are_refused(name, options):
    with pytest.raises(MemoryConfigError):
        build_memory(name, **options)


def feed_batches(memory, stream, start, stop, batch, stacked=True):
    """:func:`feed` through ``add_frames``: frames in batches of ``batch`` (one ``(B, 16, C)`` tensor when
    ``stacked``, else a list), a question after the batch holding each 7th frame (as ``feed`` asks)."""
    for first in range(start, stop, batch):
        items = [stream.frame(i) for i in range(first, min(first + batch, stop))]
        tokens = torch.stack([t for t, _, _, _ in items]) if stacked else [t for t, _, _, _ in items]
        stored = memory.add_frames(tokens, [i for _, i, _, _ in items], [t for _, _, t, _ in items],
                                   [image for _, _, _, image in items])
        assert len(stored) == len(items) and all(isinstance(s, bool) for s in stored)
        for _, index, _, _ in items:
            if index % 7 == 6 and index == items[-1][1]:
                memory.readout()
                memory.on_question(index)


@backends
@pytest.mark.parametrize("batch, stacked", [(1, True), (3, True), (7, True), (7, False)])
def test_add_frames_ends_where_adding_in_turn_does(key, batch, stacked):
    """Questions fall after batches of 7 only at batch ends, so both streams see the same questions."""
    a, b, stream = make(key), make(key), Stream()
    feed_batches(a, stream, 0, 140, batch, stacked)
    for first in range(0, 140, batch):
        stop = min(first + batch, 140)
        for i in range(first, stop):
            tokens, index, t, image = stream.frame(i)
            b.add(tokens, index, t, frame=image)
        if (stop - 1) % 7 == 6:
            b.readout()
            b.on_question(stop - 1)
    assert_same_state(a.state_dict(), b.state_dict())
    assert a.stats() == b.stats()


@backends
@pytest.mark.parametrize("case", ["nan", "repeated index", "earlier time", "wrong width"])
def test_add_frames_stops_at_the_first_bad_frame(key, case):
    """The frames before the bad one are added (as by add() in turn), the bad one and those after are not."""
    memory, reference, stream = make(key), make(key), Stream()
    feed(memory, stream, 0, 20)
    feed(reference, stream, 0, 20)
    good = [stream.frame(i) for i in range(20, 23)]
    bad_tokens, bad_index, bad_t, image = bad_inputs(22, 11.0)[case]
    frames = [*good, (bad_tokens, bad_index, bad_t, image), stream.frame(24)]
    tokens = [t for t, _, _, _ in frames]
    if case != "wrong width":
        tokens = torch.stack(tokens)
    with pytest.raises(MemoryBankError):
        memory.add_frames(tokens, [i for _, i, _, _ in frames], [t for _, _, t, _ in frames], [f for *_, f in frames])
    for tokens, index, t, image in good:
        reference.add(tokens, index, t, frame=image)
    assert_same_state(reference.state_dict(), memory.state_dict())


@backends
def test_add_frames_refuses_a_batch_whose_parts_disagree(key):
    memory, stream = make(key), Stream()
    feed(memory, stream, 0, 5)
    before = copy.deepcopy(memory.state_dict())
    tokens = torch.stack([stream.frame(i)[0] for i in (5, 6)])
    for args in [(tokens, [5], [2.5, 3.0]), (tokens, [5, 6], [2.5]), (tokens, [5, 6], [2.5, 3.0], [None]),
                 (tokens[0], [5] * 16, [2.5] * 16), (tokens.flatten(0, 1), [5], [2.5]), (tokens, 5, 2.5)]:
        with pytest.raises(MemoryBankError):
            memory.add_frames(*args)
    assert_same_state(before, memory.state_dict())


@backends
def test_tokens_that_require_grad_leave_no_autograd_history(key):
    """A memory holds values, not graphs: fed tokens that require grad (an encoder being trained), it ends
    exactly as when fed the same values detached, and nothing it holds or returns has a grad_fn."""
    weight = torch.eye(C, requires_grad=True)
    with_grad, detached, stream = make(key), make(key), Stream()
    for i in range(60):
        tokens, index, t, image = stream.frame(i)
        with_grad.add(tokens @ weight, index, t, frame=image)
        detached.add(tokens, index, t, frame=image)
    assert_same_state(with_grad.state_dict(), detached.state_dict())
    held = [e.tokens for e in with_grad.readout()] + [v for v in with_grad.state_dict().values()
                                                       if isinstance(v, torch.Tensor)]
    assert held and not any(x.requires_grad or x.grad_fn is not None for x in held)
    stacked = torch.stack([stream.frame(i)[0] for i in (60, 61)]) @ weight
    with_grad.add_frames(stacked, [60, 61], [30.0, 30.5], [stream.frame(i)[3] for i in (60, 61)])
    assert not any(e.tokens.requires_grad for e in with_grad.readout())
