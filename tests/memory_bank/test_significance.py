"""SignificanceMemory: a frame is kept only when it differs enough from the last one kept."""

import math

import pytest
import torch

from memory_bank import MemoryBankError, SignificanceMemory, resize_token_grid
from memory_bank.significance import distance, frame_signature

C = 8


def scene_video(scenes, frames_per_scene, seed=0):
    """Frames ``(tokens (144, C), raw (32, 48, 3) uint8)``: each scene random tokens and a textured
    image around a random colour; frames of a scene add small noise to both."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(scenes):
        tokens = torch.randn(144, C, generator=g)
        colour = torch.randint(40, 216, (3,), generator=g)  # each scene has its own colours
        image = colour + torch.randint(-30, 31, (32, 48, 3), generator=g)
        for _ in range(frames_per_scene):
            noisy_tokens = tokens + 0.01 * torch.randn(144, C, generator=g)
            noisy_image = (image + torch.randint(-3, 4, image.shape, generator=g)).to(torch.uint8)
            out.append((noisy_tokens, noisy_image))
    return out


def stream(memory, video):
    return [i for i, (tokens, image) in enumerate(video) if memory.add(tokens, i, i / 4, frame=image)]


CRITERIA = ["feature", "pixel", "histogram", "ssim"]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_a_static_video_stores_one_frame(criterion):
    memory = SignificanceMemory(mm_hidden_size=C, criterion=criterion)
    assert stream(memory, scene_video(1, 200)) == [0]
    stats = memory.stats()
    assert stats["frames_stored"] == 1 and stats["frames_skipped"] == 199 and stats["entries"] == 1


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("adaptive", [False, True])
def test_a_video_with_cuts_stores_one_frame_per_cut(criterion, adaptive):
    memory = SignificanceMemory(mm_hidden_size=C, criterion=criterion, adaptive=adaptive, buffer_size=20)
    assert stream(memory, scene_video(7, 15)) == [0, 15, 30, 45, 60, 75, 90]


def test_rolling_buffer_keeps_the_last_significant_frames_at_the_reduced_grid():
    memory = SignificanceMemory(mm_hidden_size=C, buffer_size=3)
    video = scene_video(6, 4)
    stream(memory, video)
    entries = memory.readout()
    assert [e.frame_index for e in entries] == [12, 16, 20]
    assert [e.timestamp for e in entries] == [3.0, 4.0, 5.0]
    assert all(e.grid == (8, 8) and e.tier == 0 for e in entries)
    assert torch.equal(entries[-1].tokens, resize_token_grid(video[20][0], (12, 12), (8, 8)))
    assert memory.stats()["evictions"] == 3 and memory.stats()["tokens"] == 3 * 64


def test_adaptive_threshold_is_mean_plus_k_std_of_the_background_distances():
    memory = SignificanceMemory(mm_hidden_size=C, criterion="pixel", threshold=0.5, adaptive=True,
                                adaptive_k=2.0, adaptive_warmup=4, threshold_floor=0.0)
    tokens = torch.randn(144, C)

    def gray(v):
        return torch.full((20, 20, 3), v, dtype=torch.uint8)

    # frame 0 is stored; then distances 2, 2, 4, 0 (/255) to it are all under the fixed 0.5
    kept = [memory.add(tokens, i, float(i), frame=gray(v)) for i, v in enumerate([100, 102, 98, 104, 100])]
    assert kept == [True, False, False, False, False]
    expected = (2 + 2 * math.sqrt(2)) / 255  # mean 2/255, std sqrt(2)/255
    assert memory.current_threshold() == pytest.approx(expected, rel=1e-5)
    assert memory.add(tokens, 5, 5.0, frame=gray(105)) is True  # 5/255 > 4.83/255
    assert memory.current_threshold() == pytest.approx(expected, rel=1e-5)  # a significant distance is not counted
    assert memory.add(tokens, 6, 6.0, frame=gray(104)) is False  # 1/255 from the new reference
    assert memory.stats()["mean_distance"] == pytest.approx(9 / 5 / 255, rel=1e-5)


def test_distances_have_their_units():
    black = torch.zeros(32, 32, 3, dtype=torch.uint8)
    white = torch.full((32, 32, 3), 255, dtype=torch.uint8)
    half = black.clone()
    half[:16] = 255
    sig = {c: {k: frame_signature(f, c) for k, f in [("black", black), ("white", white), ("half", half)]}
           for c in ["pixel", "histogram", "ssim"]}
    assert distance("pixel", sig["pixel"]["black"], sig["pixel"]["white"]) == 1.0
    assert distance("pixel", sig["pixel"]["black"], sig["pixel"]["half"]) == pytest.approx(0.5)
    assert distance("histogram", sig["histogram"]["black"], sig["histogram"]["white"]) == 1.0
    assert distance("histogram", sig["histogram"]["black"], sig["histogram"]["half"]) == pytest.approx(0.5)
    assert distance("ssim", sig["ssim"]["half"], sig["ssim"]["half"]) == pytest.approx(0.0, abs=1e-6)
    assert distance("ssim", sig["ssim"]["half"], 1 - sig["ssim"]["half"]) > 1.0  # inverted structure
    v = torch.nn.functional.normalize(torch.randn(C), dim=0)
    assert distance("feature", v, v) == pytest.approx(0.0, abs=1e-6)
    assert distance("feature", v, -v) == pytest.approx(2.0)


def test_numpy_frames_are_accepted():
    np = pytest.importorskip("numpy")
    memory = SignificanceMemory(mm_hidden_size=C, criterion="histogram")
    assert memory.add(torch.randn(144, C), 0, 0.0, frame=np.zeros((10, 12, 3), dtype=np.uint8))
    with pytest.raises(MemoryBankError, match="uint8"):
        memory.add(torch.randn(144, C), 1, 1.0, frame=np.zeros((10, 12, 3), dtype=np.float32))
