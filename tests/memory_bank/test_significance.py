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


@pytest.mark.parametrize("shape", [(360, 640), (576, 768), (63, 65), (16, 16), (100, 7), (1, 1)])
@pytest.mark.parametrize("size", [64, 8])
def test_area_pool_is_adaptive_avg_pool2d_bit_for_bit(shape, size):
    """The pixel criteria's downsampling (two embedding_bag passes) gives the torch kernel's exact values,
    for frames larger and smaller than the signature, and for a frame that is a strided view."""
    from memory_bank.significance import area_pool

    g = torch.Generator().manual_seed(shape[0] * 7 + size)
    frame = torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, generator=g)
    for f in (frame, torch.randint(0, 256, (2 * shape[0], 2 * shape[1], 3), dtype=torch.uint8, generator=g)[::2, 1::2]):
        want = torch.nn.functional.adaptive_avg_pool2d(f.permute(2, 0, 1).float()[None], (size, size))[0]
        got = area_pool(f, size)
        assert got.shape == (3, size, size) and got.dtype == torch.float32 and torch.equal(got, want)


@pytest.mark.parametrize("size", [64, 16, 8])
def test_ssim_equals_the_2d_gaussian_convolution_of_wang_et_al(size):
    """ssim() filters with the separable window as two matrix products; the textbook form convolves
    with the 11x11 (or SxS) Gaussian window g g^T. Same value to float32 rounding."""
    from memory_bank.significance import ssim

    g = torch.Generator().manual_seed(size)
    a = torch.rand(1, size, size, generator=g)
    b = (a + 0.2 * torch.rand(1, size, size, generator=g)).clamp(0, 1)
    k = min(11, size)
    x = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    w = torch.exp(-(x**2) / (2 * 1.5**2))
    w = (w / w.sum())[:, None] * (w / w.sum())[None, :]
    mu_a, mu_b, aa, bb, ab = torch.nn.functional.conv2d(torch.stack([a, b, a * a, b * b, a * b]), w[None, None]).unbind(0)
    c1, c2 = 0.01**2, 0.03**2
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    want = (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean()
    assert ssim(a, b) == pytest.approx(float(want), abs=1e-6) and 0.0 < ssim(a, b) < 1.0
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(360, 640), (10, 12), (513, 7)])
@pytest.mark.parametrize("bins", [16, 7, 2])
def test_histogram_signature_counts_each_sampled_pixel_in_its_bin(shape, bins):
    """Per channel, the share of the sampled pixels (every step-th row and column, step = ceil(max(H, W) / 256))
    whose value v falls in bin v * bins // 256: exactly the counts of binning each pixel."""
    g = torch.Generator().manual_seed(bins)
    frame = torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, generator=g)
    step = max(1, -(-max(shape) // 256))
    px = frame[::step, ::step].reshape(-1, 3).long()
    want = torch.stack([torch.bincount(px[:, c] * bins // 256, minlength=bins) for c in range(3)]).float() / len(px)
    got = frame_signature(frame, "histogram", bins=bins)
    assert got.shape == (3, bins) and torch.equal(got, want) and torch.allclose(got.sum(1), torch.ones(3))
