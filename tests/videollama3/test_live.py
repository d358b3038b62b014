"""Live sources: drop, never queue; a pipe, a network stream and questions typed while it plays."""

import io
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import pytest

from videollama3.cli import QUESTION_LINE_BYTES, question_lines
from videollama3.errors import VideoError
from videollama3.live import LiveSource, is_live_source
from videollama3.loading import build_session
from videollama3.session import run_stream
from vl3mem.cli import main


@pytest.fixture(scope="module")
def bikes_ts(videos):
    """bikes.mp4 remuxed to MPEG-TS (what ``ffmpeg -i bikes.mp4 -c copy -f mpegts -`` writes)."""
    out_bytes = io.BytesIO()
    with av.open(str(videos / "bikes.mp4")) as src, av.open(out_bytes, "w", format="mpegts") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return out_bytes.getvalue()


def test_live_sources_are_named_by_their_form():
    assert [is_live_source(s) for s in ("-", "rtsp://cam/1", "http://x/a.m3u8", "udp://0:1234", "/dev/video0",
                                        "clip.mp4", "frames/")] == [True] * 5 + [False] * 2


def test_a_slow_encoder_drops_frames_and_never_queues_them(tiny, videos):
    """bikes.mp4 played at its own pace at 4 frames/s to an encoder that needs 0.6 s a frame: the buffer
    never holds more than 2 frames, the frames left behind are counted, and the question at 5 s is
    answered from frames up to 5 s only."""
    source = LiveSource(str(videos / "bikes.mp4"), fps=4, buffer=2, realtime=True)
    held = []
    put = source._put
    source._put = lambda item: (put(item), held.append(len(source._buffer)))
    session = build_session(*tiny)
    session.encode_batch = 1  # as `vl3mem answer` on a live source: frames are not held back for a batch
    push, pushed = session.push_frames, []

    def slow(frames):
        time.sleep(0.6)
        pushed.extend(t for _, t in frames)
        push(frames)

    session.push_frames = slow
    result = run_stream(session, source, [("What?", 5.0)], max_new_tokens=2)
    stats = source.stats
    assert max(held) <= 2 and stats.dropped > 10 and stats.sampled == stats.delivered + stats.dropped
    assert stats.sampled == 40 and stats.delivered == len(pushed) == session.frames_seen
    (answer,) = result.answers.values()
    assert answer.frames_seen == sum(t <= 5.0 for t in pushed) and answer.time <= 5.0
    assert pushed == sorted(pushed)


def test_a_stream_on_standard_input(bikes_ts, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("sys.stdin", type("Stdin", (), {"buffer": io.BytesIO(bikes_ts)})())
    out = tmp_path / "a.json"
    code = main(["answer", "-", "-q", "What moves?", "--at", "3", "-q", "And at 30 s?", "--at", "30", "--model", "tiny",
                 "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    answer, late = report["answers"]
    # the 10 s stream ended before 30 s came: answered from the final memory, and said so
    assert "note" not in answer and late["time"] >= 8.0  # the last frame kept (the newest is never dropped)
    note = f"asked for 30.0s, but the stream ended first (its last frame at {late['time']:.1f}s): answered from the final memory"
    assert late["note"] == note and f"Q: And at 30 s?\n  ({note})" in stdout
    live = report["live"]  # a pipe is read as fast as it comes: what encoding could not keep up with is dropped
    assert live["decoded"] == 250 and live["sampled"] == 10 == report["frames_encoded"] + live["dropped"]
    assert answer["time"] <= 3.0 and answer["frames_seen"] <= 4
    assert f"{report['frames_encoded']} frames seen ({live['dropped']} dropped while encoding was behind" in stdout


class _Stream(BaseHTTPRequestHandler):
    """Serves ``/bikes.ts`` in chunks, a little at a time, as a live MPEG-TS stream over HTTP."""

    payload = b""

    def do_GET(self):  # noqa: N802
        if self.path != "/bikes.ts":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        for i in range(0, len(self.payload), 188 * 64):
            self.wfile.write(self.payload[i:i + 188 * 64])
            time.sleep(0.005)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_stream(bikes_ts):
    _Stream.payload = bikes_ts
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_network_stream_answers_a_question_asked_mid_stream(http_stream, capsys, tmp_path):
    out = tmp_path / "a.json"
    code = main(["answer", f"{http_stream}/bikes.ts", "-q", "What moves?", "--at", "4.5", "--model", "tiny",
                 "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    (answer,) = report["answers"]  # asked once the stream passed 4.5 s, from the frames up to then
    assert answer["asked_at"] == 4.5 and 0 < answer["time"] <= 4.5 and 0 < answer["frames_seen"] <= 5
    assert report["live"]["sampled"] == 10 == report["frames_encoded"] + report["live"]["dropped"]
    code = main(["answer", f"{http_stream}/missing.ts", "-q", "x", "--model", "tiny", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot open" in err and "missing.ts" in err


def test_a_network_source_that_never_sends_is_one_line_naming_the_wait():
    """A UDP port nobody sends to: FFmpeg's open gives up at the timeout with an 'Immediate exit requested',
    which says nothing to a user; the error says what happened and which option sets the wait."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a free port, released for FFmpeg to bind
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(VideoError, match=f"nothing arrived from udp://127.0.0.1:{port} within 0.5 s of opening it; "
                                         "check that it is sending \\(--read-timeout sets how long to wait\\)"):
        LiveSource(f"udp://127.0.0.1:{port}", fps=1, read_timeout=0.5)
    assert time.monotonic() - started < 10


def test_a_source_that_stops_sending_is_one_line(tmp_path, bikes_ts):
    fifo = tmp_path / "stream.ts"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: (f := open(fifo, "wb"), f.write(bikes_ts[: len(bikes_ts) // 3]),
                                              f.flush(), time.sleep(4), f.close()), daemon=True)
    writer.start()
    source = LiveSource(str(fifo), fps=1, read_timeout=1.0)
    frames = []
    with pytest.raises(VideoError, match="sent no frame for 1 s; it stopped sending") as e:
        for _, t in source:
            frames.append(t)
    assert frames and e.value.stopped_at == frames[-1]
    writer.join()


def test_questions_typed_while_the_stream_plays(videos, tmp_path, capsys):
    """--interactive --ask-from a FIFO: a question written 2.5 s into a real-time play of bikes.mp4 is
    answered from the memory at that moment, with its stream time."""
    fifo = tmp_path / "questions"
    os.mkfifo(fifo)

    def type_question():
        with open(fifo, "w") as f:
            time.sleep(2.5)
            f.write("What is moving?\n")
            f.flush()
            time.sleep(0.5)

    threading.Thread(target=type_question, daemon=True).start()
    out = tmp_path / "a.json"
    code = main(["answer", str(videos / "bikes.mp4"), "--interactive", "--ask-from", str(fifo), "--realtime",
                 "--duration", "5", "--model", "tiny", "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    (answer,) = report["answers"]
    assert answer["question"] == "What is moving?" and 1.0 <= answer["time"] <= 4.0
    assert answer["frames_seen"] == int(answer["time"]) + 1  # frames up to its stream time, none after
    assert report["frames_encoded"] == 6  # 0..5 s


def test_question_lines_skip_what_is_not_a_question_and_go_on():
    """A line that is not UTF-8, or longer than QUESTION_LINE_BYTES (read away in pieces, never held whole),
    is skipped with a warning naming it; the lines after it still arrive."""
    long = b"x" * (QUESTION_LINE_BYTES * 3 + 5)
    stream = io.BytesIO(b"What moves?\n\xff\xfe bad\n" + long + b"\n  \n" + b"y" * QUESTION_LINE_BYTES
                        + b"\n\tLast?")
    warnings: list[str] = []
    assert list(question_lines(stream, warnings.append)) == ["What moves?", "y" * QUESTION_LINE_BYTES, "Last?"]
    assert warnings == ["question line 2 is not UTF-8 text (byte 1); skipped",
                        f"question line 3 is longer than {QUESTION_LINE_BYTES} bytes; skipped"]


def test_a_bad_question_line_is_skipped_and_late_lines_are_answered_at_the_end(videos, tmp_path, capsys):
    """--ask-from a file: a non-UTF-8 line is a warning, the questions around it are answered (those read after
    the last frame from the final memory); a missing --ask-from is one line, before the model loads."""
    questions = tmp_path / "questions.txt"
    questions.write_bytes(b"What is moving?\nok \xff\nWhich colour?\n")
    out = tmp_path / "a.json"
    code = main(["answer", str(videos / "bikes.mp4"), "--interactive", "--ask-from", str(questions),
                 "--model", "tiny", "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and "vl3mem: warning: question line 2 is not UTF-8 text (byte 4); skipped" in err, err
    assert [a["question"] for a in json.loads(out.read_text())["answers"]] == ["What is moving?", "Which colour?"]
    assert main(["answer", str(videos / "bikes.mp4"), "--interactive", "--ask-from", str(tmp_path / "nope"),
                 "--model", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"vl3mem: error: cannot read --ask-from {tmp_path / 'nope'} (No such file or directory); "
                    "give a file or a FIFO")]


def test_ctrl_c_ends_a_live_run_with_its_summary(videos, tmp_path):
    """A question typed while vtest.avi (79 s) plays is answered; then Ctrl-C ends the run with its summary, exit 0."""
    import signal
    import subprocess
    import sys

    fifo, out = tmp_path / "questions", tmp_path / "a.json"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "vl3mem", "answer", str(videos / "vtest.avi"), "--realtime",
                             "--interactive", "--ask-from", str(fifo), "--model", "tiny", "--max-new-tokens", "2",
                             "--quiet", "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
                            # a run started in the background inherits SIGINT ignored: give the child Ctrl-C back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with open(fifo, "w") as questions:  # opens once the run reads it: the model is loaded
        questions.write("What is moving?\n")
        questions.flush()
        line = proc.stdout.readline()
        while line and "Q: What is moving?" not in line:
            line = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "(interrupted)" in stdout and "1 questions answered" in stdout
    report = json.loads(out.read_text())
    assert 0 < report["frames_encoded"] < 79 and report["answers"][0]["question"] == "What is moving?"


@pytest.mark.parametrize("data, hint", [("mp4 head", True), ("noise", False)])
def test_an_mp4_on_standard_input_without_its_index_says_how_to_stream_it(videos, monkeypatch, data, hint):
    """trailer_bbb.mp4 keeps its index (moov) at the end, out of a pipe's reach: the error says to remux it
    (fragmented MP4 or MPEG-TS) or pass the path; bytes that are no MP4 get no such advice. The noise is
    seeded: about 1 in 100 random payloads passes one of FFmpeg's format probes (it then opens, or finds
    no video stream)."""
    payload = (videos / "trailer_bbb.mp4").read_bytes()[:2_000_000] if data == "mp4 head" \
        else random.Random(0).randbytes(100_000)
    monkeypatch.setattr("sys.stdin", type("Stdin", (), {"buffer": io.BufferedReader(io.BytesIO(payload))})())
    with pytest.raises(VideoError, match="cannot open standard input") as e:
        LiveSource("-")
    assert ("needs its index first" in str(e.value)) == hint and ("-f mpegts" in str(e.value)) == hint


def test_a_frame_folder_plays_live_at_its_frame_rate(tmp_path, capsys):
    """``--realtime`` / ``--interactive`` on a folder of numbered images: read at its own pace, only the
    sampled images; without ``--frame-rate`` one line before a model loads."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(8):  # 4 frames/s: 0 ... 1.75 s, each a shade darker
        Image.fromarray(np.full((28, 28, 3), 200 - 20 * i, np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "a.json"
    started = time.monotonic()
    code = main(["answer", str(folder), "--frame-rate", "4", "--fps", "2", "--realtime", "-q", "What now?", "--at", "1",
                 "--model", "tiny", "--max-new-tokens", "2", "--quiet", "--output", str(out)])
    assert code == 0 and time.monotonic() - started >= 1.5  # played at its pace: 1.5 s to its last sample
    report = json.loads(out.read_text())
    (answer,) = report["answers"]
    assert (answer["time"], answer["frames_seen"], answer["tiers"]["short"]) == (1.0, 3, [0.0, 0.5, 1.0])
    assert report["live"] == {"decoded": 4, "sampled": 4, "dropped": 0, "delivered": 4}  # no other image read
    capsys.readouterr()
    assert main(["answer", str(folder), "--realtime", "-q", "x", "--model", "tiny"]) == 2
    assert capsys.readouterr().err.strip() == (f"vl3mem: error: {folder} is a frame folder; give the frame rate its "
                                               "images were taken at (--frame-rate)")
