import re

import numpy as np
import pytest

from videollama3.errors import VideoError
from videollama3.video import encoder_threads, iter_frames, probe_video


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
             tmp_path / "text.mp4": "cannot open", tmp_path / "cut.mp4": "cannot open", tmp_path: "is a frame folder; give the frame rate"}
    for path, message in cases.items():
        with pytest.raises(VideoError, match=message):
            next(iter_frames(path))
        with pytest.raises(VideoError, match=message):
            probe_video(path)
    with pytest.raises(VideoError, match="fps"):
        next(iter_frames(videos / "bikes.mp4", fps=0))


def test_an_mp4_without_its_index_says_so(tmp_path, videos):
    """bikes.mp4 is ftyp (32 bytes), free (8), mdat (506,101), moov (3,727): the index comes last, so a cut
    file has none, and FFmpeg's own message ('Invalid data found') does not say why."""
    data = (videos / "bikes.mp4").read_bytes()
    mdat_end = 32 + 8 + 506_101
    assert data[40 + 4:40 + 8] == b"mdat" and data[mdat_end + 4:mdat_end + 8] == b"moov"
    cases = {
        "cut.mp4": (data[:100_000], "the file is truncated: its 'mdat' box needs 506141 bytes and the file has "
                                    "100000, and the frame index (the 'moov' box) is missing"),
        "no_index.mp4": (data[:mdat_end], "the file has no frame index (no 'moov' box): a partial download or an "
                                          "interrupted recording"),
        "cut_index.mp4": (data[:mdat_end + 1000], f"its 'moov' box needs {len(data)} bytes and the file has "
                                                  f"{mdat_end + 1000}"),
    }
    for name, (content, hint) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(VideoError) as e:
            probe_video(tmp_path / name)
        assert str(e.value).startswith(f"cannot open {tmp_path / name} as a video (")  # FFmpeg's error, then ours
        assert str(e.value).endswith("; the file is truncated: " + hint if name == "cut_index.mp4" else "; " + hint)
    (tmp_path / "text.mp4").write_text("not a video")  # not an ISO media file: FFmpeg's message alone
    with pytest.raises(VideoError) as e:
        probe_video(tmp_path / "text.mp4")
    assert str(e.value).endswith("text.mp4')")  # nothing added


def encode(path, frames=50, fps=10, start=0.0, fmt=None, options=None, w=64, h=48, codec=None, codec_options=None,
           image=None):
    """A small H.264 (or MPEG-4) video written with PyAV: a red top-left corner, changing content; or frames
    ``image(i)`` ((h, w, 3) uint8 RGB) with ``codec`` and its ``codec_options``."""
    import fractions

    import av

    container = av.open(str(path), "w", format=fmt, container_options=options or {})
    stream = container.add_stream(codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4"), rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = codec_options or {}
    for i in range(frames):
        if image is None:
            picture = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
            picture[: h // 3, : w // 3] = (255, 0, 0)
        else:
            picture = image(i)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = int(start * fps) + i, fractions.Fraction(1, fps)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_a_truncated_file_indexed_at_the_front_is_a_partial_decode(tmp_path, capsys):
    """Its index says 10 s, its data stops near 3 s: not a 3-second video."""
    from videollama3.cli import main

    full = encode(tmp_path / "full.mp4", frames=100, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.3)])
    assert probe_video(cut).duration == 10.0
    frames = []
    with pytest.raises(VideoError, match="ended at .* of a 10.00s video \\(the file is truncated\\)") as e:
        for frame, t in iter_frames(cut, fps=1):
            frames.append(t)
    assert frames and e.value.stopped_at is not None and frames[-1] <= e.value.stopped_at < 5
    code = main(["answer", str(cut), "-q", "early", "--at", "1", "-q", "late", "--at", "8", "-q", "at the end",
                 "--model", "tiny", "--quiet", "--max-new-tokens", "1"])
    out, err = capsys.readouterr()
    assert code == 1 and "[1.0s] Q: early" in out and "truncated" in err
    stopped = r"not answered: decoding stopped at [1-4]\.\d\ds, before"
    assert re.search(rf"\[8\.0s\] Q: late\n  {stopped} this time\n", out), out
    assert re.search(rf"\[end\] Q: at the end\n  {stopped} the end of the video\n", out), out


@pytest.mark.parametrize("fmt, suffix", [(None, "mp4"), ("mpegts", "ts")])
def test_times_are_seconds_from_the_first_frame_when_a_stream_starts_at_100s(tmp_path, capsys, fmt, suffix):
    from videollama3.cli import main

    path = encode(tmp_path / f"late.{suffix}", frames=100, start=100.0, fmt=fmt)
    assert probe_video(path).duration == pytest.approx(10.0, abs=0.11)
    assert [t for _, t in iter_frames(path, fps=1)] == [float(i) for i in range(10)]
    code = main(["answer", str(path), "-q", "x", "--at", "50", "--model", "tiny", "--quiet"])
    assert code == 2 and "beyond the end of the video" in capsys.readouterr().err


def test_display_rotation_is_applied(tmp_path):
    """A phone video: landscape pixels with a display matrix turning them 90 degrees clockwise."""
    import struct

    path = encode(tmp_path / "phone.mp4", frames=10)
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") + 44  # type, version/flags, times, track id, reserved, duration, reserved, layer..volume
    assert struct.unpack(">9i", data[matrix:matrix + 36]) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # "rotate=90"
    path.write_bytes(bytes(data))
    frame, _ = next(iter(iter_frames(path, fps=1)))
    assert frame.shape == (64, 48, 3)  # upright: portrait
    top_right, top_left = frame[:10, -10:].reshape(-1, 3).mean(0), frame[:10, :10].reshape(-1, 3).mean(0)
    assert top_right[0] > 200 and top_right[1:].max() < 60  # the red corner turned to the top right
    assert top_left[1:].min() > 60  # and the random content where it was


def test_upright_turns_by_multiples_of_90():
    from videollama3.video import upright

    image = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    assert upright(image, 0) is image
    assert np.array_equal(upright(image, -90), np.rot90(image, -1)) and np.array_equal(upright(image, 180), image[::-1, ::-1])
    assert np.array_equal(upright(image, 90), np.rot90(image, 1)) and upright(image, 270).shape == (4, 6, 3)


def test_decoding_ahead_gives_the_same_frames_in_order(videos):
    from videollama3.video import decode_ahead, open_video

    direct = list(iter_frames(videos / "bikes.mp4", fps=2))
    ahead = list(decode_ahead(open_video(videos / "bikes.mp4").frames(fps=2), depth=3))
    assert [t for _, t in ahead] == [t for _, t in direct]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(ahead, direct))


@pytest.mark.parametrize("name, fps", [("bikes.mp4", 2), ("trailer_bbb.mp4", 0.25)])
def test_a_reader_reads_its_frames_again_one_iteration_at_a_time(videos, name, fps):
    """After an iteration has closed the file, ``frames()`` opens it again: the same frames, in turn
    and decoded ahead (trailer_bbb.mp4 sparsely sampled: several GOPs at once), and after
    ``close()``; a second iteration while one reads is a clear error, not the first one's frames."""
    from videollama3.video import decode_ahead, open_video

    video = open_video(videos / name)
    first = list(video.frames(fps=fps))
    for again in (list(video.frames(fps=fps)), list(decode_ahead(video.frames(fps=fps), depth=3))):
        assert [t for _, t in again] == [t for _, t in first]
        assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(again, first))
    reading, waiting = video.frames(fps=fps), video.frames(fps=fps)
    next(reading)
    with pytest.raises(VideoError, match="being read by another iteration of this reader; finish or close it"):
        next(waiting)
    waiting.close()  # closing an iteration that never read leaves the reading one alone
    assert len(list(reading)) == len(first) - 1
    video.close()
    assert [t for _, t in video.frames(fps=fps)] == [t for _, t in first]


@pytest.mark.parametrize("start, end, message", [
    (float("nan"), None, "start must be a number of seconds >= 0, got nan"),
    (-1, None, "start must be a number of seconds >= 0, got -1"),
    ("3", None, "start must be a number of seconds >= 0, got '3'"),
    (5, 2, r"end must be a number of seconds not before start \(5 s\), got 2"),
    (5, float("nan"), "end must be a number of seconds not before start"),
    (100, None, "no frame of {video} at or after start 100s: its last frame is at {last}s"),
    ("last", None, "no frame of {video} at or after start {start}s: its last frame is at {last}s"),
    ("between", "between", "no frame of {video} lies between start {start}s and end {end}s; widen the window"),
])
def test_a_window_that_is_bad_or_holds_no_frame_is_a_clear_error_never_an_empty_stream(videos, tmp_path, start, end,
                                                                                       message):
    """Every way of reading frames (in turn; decoded ahead, several GOPs at once; a frame folder) refuses a bad
    window, or one that holds no frame (after the last frame, or between two frames), by name: an empty
    stream would answer its questions from nothing."""
    from PIL import Image

    from videollama3.video import decode_ahead, open_video

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(10):  # frames at 0 ... 9 s
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    bikes, trailer = videos / "bikes.mp4", videos / "trailer_bbb.mp4"
    sources = {  # video: (frames of a window, last frame's time, a start after it, a window between two frames)
        "bikes.mp4": (lambda s, e: iter_frames(bikes, fps=1, start=s, end=e), "9.96", 9.99, (5.01, 5.02)),
        "trailer_bbb.mp4": (lambda s, e: decode_ahead(open_video(trailer).frames(fps=0.25, start=s, end=e), 2),
                            "55.08", 55.1, (20.01, 20.02)),  # 24 frames/s: 20.0, then 20.04
        "frames": (lambda s, e: open_video(folder, 1).frames(fps=1, start=s, end=e), "9.00", 9.5, (3.2, 3.7)),
    }
    for name, (frames, last, after, between) in sources.items():
        s = after if start == "last" else between[0] if start == "between" else start
        e = between[1] if end == "between" else end
        wanted = message.format(video=f".*{name}", last=last, start=f"{s:.6g}" if isinstance(s, float) else s,
                                end=f"{e:.6g}" if isinstance(e, float) else e)
        with pytest.raises(VideoError, match=wanted):
            list(frames(s, e))
    assert [t for _, t in iter_frames(bikes, fps=1, start=3, end=5)] == [3.0, 4.0, 5.0]


def test_decoding_ahead_is_bounded_raises_in_place_and_stops_when_left():
    import threading
    import time

    from videollama3.video import decode_ahead

    produced = []

    def source(fail_at=None):
        try:
            for i in range(100):
                if i == fail_at:
                    raise VideoError("decoding x stopped at 3.00s", "x", stopped_at=3.0)
                produced.append(i)
                yield np.zeros((1, 1, 3), np.uint8), float(i)
        finally:
            produced.append("closed")

    frames = decode_ahead(source(), depth=4)
    assert next(frames)[1] == 0.0
    time.sleep(0.2)  # the thread runs ahead, but never more than the queue holds (+ the one it waits to put)
    assert len(produced) <= 1 + 4 + 1
    frames.close()  # leaving early stops the thread and closes the source
    assert produced[-1] == "closed" and not any(t.name == "vl3mem-decode" for t in threading.enumerate())

    produced.clear()
    got = []
    with pytest.raises(VideoError, match="stopped at 3.00s"):
        for _, t in decode_ahead(source(fail_at=5), depth=2):
            got.append(t)
    assert got == [0.0, 1.0, 2.0, 3.0, 4.0]  # every frame before the failure, then the failure


def test_answer_and_eval_report_time_per_stage(videos, tmp_path, capsys):
    import json

    from videollama3.cli import main

    out = tmp_path / "a.json"
    assert main(["answer", str(videos / "bikes.mp4"), "-q", "x", "--model", "tiny", "--quiet", "--max-new-tokens", "1",
                 "--output", str(out)]) == 0
    speed = json.loads(out.read_text())["throughput"]
    assert speed["frames"] == 10 and speed["questions"] == 1 and speed["frames_per_s"] > 0
    assert all(v >= 0 for v in speed["ms_per_frame"].values()) and speed["ms_per_question"]["generate"] > 0


def frame_folder(path, n, size=(40, 30), names="{}.png"):
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 10, 255 - i * 10, 7)).save(path / names.format(i + 1))
    return path


def test_a_frame_folder_is_a_video_timed_by_its_frame_rate(tmp_path):
    from videollama3.video import open_video

    folder = frame_folder(tmp_path / "frames", 12)  # 1.png .. 12.png: 10.png sorts after 9.png
    (folder / "notes.txt").write_text("not a frame")
    video = open_video(folder, frame_rate=4)
    assert (video.info.duration, video.info.fps, video.info.width, video.info.height, video.info.num_frames) == (3.0, 4.0, 40, 30, 12)
    frames = list(video.frames(fps=2))  # every other image, at i / 4 s
    assert [t for _, t in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [int(f[0, 0, 0]) for f, _ in frames] == [0, 20, 40, 60, 80, 100] and frames[0][0].shape == (30, 40, 3)
    assert [t for _, t in open_video(folder, 4).frames(fps=None, start=1.0, end=2.0)] == [1.0, 1.25, 1.5, 1.75, 2.0]


def test_frame_folders_that_cannot_be_read_are_one_clear_error(tmp_path):
    from PIL import Image

    from videollama3.video import open_video

    folder = frame_folder(tmp_path / "f", 4)
    with pytest.raises(VideoError, match="is a frame folder; give the frame rate"):
        open_video(folder)
    with pytest.raises(VideoError, match="must be a positive number of frames per second, got 0"):
        open_video(folder, 0)
    with pytest.raises(VideoError, match="holds no image"):
        open_video((tmp_path / "empty").mkdir() or tmp_path / "empty", 1)
    Image.new("RGB", (20, 20)).save(folder / "3.png")  # another size in the middle
    frames = open_video(folder, 1).frames(fps=None)
    assert [t for _, t in [next(frames), next(frames)]] == [0.0, 1.0]
    with pytest.raises(VideoError, match="frame .*3.png is 20x20 but the folder's first frame is 40x30") as e:
        next(frames)
    assert e.value.stopped_at == 1.0
    (folder / "4.png").write_bytes(b"not a png")
    Image.new("RGB", (40, 30)).save(folder / "3.png")
    with pytest.raises(VideoError, match="cannot read frame 4.png") as e:
        list(open_video(folder, 1).frames(fps=None))
    assert e.value.stopped_at == 2.0
    Image.new("1", (20_000, 20_000)).save(folder / "4.png")  # 50 KB that Pillow refuses to open: 400 M pixels
    with pytest.raises(VideoError, match="cannot read frame 4.png \\(DecompressionBombError\\)") as e:
        list(open_video(folder, 1).frames(fps=None))
    assert e.value.stopped_at == 2.0
    bomb = frame_folder(tmp_path / "g", 1)
    Image.new("1", (20_000, 20_000)).save(bomb / "1.png")  # the first frame, whose size the folder takes
    with pytest.raises(VideoError, match="cannot read frame .*1.png \\(DecompressionBombError\\)"):
        open_video(bomb, 1)


def test_answer_streams_a_frame_folder(tmp_path, capsys):
    from vl3mem.cli import main

    folder = frame_folder(tmp_path / "frames", 8, size=(64, 48), names="img_{:03d}.jpg")
    out = tmp_path / "a.json"
    code = main(["answer", str(folder), "--frame-rate", "2", "-q", "What?", "--at", "2.5", "--model", "tiny",
                 "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    report = __import__("json").loads(out.read_text())
    assert report["duration_s"] == 4.0 and report["frames_encoded"] == 4  # 1 fps over 8 images at 2 per second
    assert report["answers"][0]["frames_seen"] == 3  # 0, 1 and 2 s
    assert main(["answer", str(folder), "-q", "What?", "--model", "tiny", "--quiet"]) == 2
    assert "--frame-rate" in capsys.readouterr().err


@pytest.mark.parametrize("device, ahead, cores, threads", [
    ("cpu", 8, 2, 1),       # decoding ahead on the CPU: one core left to the decoding thread
    ("cpu", 8, 16, 15),
    (None, 8, 1, 1),        # never below one thread
    ("cpu", 0, 2, None),    # decoding in turn: torch's default
    ("cuda", 8, 2, None),   # encoding on a GPU: torch's default
    ("cuda:1", 8, 2, None),
])
def test_encoder_threads_leave_the_decoder_a_core_on_the_cpu(device, ahead, cores, threads):
    assert encoder_threads(device, ahead, cores) == threads


def _every_frame_then_sampled(path, fps, start=0.0):
    """An independent reference: decode every frame with PyAV, then sample with FrameSampler."""
    import av

    from videollama3.video import FrameSampler

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        t0 = float(stream.start_time * time_base)
        sampler = FrameSampler(fps, start)
        return [(round(frame.pts * time_base - t0, 6), frame.to_ndarray(format="rgb24"))
                for frame in container.decode(stream) if sampler.take(frame.pts * time_base - t0)]


@pytest.mark.parametrize("fps, start", [(1.0, 0.0), (2.5, 0.0), (0.7, 1.3), (25.0, 0.0)])
def test_frames_not_sampled_are_not_decoded_and_the_sampled_ones_are_unchanged(videos, fps, start, monkeypatch):
    """Non-reference frames that the sampler cannot take are left undecoded (bikes.mp4 is H.264 with
    B-frames); the frames yielded are bit-identical to decoding everything, at the same times."""
    import videollama3.video as video

    calls = []
    decide = video._UnsampledFrames.__call__
    monkeypatch.setattr(video._UnsampledFrames, "__call__", lambda self, t: calls.append(decide(self, t)) or calls[-1])
    got = list(video.open_video(videos / "bikes.mp4").frames(fps=fps, start=start))
    want = _every_frame_then_sampled(videos / "bikes.mp4", fps, start)
    assert [t for _, t in got] == [t for t, _ in want]
    assert all(np.array_equal(a, b) for (a, _), (_, b) in zip(got, want))
    if fps == 25.0:  # every frame of the 25 fps video is a sample: nothing may be ruled out
        assert calls and not any(calls)
    else:
        assert sum(calls) > 100


def test_unsampled_frames_rule_out_only_later_frames_of_a_period():
    from videollama3.video import _UnsampledFrames

    unneeded = _UnsampledFrames(fps=1.0, start=0.0)
    # decoding order of an IPBB... stream at 4 fps: 0.0, 0.75 (P), 0.25, 0.5 (B), 1.5, 1.0, 1.25, ...
    assert [unneeded(t) for t in (0.0, 0.75, 0.25, 0.5, 1.5, 1.0, 1.25)] == \
        [False, True, True, True, False, False, True]
    assert not unneeded(2.9999999)  # at a period's end: never ruled out


def test_containers_without_an_index_of_presentation_times_decode_every_frame(videos, monkeypatch):
    """vtest.avi (AVI: packets need not carry their frame's presentation time) is decoded whole."""
    import videollama3.video as video

    made = []
    monkeypatch.setattr(video._UnsampledFrames, "__init__", lambda self, *a: made.append(a))
    frames = list(video.open_video(videos / "vtest.avi").frames(fps=1.0, end=3.0))
    assert [t for _, t in frames] == [0.0, 1.0, 2.0, 3.0] and made == []


@pytest.mark.parametrize("skipping, cores, threads", [
    (False, 2, 0),     # FFmpeg's own choice
    (True, 2, 8),      # skipped frames hold frame threads: at least 8
    (True, 12, 13),    # FFmpeg's cores + 1 ...
    (True, 64, 16),    # ... at most 16, as FFmpeg's own
])
def test_decoder_threads(skipping, cores, threads):
    from videollama3.video import decoder_threads

    assert decoder_threads(skipping, cores) == threads


@pytest.mark.parametrize("name, fps, skipping", [("bikes.mp4", 1.0, True), ("bikes.mp4", None, False),
                                                 ("vtest.avi", 1.0, False)])
def test_a_decoder_that_skips_frames_gets_more_threads(videos, monkeypatch, name, fps, skipping):
    import videollama3.video as video

    asked = []
    real = video.decoder_threads
    monkeypatch.setattr(video, "decoder_threads", lambda skipping: asked.append(skipping) or real(skipping, cores=2))
    reader = video.open_video(videos / name)
    stream = reader._container.streams.video[0]
    next(reader.frames(fps=fps))
    assert asked == [skipping]
    if skipping:  # otherwise FFmpeg's own count (cores + 1 on this machine)
        assert stream.codec_context.thread_count == 8


def test_a_picture_stream_before_the_video_is_not_taken_for_it(tmp_path):
    """An MKV whose first video stream is a one-frame picture (cover art, a second camera's still) and
    whose second is the video: every reader takes the video, as FFmpeg's own stream choice does."""
    import av

    from videollama3.live import LiveSource
    from videollama3.video import decode_ahead, open_video

    path = tmp_path / "cover.mkv"
    with av.open(str(path), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 255, np.uint8), format="rgb24")
        for packet in [*cover.encode(picture), *cover.encode(None)]:
            out.mux(packet)
        for i in range(30):  # 3 s at 10 frames/s
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    info = open_video(path).info
    assert (info.width, info.height, info.fps) == (64, 48, 10.0)
    for frames in (iter_frames(path, fps=1), decode_ahead(open_video(path).frames(fps=1), 2),
                   LiveSource(str(path), fps=1, drop=False)):
        got = list(frames)
        assert [t for _, t in got] == [0.0, 1.0, 2.0] and all(f.shape == (48, 64, 3) for f, _ in got)
