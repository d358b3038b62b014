import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub retries in tests

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "videos"
if not VIDEOS.is_dir():  # scripts/get_sample_videos.sh puts them here
    VIDEOS = Path(__file__).resolve().parents[2] / "data" / "videos"


@pytest.fixture(scope="session")
def videos() -> Path:
    if not (VIDEOS / "bikes.mp4").is_file():
        pytest.fail(f"sample videos missing in {VIDEOS}: run scripts/get_sample_videos.sh")
    return VIDEOS


@pytest.fixture(scope="session")
def tiny():
    from videollama3.tiny import build_tiny_model

    return build_tiny_model(seed=0)


@pytest.fixture(scope="session")
def bikes_frames(videos):
    """The first 6 frames of bikes.mp4 at 1 fps: [(frame (272, 640, 3) uint8, t)]."""
    from videollama3.video import iter_frames

    return [ft for _, ft in zip(range(6), iter_frames(videos / "bikes.mp4", fps=1))]
