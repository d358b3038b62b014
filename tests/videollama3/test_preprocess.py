import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videollama3.preprocess import patchify, preprocess_frames


def test_shapes_and_grid_for_336():
    frames = np.zeros((3, 272, 640, 3), dtype=np.uint8)
    pv, thw, ms = preprocess_frames(frames)
    assert pv.shape == (3 * 24 * 24, 3 * 14 * 14) and pv.dtype == torch.float32
    assert thw.tolist() == [[1, 24, 24]] * 3 and ms.tolist() == [2, 2, 2]


def test_rescale_and_normalise():
    white = np.full((336, 336, 3), 255, dtype=np.uint8)
    black = np.zeros((336, 336, 3), dtype=np.uint8)
    assert torch.equal(preprocess_frames(white)[0], torch.ones(576, 588))
    assert torch.equal(preprocess_frames(black)[0], -torch.ones(576, 588))
    grey = np.full((336, 336, 3), 51, dtype=np.uint8)
    assert torch.allclose(preprocess_frames(grey)[0], torch.full((576, 588), 51 / 255 * 2 - 1))


def test_patch_layout_follows_merge_blocks():
    """Patch j of a frame is merge block (bh, bw), then position (mh, mw) inside it;
    each patch row is channel-major 3 x 14 x 14 pixels."""
    g, p, m = 4, 14, 2
    pixels = torch.arange(3 * g * p * g * p, dtype=torch.float32).reshape(1, 3, g * p, g * p)
    patches = patchify(pixels, p, m)
    j = 0
    for bh in range(g // m):
        for bw in range(g // m):
            for mh in range(m):
                for mw in range(m):
                    r, c = (bh * m + mh) * p, (bw * m + mw) * p
                    assert torch.equal(patches[j], pixels[0, :, r:r + p, c:c + p].reshape(-1)), j
                    j += 1


def test_resize_is_antialiased_bicubic_rounded_to_uint8():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (272, 640, 3), dtype=np.uint8)
    pv, _, _ = preprocess_frames(frame)
    ref = F.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), size=(336, 336), mode="bicubic",
                        align_corners=False, antialias=True).round().clamp(0, 255)
    assert torch.equal(pv, patchify(ref / 255 * 2 - 1))


def test_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((336, 336, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess_frames(np.zeros((336, 336), dtype=np.uint8))
    with pytest.raises(ValueError, match="multiple of 28"):
        preprocess_frames(np.zeros((336, 336, 3), dtype=np.uint8), size=300)


def test_equals_the_native_video_processor_where_torchvision_exists():
    pytest.importorskip("torchvision", reason="the native VideoLlama3VideoProcessor needs torchvision")
    from transformers import VideoLlama3VideoProcessor

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 336, 336, 3), dtype=np.uint8)
    native = VideoLlama3VideoProcessor(use_token_compression=False)(
        videos=[torch.from_numpy(frames).permute(0, 3, 1, 2)], do_resize=False, return_tensors="pt")
    pv, thw, _ = preprocess_frames(frames)
    torch.testing.assert_close(pv, native["pixel_values_videos"])
    assert native["video_grid_thw"].tolist() == [[2, 24, 24]]
