"""Decoding ahead by closed GOPs (videollama3/gop.py): the same frames as one decoder, in order."""

import threading

import av
import numpy as np
import pytest

from videollama3 import gop
from videollama3.errors import VideoError
from videollama3.sampling import FrameSampler, GopCandidates
from videollama3.video import decode_ahead, open_video

from .test_video import encode

GOP_WORKERS = gop.gop_workers  # before the fixture below replaces it


def encode_gops(path, codec="libx264", params="", frames=90, fps=30, w=128, h=96, faststart=False):
    """A video of a moving gradient (so B-frames refer to their neighbours), one keyframe every 12 frames."""
    key = "x265-params" if codec == "libx265" else "x264-params"
    options = {key: "keyint=12:min-keyint=12:bframes=3:scenecut=0" + (":" + params if params else "")}
    if codec == "libx265":
        options = {key: options[key] + ":log-level=none", "preset": "ultrafast"}
    y, x = np.mgrid[0:h, 0:w]

    def gradient(i):
        return np.stack([(x * 2 + i * 3) % 256, (y * 2 + i) % 256, (x + y + i * 5) % 256], -1).astype(np.uint8)

    return encode(path, frames, fps, options={"movflags": "faststart"} if faststart else None, w=w, h=h, codec=codec,
                  codec_options=options, image=gradient)


def decode_both(path, **sampling):
    """(frames decoded in turn, frames decoded ahead by GOPs, GOPs decoded with their decoder threads)."""
    gops = []
    real = gop._decode_gop

    def counting(g, *args):
        gops.append(g.threads)
        return real(g, *args)

    in_turn = list(open_video(path).frames(**sampling))
    gop._decode_gop = counting
    try:
        ahead = list(decode_ahead(open_video(path).frames(**sampling), depth=4))
    finally:
        gop._decode_gop = real
    return in_turn, ahead, gops


def assert_same(in_turn, ahead):
    assert [t for _, t in ahead] == [t for _, t in in_turn]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(ahead, in_turn))


@pytest.fixture(autouse=True)
def two_decoders(monkeypatch):
    """The GOP path on every machine, one core or many."""
    monkeypatch.setattr(gop, "gop_workers", lambda cores=None: 2)


@pytest.mark.parametrize("name, sampling", [
    ("trailer_bbb.mp4", {"fps": 1.0}),
    ("trailer_bbb.mp4", {"fps": 2.0, "start": 1.3, "end": 20.5}),
    ("bikes.mp4", {"fps": 0.7}),
    ("bikes.mp4", {"fps": 2.5, "start": 0.5, "end": 7.0}),
])
def test_the_shared_videos_decode_by_gops_to_the_same_frames(videos, name, sampling):
    in_turn, ahead, gops = decode_both(videos / name, **sampling)
    assert_same(in_turn, ahead)
    assert len(gops) > 1 and set(gops) == {1}  # several GOPs, each single-threaded


@pytest.mark.parametrize("codec, params, cut", [
    ("libx264", "", True),                         # an IDR picture every 12 frames: 8 GOPs
    ("libx264", "b-pyramid=normal:ref=4", True),   # B-frames that others refer to
    ("libx264", "open-gop=1", False),              # keyframes that are not IDR: one GOP, never cut
    ("libx265", "", True),                         # HEVC's default keyframes are CRA (open) ...
    ("libx265", "open-gop=0", True),               # ... closed: IDR_W_RADL
])
@pytest.mark.parametrize("sampling", [{"fps": 2.0}, {"fps": 3.0, "start": 0.25, "end": 2.2}])
def test_gops_are_cut_only_at_idr_pictures_and_decode_to_the_same_frames(tmp_path, codec, params, cut, sampling):
    if codec not in av.codecs_available:
        pytest.fail(f"PyAV's FFmpeg lacks {codec}")
    path = encode_gops(tmp_path / "gops.mp4", codec, params)
    in_turn, ahead, gops = decode_both(path, **sampling)
    assert_same(in_turn, ahead)
    assert len(in_turn) == 6
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        closed = gop.ClosedGops(stream.codec_context.name, stream.codec_context.extradata)
        cuts = sum(closed(p) for p in container.demux(stream) if p.size)
    if codec == "libx265" and not params:
        assert cuts == 1  # only the first picture is an IDR
    else:
        assert (cuts == 8) if cut else (cuts == 1)
    if "end" not in sampling:
        assert len(gops) == cuts


def test_a_gop_longer_than_the_lookahead_is_streamed_to_a_decoder_with_frame_threads(videos, monkeypatch):
    monkeypatch.setattr(gop, "LOOKAHEAD_PACKETS", 40)
    in_turn, ahead, gops = decode_both(videos / "trailer_bbb.mp4", fps=1.0)
    assert_same(in_turn, ahead)
    assert 1 in gops and any(threads > 1 for threads in gops)  # GOPs of 36 frames held, of 250 streamed


def test_a_truncated_file_fails_where_decoding_in_turn_fails(tmp_path):
    full = encode_gops(tmp_path / "full.mp4", frames=300, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.4)])
    errors, times = [], []
    for frames in (open_video(cut).frames(fps=2.0), decode_ahead(open_video(cut).frames(fps=2.0), depth=4)):
        got = []
        with pytest.raises(VideoError) as e:
            for _, t in frames:
                got.append(t)
        errors.append(str(e.value))
        times.append((got, e.value.stopped_at))
    # FFmpeg's frame threads (in turn) and a single-threaded decoder (a GOP) may get a frame more or less out
    # of the damaged last packet; both drop it and go on, and the file ends early
    assert all(e.startswith(f"decoding {cut} ended at 3.") and e.endswith("of a 10.00s video (the file is truncated)")
               for e in errors)
    (in_turn, stopped_in_turn), (ahead, stopped_ahead) = times
    assert ahead[: len(in_turn)] == in_turn and len(ahead) - len(in_turn) <= 1
    assert abs(stopped_in_turn - stopped_ahead) < 0.1


def test_leaving_early_stops_every_thread_and_closes_the_file(videos, monkeypatch):
    from videollama3.video import VideoReader

    closed = []
    close = VideoReader.close
    monkeypatch.setattr(VideoReader, "close", lambda self: closed.append(self.path) or close(self))
    before = set(threading.enumerate())
    frames = open_video(videos / "trailer_bbb.mp4").frames(fps=1.0)
    ahead = decode_ahead(frames, depth=4)
    assert [t for _, t in (next(ahead), next(ahead))] == [0.0, 1.0]
    assert any(t.name.startswith("vl3mem-gop") for t in threading.enumerate())
    ahead.close()
    assert set(threading.enumerate()) <= before
    assert closed == [str(videos / "trailer_bbb.mp4")] * len(closed) and closed


def test_an_avi_or_every_frame_sampled_is_decoded_in_turn(videos):
    assert open_video(videos / "vtest.avi").frames(fps=1.0).ahead(4) is None  # no index of presentation times
    assert open_video(videos / "bikes.mp4").frames(fps=25.0).ahead(4) is None  # every frame: GOPs would wait
    assert open_video(videos / "bikes.mp4").frames(fps=None).ahead(4) is None
    started = open_video(videos / "bikes.mp4").frames(fps=1.0)
    next(started)
    assert started.ahead(4) is None  # already decoding in turn


@pytest.mark.parametrize("fps", [0.3, 1.0, 2.5, 7.0, 30000 / 1001])
@pytest.mark.parametrize("start", [0.0, 0.37])
def test_the_sampler_takes_the_same_frames_from_what_each_gop_lets_through(fps, start):
    """Times on sample boundaries (k / fps, and 1e-6 s either side) and at random, cut into random GOPs:
    running the sampler over the frames each GOP lets through takes exactly what it takes from all."""
    rng = np.random.default_rng(int(fps * 1000) + int(start * 100))
    for _ in range(50):
        boundaries = start + np.arange(0, 30) / fps
        times = np.concatenate([boundaries, boundaries + 1e-6, boundaries - 1e-6, boundaries + 5e-7,
                                boundaries - 1.5e-6, boundaries - 3e-6,
                                rng.uniform(0, 30 / fps, 40)])
        times = np.unique(np.clip(times, 0, None)).tolist()
        times = sorted(rng.choice(times, size=rng.integers(5, len(times)), replace=False).tolist())
        cuts = sorted(rng.choice(len(times), size=rng.integers(0, min(8, len(times))), replace=False).tolist())
        let_through, candidates = [], GopCandidates(fps, start)
        for i, t in enumerate(times):
            if i in cuts:
                candidates = GopCandidates(fps, start)
            if candidates(t):
                let_through.append(t)
        every, some = FrameSampler(fps, start), FrameSampler(fps, start)
        assert [t for t in times if every.take(t)] == [t for t in let_through if some.take(t)]


def test_a_gop_lets_through_one_frame_per_sample_and_its_first_frame():
    """24 fps sampled at 1 fps, GOPs of 50 frames: exactly the sampled frames, and each GOP's first frame."""
    times = [i / 24 for i in range(300)]
    sampler, through = FrameSampler(1.0), []
    for first in range(0, 300, 50):
        candidates = GopCandidates(1.0)
        through += [t for t in times[first: first + 50] if candidates(t)]
    sampled = [t for t in times if sampler.take(t)]
    assert through == sorted(set(sampled) | {times[first] for first in range(0, 300, 50)})
    assert len(sampled) == 13 and len(through) == 18  # 5 GOPs start between samples


def test_a_gop_starting_just_before_a_sample_keeps_both_states_of_the_sampler():
    """At 0.5 fps a frame 1.5e-6 s before the sample at 2 s counts in its period but is not taken: the
    sampler before it may have taken a frame in that period (then the next sample is at 4 s) or not
    (then it takes the next frame); each GOP lets through what the stream's sampler takes."""
    for times in ([1.0, 2 - 1.5e-6, 2.5, 4.0], [2 - 1.5e-6, 2.5, 4.0]):
        candidates = GopCandidates(0.5)
        through = [t for t in times[-3:] if candidates(t)]
        sampler = FrameSampler(0.5)
        assert [t for t in times if sampler.take(t)][-2:] == [2.5, 4.0] if len(times) == 4 else [2.5]
        assert through == [2 - 1.5e-6, 2.5, 4.0]


def test_a_gop_stops_decoding_once_its_last_sampled_frame_and_those_before_it_are_shown():
    # decoding order of I P B b ... at 4 frames a second, sampled at 1 fps: the last candidate is at 1.0 s
    trim = gop._Trim([0.0, 0.5, 0.25, 1.0, 0.75, 1.5, 1.25], [False] * 7, 1.0, 0.0)
    assert (trim.last, trim.waiting, trim.end_time) == (1.0, {0.0, 0.25, 0.5, 0.75, 1.0}, 1.5)
    for t in (0.0, 0.25, 0.5, 0.75):
        trim.shown(t)
        assert not trim.done()
    trim.shown(1.0)
    assert trim.done()
    trim.shown(1.1)  # a frame at a time no packet has: decode to the end after all
    assert not trim.done()
    ruled_out = gop._Trim([0.0, 0.5, 0.25, 1.0, 0.75], [False, False, True, False, True], 1.0, 0.0)
    assert ruled_out.waiting == {0.0, 0.5, 1.0}  # a frame never sampled is not waited for
    assert gop._Trim([0.0, 0.5, 0.25], [False] * 3, 1.0, 2.0).done()  # before the first sample: nothing to decode

    class Packet:
        def __init__(self, pts):
            self.pts = pts

    assert gop._Trim.of([], 0.5, 0.0, 1.0, 0.0) is None
    assert gop._Trim.of([(Packet(0), False), (Packet(None), False)], 0.5, 0.0, 1.0, 0.0) is None
    assert gop._Trim.of([(Packet(0), False), (Packet(0), False)], 0.5, 0.0, 1.0, 0.0) is None
    assert gop._Trim.of([(Packet(0), False), (Packet(3), False)], 0.5, 0.0, 1.0, 0.0).waiting == {0.0, 1.5}


def test_the_gops_of_a_file_stop_decoding_after_their_last_sampled_frame(videos, monkeypatch):
    shown, trims = [], []
    real_of, real_shown = gop._Trim.of.__func__, gop._Trim.shown
    monkeypatch.setattr(gop._Trim, "of", classmethod(lambda cls, *a: trims.append(real_of(cls, *a)) or trims[-1]))
    monkeypatch.setattr(gop._Trim, "shown", lambda self, t: shown.append((id(self), t)) or real_shown(self, t))
    in_turn, ahead, _ = decode_both(videos / "trailer_bbb.mp4", fps=1.0)
    assert_same(in_turn, ahead)
    assert len(trims) == 10  # 11 GOPs: the last is decoded to its end
    for trim in trims:
        last_shown = max(t for key, t in shown if key == id(trim))
        assert trim.done() and trim.last <= last_shown < trim.last + 0.5
    left = [trim.end_time - max(t for key, t in shown if key == id(trim)) for trim in trims]
    assert sum(s > 0.2 for s in left) >= 5  # frames after the last sample, not decoded


def test_nal_units_are_read_length_prefixed_or_after_start_codes():
    avcc = b"\x00\x00\x00\x02\x06\x05" + b"\x00\x00\x00\x03\x65\x88\x84"
    assert gop.nal_headers(avcc, 4) == [0x06, 0x65]
    assert gop.nal_headers(b"\x00\x02\x41\x9a" + b"\x00\x09\x01", 2) == [0x41]  # a length past the end stops
    assert gop.nal_headers(b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88", None) == \
        [0x67, 0x68, 0x65]
    assert gop.nal_length_size("h264", b"\x01\x64\x00\x1f\xff\xe1") == 4
    assert gop.nal_length_size("h264", b"\x01\x64\x00\x1f\xfd\xe1") == 2
    assert gop.nal_length_size("hevc", bytes([1] + [0] * 20 + [0x0F, 1])) == 4
    assert gop.nal_length_size("h264", b"\x00\x00\x00\x01\x67") is None and gop.nal_length_size("h264", None) is None


def packet(data, key):
    p = av.Packet(data)
    p.is_keyframe = key
    return p


def test_an_idr_packet_starts_a_closed_gop_unless_it_needs_parameter_sets_sent_before_it():
    idr, p_slice = b"\x00\x00\x00\x02\x65\x88", b"\x00\x00\x00\x02\x41\x9a"
    sets = b"\x00\x00\x00\x02\x67\x64" + b"\x00\x00\x00\x02\x68\xee"
    closed = gop.ClosedGops("h264", b"\x01\x64\x00\x1f\xff\xe1")
    assert [closed(packet(d, k)) for d, k in [(idr, True), (p_slice, False), (idr, False), (idr, True)]] == \
        [True, False, False, True]  # a keyframe holding an IDR slice; not one without the keyframe flag
    in_band = gop.ClosedGops("h264", b"\x01\x64\x00\x1f\xff\xe1")
    assert [in_band(packet(d, k)) for d, k in [(sets + idr, True), (p_slice, False), (idr, True),
                                                 (sets + idr, True)]] == [True, False, False, True]
    hevc = gop.ClosedGops("hevc", bytes([1] + [0] * 20 + [0x0F, 1]))
    nal = lambda t: b"\x00\x00\x00\x02" + bytes([t << 1, 1])
    assert [hevc(packet(nal(t), True)) for t in (19, 20, 21, 1)] == [True, True, False, False]
    assert not gop.ClosedGops("vp9", None)(packet(idr, True))


def test_gop_workers_is_one_per_core_up_to_eight():
    assert [GOP_WORKERS(cores) for cores in (1, 2, 3, 8, 16)] == [1, 2, 3, 8, 8]
