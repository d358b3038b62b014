import pytest

from videollama3.errors import VideoError
from videollama3.video import iter_frames, probe_video


def test_probe(videos):
    info = probe_video(videos / "vtest.avi")
    assert (info.width, info.height, info.fps) == (768, 576, 10.0)
    assert info.duration == pytest.approx(79.5, abs=0.1)


def test_one_fps_sampling_is_lazy_and_timed(videos):
    it = iter_frames(videos / "bikes.mp4", fps=1)
    frame, t = next(it)
    assert frame.shape == (272, 640, 3) and frame.dtype.name == "uint8" and t == 0.0
    rest = [t for _, t in it]
    assert [0.0] + rest == [float(i) for i in range(10)]


def test_every_frame_and_window(videos):
    times = [t for _, t in iter_frames(videos / "carphone_distorted.mp4", fps=None)]
    assert len(times) == probe_video(videos / "carphone_distorted.mp4").num_frames == 120
    assert times[:2] == [0.0, round(1001 / 30000, 6)]  # 29.97 fps
    assert all(b > a for a, b in zip(times, times[1:]))
    window = [t for _, t in iter_frames(videos / "vtest.avi", fps=2, start=10, end=12)]
    assert window == [10.0, 10.5, 11.0, 11.5, 12.0]


def test_bad_files(tmp_path, videos):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "cut.mp4").write_bytes((videos / "bikes.mp4").read_bytes()[:100_000])
    cases = {tmp_path / "missing.mp4": "no such video", tmp_path / "empty.mp4": "empty",
             tmp_path / "text.mp4": "cannot open", tmp_path / "cut.mp4": "cannot open", tmp_path: "not a file"}
    for path, message in cases.items():
        with pytest.raises(VideoError, match=message):
            next(iter_frames(path))
        with pytest.raises(VideoError, match=message):
            probe_video(path)
    with pytest.raises(VideoError, match="fps"):
        next(iter_frames(videos / "bikes.mp4", fps=0))
