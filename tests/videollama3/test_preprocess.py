import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videollama3.preprocess import float_resize, frame_size, patchify, preprocess_frames, resize_frames


def test_shapes_and_grid_keep_the_aspect_ratio():
    frames = np.zeros((3, 272, 640, 3), dtype=np.uint8)  # bikes.mp4: 196 x 504 pixels, 14 x 36 patches
    pv, thw, ms = preprocess_frames(frames)
    assert pv.shape == (3 * 14 * 36, 3 * 14 * 14) and pv.dtype == torch.float32
    assert thw.tolist() == [[1, 14, 36]] * 3 and ms.tolist() == [2, 2, 2]
    assert preprocess_frames(np.zeros((336, 336, 3), dtype=np.uint8))[1].tolist() == [[1, 24, 24]]  # square: 12x12


@pytest.mark.parametrize("height, width, grid", [
    (720, 1280, (9, 16)),  # 16:9
    (576, 768, (10, 13)),  # 4:3
    (1280, 720, (16, 9)),  # 9:16, portrait
    (600, 600, (12, 12)),  # 1:1
    (144, 176, (5, 6)),  # an odd size, below the budget: rounded, not enlarged
    (333, 1001, (6, 20)),
])
def test_grids_equal_transformers_smart_resize(height, width, grid):
    from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import smart_resize

    h, w = smart_resize(height, width, factor=28, min_pixels=4 * 28 * 28, max_pixels=144 * 28 * 28)
    assert frame_size(height, width) == (h, w)
    _, thw, ms = preprocess_frames(np.zeros((height, width, 3), dtype=np.uint8))
    assert (thw[0, 1] // ms[0], thw[0, 2] // ms[0]) == (h // 28, w // 28) == grid
    assert grid[0] * grid[1] <= 144
    _, thw, _ = preprocess_frames(np.zeros((height, width, 3), dtype=np.uint8), max_tokens=36)
    assert int(thw[0, 1] * thw[0, 2]) // 4 <= 36


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


def test_resize_on_the_cpu_is_torchs_uint8_bicubic_as_torchvision_calls_it():
    """torchvision's resize of a uint8 tensor on the CPU (what the native video processor calls) is
    torch's uint8 antialiased bicubic kernel on the uint8 frames; rescale and normalise are fused as
    the native processor fuses them, (x - 127.5) / 127.5 in float32."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (272, 640, 3), dtype=np.uint8)
    pv, _, _ = preprocess_frames(frame)
    ref = F.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous(), size=(196, 504), mode="bicubic",
                        align_corners=False, antialias=True).float()
    assert torch.equal(pv, patchify((ref - 127.5) / 127.5))
    assert torch.equal(resize_frames(torch.from_numpy(frame).permute(2, 0, 1)[None], (196, 504)), ref.to(torch.uint8))


def test_resize_off_the_cpu_is_float_bicubic_rounded_and_clamped():
    """torchvision's path where the uint8 kernel does not exist (a GPU), run here on the CPU."""
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (2, 272, 640, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    float_path = float_resize(frames, (196, 504))
    x = F.interpolate(frames.float(), size=(196, 504), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(float_path, x.clamp(0, 255).round())
    # the CPU's kernel rounds between its two passes: on noise (the worst case) a fifth of the values
    # differ, by a quarter of a level on average
    diff = (float_path - resize_frames(frames, (196, 504)).float()).abs()
    assert 0 < diff.mean() < 0.3


def test_resize_of_a_real_frame_is_within_one_level_of_pillows(videos):
    """DAMO's own processor resizes with Pillow (bicubic, antialiased on a shrink); torch's uint8 kernel
    computes in fixed point as Pillow does: every value within 1 of Pillow's, nearly all equal."""
    from PIL import Image

    from videollama3.video import open_video

    frame, _ = next(open_video(videos / "trailer_bbb.mp4").frames(fps=1.0))  # 720p
    height, width = frame_size(*frame.shape[:2])
    ours = resize_frames(torch.from_numpy(frame).permute(2, 0, 1)[None], (height, width))[0].permute(1, 2, 0)
    pillow = torch.from_numpy(np.array(Image.fromarray(frame).resize((width, height), Image.BICUBIC)))
    diff = (ours.int() - pillow.int()).abs()
    assert (height, width) == (252, 448) and diff.max() <= 1 and (diff > 0).float().mean() < 0.01


def test_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((336, 336, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess_frames(np.zeros((336, 336), dtype=np.uint8))
    with pytest.raises(ValueError, match="max_tokens .* must be an integer >= 4"):
        preprocess_frames(np.zeros((336, 336, 3), dtype=np.uint8), max_tokens=3)
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        preprocess_frames(np.zeros((1, 400, 3), dtype=np.uint8))


def test_equals_the_native_video_processor_where_torchvision_exists(videos):
    """Bit for bit, on random frames already at size and on real 720p frames the native processor
    resizes (on the CPU: torchvision's uint8 bicubic, then rescale and normalise fused). Checked with
    torchvision 0.28's transforms against torch 2.13. Skipped where torchvision is missing, unless
    VL3MEM_REQUIRE_TORCHVISION is set (``.ci/run`` sets it: see tests/torchvision_cpu)."""
    if os.environ.get("VL3MEM_REQUIRE_TORCHVISION"):
        import torchvision  # noqa: F401  (an ImportError fails the test)
    else:
        pytest.importorskip("torchvision", reason="the native VideoLlama3VideoProcessor needs torchvision")
    from transformers import VideoLlama3VideoProcessor

    from videollama3.video import open_video

    processor = VideoLlama3VideoProcessor(use_token_compression=False)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 252, 448, 3), dtype=np.uint8)  # already at the 9x16 size: no resize
    native = processor(videos=[torch.from_numpy(frames).permute(0, 3, 1, 2)], do_resize=False, return_tensors="pt")
    pv, thw, _ = preprocess_frames(frames)
    assert torch.equal(pv, native["pixel_values_videos"])
    assert native["video_grid_thw"].tolist() == [[2, 18, 32]]

    source = open_video(videos / "trailer_bbb.mp4").frames(fps=1.0)
    frames = np.stack([next(source)[0] for _ in range(3)])  # 720p
    clip = len(frames) * 28 * 28  # the native pixel budget is the clip's: 144 tokens a frame, at least 4
    native = processor(videos=[torch.from_numpy(frames).permute(0, 3, 1, 2)], return_tensors="pt",
                       size={"shortest_edge": 4 * clip, "longest_edge": 144 * clip})
    pv, thw, _ = preprocess_frames(frames)
    assert native["video_grid_thw"].tolist() == [[3, 18, 32]] and thw.tolist() == [[1, 18, 32]] * 3
    assert torch.equal(pv, native["pixel_values_videos"])
