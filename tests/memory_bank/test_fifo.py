"""FIFOMemory: recent window + prompted frames kept regardless of age (SAM2)."""

import pytest
import torch

from memory_bank import FIFOMemory, MemoryBankError


def frame_ids(memory):
    return [e.frame_index for e in memory.readout()]


def add(memory, i):
    memory.add(torch.full((4, 2), float(i + 1)), i, float(i))


def test_recent_window_and_prompted_frames_by_hand():
    m = FIFOMemory(mm_hidden_size=2, num_recent=3, max_prompted=2)
    for i in range(10):
        add(m, i)
        if i in (2, 5):
            m.mark_prompted(i)
    assert frame_ids(m) == [2, 5, 7, 8, 9]
    assert [e.tier for e in m.readout()] == [1, 1, 0, 0, 0]
    assert m.stats()["evictions"] == 5  # frames 0, 1, 3, 4, 6

    m.mark_prompted(8)  # a third prompted frame: the oldest prompted (2) goes
    assert m.prompted_frames == [5, 8] and frame_ids(m) == [5, 7, 8, 9]
    for i in range(10, 15):
        add(m, i)
    assert frame_ids(m) == [5, 8, 12, 13, 14]  # 8 outlived the recent window because it is prompted
    m.mark_prompted(13)
    assert frame_ids(m) == [8, 12, 13, 14] and m.prompted_frames == [8, 13]
    m.mark_prompted(8)  # already prompted: nothing changes
    assert m.prompted_frames == [8, 13]
    stats = m.stats()
    assert stats["evictions"] == 11 and stats["frames_added"] == 15
    assert stats["tiers"]["recent"] == {"entries": 2, "capacity": 3, "tokens": 8, "bytes": 64}
    assert stats["tiers"]["prompted"] == {"entries": 2, "capacity": 2, "tokens": 8, "bytes": 64}
    # tokens are the ones added
    assert [float(e.tokens[0, 0]) for e in m.readout()] == [9.0, 13.0, 14.0, 15.0]


def test_marking_a_frame_not_held_is_an_error_that_changes_nothing():
    m = FIFOMemory(mm_hidden_size=2, num_recent=2)
    for i in range(5):
        add(m, i)
    with pytest.raises(MemoryBankError, match=r"frame 1 is not in memory \(held: \[3, 4\]\)"):
        m.mark_prompted(1)
    assert m.prompted_frames == [] and frame_ids(m) == [3, 4]


def test_no_prompted_frames_when_max_prompted_is_zero():
    m = FIFOMemory(mm_hidden_size=2, num_recent=2, max_prompted=0)
    for i in range(4):
        add(m, i)
        m.mark_prompted(i)
    assert frame_ids(m) == [2, 3] and m.prompted_frames == []


def test_defaults_are_sam2s():
    m = FIFOMemory()
    assert (m.config.num_recent, m.config.max_prompted, m.mm_hidden_size) == (6, 8, 1152)
