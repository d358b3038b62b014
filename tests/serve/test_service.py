"""The HTTP service: sessions with separate memories, pushed frames, limits with 4xx, saved memories."""

import io
import json
import re
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serve.app import create_app
from serve.sessions import Limits, SessionManager
from videollama3.errors import UsageError
from videollama3.loading import build_session

from .conftest import live_service


@pytest.fixture
def manager(tiny, videos, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for name in ("bikes.mp4", "vtest.avi"):
        (media / name).write_bytes((videos / name).read_bytes())
    (tmp_path / "secret.mp4").write_bytes(b"outside")
    (media / "link.mp4").symlink_to(tmp_path / "secret.mp4")  # a link out of the media root
    base = build_session(*tiny, "hierarchical")
    manager = SessionManager(base, "hierarchical", {}, media, Limits(max_sessions=3, max_upload_bytes=3_000_000,
                                                                      max_frame_bytes=100_000,
                                                                      max_frame_pixels=640 * 480, max_question_chars=50))
    yield manager
    manager.close_all()


@pytest.fixture
def client(manager):
    return TestClient(create_app(manager))


def jpeg(value, size=(64, 48), fmt="JPEG"):
    out = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 30)).save(out, fmt)
    return out.getvalue()


def wait_ended(client, session_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/sessions/{session_id}").json()
        if not state["playing"]:
            return state
        time.sleep(0.1)
    raise AssertionError("the stream did not end")


def test_two_sessions_on_two_videos_keep_separate_memories(client):
    a = client.post("/api/sessions", json={"source": "bikes.mp4", "realtime": False}).json()
    b = client.post("/api/sessions", json={"source": "vtest.avi", "realtime": False}).json()
    assert a["id"] != b["id"] and client.get("/api/samples").json() == {"samples": ["bikes.mp4", "link.mp4", "vtest.avi"]}
    a, b = wait_ended(client, a["id"]), wait_ended(client, b["id"])
    assert (a["frames_seen"], a["time"]) == (10, 9.0)  # bikes.mp4: 10 s at 1 fps
    assert b["frames_seen"] > 60 and b["time"] > 60  # vtest.avi: 79 s
    answer = client.post(f"/api/sessions/{a['id']}/questions", json={"question": "What moves?", "max_new_tokens": 2})
    assert answer.status_code == 200 and answer.json()["time"] == 9.0 and answer.json()["frames_seen"] == 10
    held = [t for times in answer.json()["memory"].values() for item in times
            for t in (item if isinstance(item, list) else [item])]
    assert max(held) <= 9.0  # nothing of the other session's 79 s
    assert client.delete(f"/api/sessions/{a['id']}").json() == {"closed": a["id"]}
    assert client.get(f"/api/sessions/{a['id']}").status_code == 404
    with client.stream("GET", f"/api/sessions/{b['id']}/events") as events:  # every frame's status, as it came
        times = []
        for line in events.iter_lines():
            if line.startswith("data: "):
                times.append(json.loads(line[6:])["time"])
            if len(times) == b["frames_seen"]:
                break
    assert times == sorted(times) and times[-1] == b["time"]


def test_pushed_frames_and_a_saved_memory_restored_answers_the_same(client):
    first = client.post("/api/sessions", json={"source": None}).json()["id"]
    for i in range(6):
        r = client.post(f"/api/sessions/{first}/frames", params={"t": i * 0.5}, content=jpeg(i * 40),
                        headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
    assert r.json()["frames_seen"] == 6 and r.json()["time"] == 2.5
    png = client.post(f"/api/sessions/{first}/frames", content=jpeg(9, fmt="PNG")).json()  # t: one second on
    assert png["time"] == 3.5
    asked = {"question": "What changed?", "max_new_tokens": 3}
    before = client.post(f"/api/sessions/{first}/questions", json=asked).json()
    saved = client.get(f"/api/sessions/{first}/memory").content
    second = client.post("/api/sessions", json={}).json()["id"]
    restored = client.put(f"/api/sessions/{second}/memory", content=saved)
    assert restored.status_code == 200 and restored.json()["tiers"] == client.get(f"/api/sessions/{first}").json()["tiers"]
    after = client.post(f"/api/sessions/{second}/questions", json=asked).json()
    assert (after["answer"], after["time"], after["memory"]) == (before["answer"], before["time"], before["memory"])


@pytest.mark.parametrize("method, path, kwargs, status, detail", [
    ("post", "/api/sessions", {"json": {"source": "../secret.mp4"}}, 403, "outside the media root"),
    ("post", "/api/sessions", {"json": {"source": "/etc/passwd"}}, 403, "outside the media root"),
    ("post", "/api/sessions", {"json": {"source": "link.mp4"}}, 403, "outside the media root"),
    ("post", "/api/sessions", {"json": {"source": "file:///etc/passwd"}}, 403, "not a file under the media root"),
    ("post", "/api/sessions", {"json": {"source": "/dev/video0"}}, 403, "not a file under the media root"),
    ("post", "/api/sessions", {"json": {"source": "nothing.mp4"}}, 404, "no file 'nothing.mp4'"),
    ("post", "/api/sessions", {"json": {"source": "bikes.mp4", "fps": 0}}, 422, "fps must be"),
    ("get", "/api/sessions/nope", {}, 404, "no session 'nope'"),
    ("post", "/api/sessions/nope/questions", {"json": {"question": "x"}}, 404, "no session 'nope'"),
    ("delete", "/api/sessions/nope", {}, 404, "no session 'nope'"),
    # malformed requests: one line, as every refusal, not FastAPI's list of error objects
    ("post", "/api/sessions", {"json": {"fps": "abc"}}, 422,
     "body field 'fps': Input should be a valid number, unable to parse string as a number (got 'abc')"),
    ("post", "/api/sessions", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     "the body is not valid JSON"),
    ("post", "/api/sessions/nope/questions", {"json": {}}, 422, "body field 'question': Field required"),
    # a field the request does not have: refused, not ignored ({"src": ...} would open a pushed-frames session)
    ("post", "/api/sessions", {"json": {"src": "bikes.mp4"}}, 422,
     "body field 'src': Extra inputs are not permitted (got 'bikes.mp4')"),
    ("post", "/api/sessions/nope/questions", {"json": {"question": "What?", "max_tokens": 8}}, 422,
     "body field 'max_tokens': Extra inputs are not permitted (got 8)"),
    ("get", "/api/sessions/nope/events?since=-1", {}, 422,
     "query parameter 'since': Input should be greater than or equal to 0 (got '-1')"),
])
def test_bad_requests_are_4xx_with_a_reason(client, method, path, kwargs, status, detail):
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status and isinstance(r.json()["detail"], str) and detail in r.json()["detail"]


def test_quiet_event_streams_hold_no_worker_thread(manager):
    """60 clients on the events of a session nobody feeds yet, more than the service's 40 worker threads: the
    service still answers other requests at once, each client gets the next frame's status as it comes,
    then ``closed``, and its stream ends."""
    import threading

    import httpx

    with live_service(manager) as url:
        session_id = httpx.post(f"{url}/api/sessions", json={"source": None}).json()["id"]
        received: list[list[str]] = [[] for _ in range(60)]

        def listen(events: list[str]) -> None:
            with httpx.stream("GET", f"{url}/api/sessions/{session_id}/events", timeout=60) as stream:
                events += [line[len("event: "):] for line in stream.iter_lines() if line.startswith("event: ")]

        clients = [threading.Thread(target=listen, args=(events,), daemon=True) for events in received]
        for client in clients:
            client.start()
        served, deadline = manager.get(session_id), time.monotonic() + 30
        while served.listeners < len(clients) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.listeners == len(clients)
        assert httpx.get(f"{url}/api/samples", timeout=5).status_code == 200  # stalled 15 s a round before
        pushed = httpx.post(f"{url}/api/sessions/{session_id}/frames", params={"t": 0.0}, content=jpeg(80), timeout=30)
        assert pushed.status_code == 200
        assert httpx.delete(f"{url}/api/sessions/{session_id}", timeout=5).status_code == 200
        for client in clients:
            client.join(30)
        assert not any(client.is_alive() for client in clients)
        assert received == [["status", "closed"]] * len(clients) and served.listeners == 0


def _saved(state) -> bytes:
    import torch

    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def bomb() -> bytes:
    """A 50 KB PNG of 20,000 x 20,000 pixels: Pillow refuses to open it (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(out, format="PNG")
    return out.getvalue()


def test_a_session_keeps_its_latest_events_only_and_numbers_them_over_its_life(tiny, tmp_path):
    """A status follows each frame: a session streaming for days would hold every one of them. It keeps the
    latest ``max_events``; a client asking from an event already dropped starts at the oldest kept, and the
    number it is told to ask from next counts every event of the session."""
    import asyncio

    import httpx

    manager = SessionManager(build_session(*tiny, "hierarchical"), "hierarchical", {}, tmp_path, Limits(max_events=5))
    try:
        with live_service(manager) as url:
            session_id = httpx.post(f"{url}/api/sessions", json={}).json()["id"]
            for i in range(8):
                assert httpx.post(f"{url}/api/sessions/{session_id}/frames", params={"t": i}, content=jpeg(i * 30),
                                  timeout=30).status_code == 200
            served = manager.get(session_id)
            assert (len(served.events), served.first_event) == (5, 3)
            assert [e["frames_seen"] for e in served.events] == [4, 5, 6, 7, 8]
            new, after = asyncio.run(served.next_events(0, timeout=1))
            assert ([e["frames_seen"] for e in new], after) == ([4, 5, 6, 7, 8], 8)
            new, after = asyncio.run(served.next_events(6, timeout=1))
            assert ([e["frames_seen"] for e in new], after) == ([7, 8], 8)
            assert asyncio.run(served.next_events(8, timeout=0.05)) == ([], 8)

            def received(count: int, **options) -> list[tuple[int, int]]:
                """(SSE id, frames_seen) of the first ``count`` events of a stream (it goes on: then leave)."""
                got, number = [], None
                with httpx.stream("GET", f"{url}/api/sessions/{session_id}/events", timeout=30, **options) as r:
                    for line in r.iter_lines():
                        if line.startswith("id: "):
                            number = int(line[len("id: "):])
                        elif line.startswith("data: "):
                            got.append((number, json.loads(line[len("data: "):])["frames_seen"]))
                            if len(got) == count:
                                return got
                return got

            assert received(2, params={"since": 6}) == [(6, 7), (7, 8)]
            assert received(1, headers={"Last-Event-ID": "6"}) == [(7, 8)]  # an EventSource reconnecting
            assert received(5) == [(3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]  # from 0: the oldest kept first
            for i in range(8, 2000):  # a long stream: the session holds 5 events, whatever its length
                served.emit("status", frames_seen=i + 1)
            assert (len(served.events), served.first_event) == (5, 1995)
    finally:
        manager.close_all()


def test_limits_are_4xx_with_a_reason(client, manager, tmp_path):
    pushed = client.post("/api/sessions", json={}).json()["id"]
    cases = [
        (client.post(f"/api/sessions/{pushed}/questions", json={"question": "x"}), 409, "no frame yet"),
        (client.post(f"/api/sessions/{pushed}/frames", content=b"not an image"), 422, "not a JPEG or PNG"),
        (client.post(f"/api/sessions/{pushed}/frames", content=jpeg(1, size=(800, 600))), 413, "pixels"),
        (client.post(f"/api/sessions/{pushed}/frames", content=bomb()), 413,
         f"a frame of over {2 * Image.MAX_IMAGE_PIXELS} pixels is over the limit of 307200 pixels"),
        (client.post(f"/api/sessions/{pushed}/frames", content=b"x" * 100_001), 413, "over the limit of 100000"),
    ]
    client.post(f"/api/sessions/{pushed}/frames", params={"t": 5}, content=jpeg(1))
    cases += [
        (client.post(f"/api/sessions/{pushed}/frames", params={"t": 4}, content=jpeg(1)), 422, "before the last frame"),
        (client.post(f"/api/sessions/{pushed}/questions", json={"question": "x" * 51}), 422, "over the limit of 50"),
        (client.post(f"/api/sessions/{pushed}/questions", json={"question": "  "}), 422, "empty"),
        (client.post(f"/api/sessions/{pushed}/questions", json={"question": "a <|video_pad|>"}), 422, "special token"),
        (client.put(f"/api/sessions/{pushed}/memory", content=b"garbage"), 422, "not a memory file saved by GET"),
        (client.put(f"/api/sessions/{pushed}/memory", content=_saved({"format": "memory_bank.fifo/1"})), 422,
         "not a saved memory of this service's backend"),
        (client.post("/api/sessions/upload", files={"file": ("big.mp4", b"0" * 3_000_001)}), 413, "over the limit"),
        (client.post("/api/sessions/upload", files={"file": ("x.mp4", b"not a video")}), 422, "cannot open"),
    ]
    playing = client.post("/api/sessions", json={"source": "bikes.mp4"}).json()["id"]
    cases.append((client.post(f"/api/sessions/{playing}/frames", content=jpeg(1)), 409, "reads bikes.mp4"))
    client.post("/api/sessions", json={})
    cases.append((client.post("/api/sessions", json={}), 429, "3 sessions are open"))
    for response, status, detail in cases:
        assert (response.status_code, detail in response.json()["detail"]) == (status, True), response.text
    assert not list((manager.media_root / "uploads").iterdir())  # refused uploads are not kept


def test_an_uploaded_video_plays_in_its_session(client, videos):
    state = client.post("/api/sessions/upload", files={"file": ("clip.mp4", (videos / "bikes.mp4").read_bytes())},
                        params={"fps": 2}).json()
    assert state["source"].startswith("uploads/") and state["source"].endswith(".mp4")
    assert client.get(f"/media/{state['source']}").status_code == 200  # the page plays it from there
    assert client.get("/docs").status_code == 200 and "/api/sessions" in client.get("/openapi.json").text
    # the stored name is ours: the client's gives only an extension of letters and digits, else .mp4
    for name, suffix in (("CLIP.MKV", ".mkv"), ("a.\u202emp4", ".mp4"), ("a.mp4#?", ".mp4"), ("noext", ".mp4")):
        state = client.post("/api/sessions/upload", files={"file": (name, (videos / "bikes.mp4").read_bytes())}).json()
        assert re.fullmatch(r"uploads/[0-9a-f]{32}" + re.escape(suffix), state["source"]), (name, state)
        client.delete(f"/api/sessions/{state['id']}")


def test_serve_refuses_a_media_root_that_is_not_a_folder(tmp_path, capsys):
    from vl3mem.cli import main

    assert main(["serve", "--media-root", str(tmp_path / "none"), "--model", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--media-root" in err and "is not a folder" in err


def test_serve_takes_torch_threads_and_refuses_fewer_than_one(tmp_path, capsys):
    import argparse

    import torch

    from serve.cli import add_command, build_manager

    sub = argparse.ArgumentParser().add_subparsers()
    add_command(sub)
    parser = sub.choices["serve"]
    with pytest.raises(UsageError, match="--torch-threads must be a number of threads >= 1, got 0"):
        build_manager(parser.parse_args(["--media-root", str(tmp_path), "--model", "tiny", "--torch-threads", "0"]))
    own = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        build_manager(parser.parse_args(["--media-root", str(tmp_path), "--model", "tiny"]))
        assert torch.get_num_threads() == 2  # torch's own count unless asked
        build_manager(parser.parse_args(["--media-root", str(tmp_path), "--model", "tiny", "--torch-threads", "1"]))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(own)


def test_serve_refuses_a_device_there_is_not_before_loading(tmp_path, capsys):
    from vl3mem.cli import main

    assert main(["serve", "--media-root", str(tmp_path), "--model", "tiny", "--device", "gpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "vl3mem: error: --device 'gpu' is not a torch device; use cpu, cuda or cuda:N"]


def test_pushed_frames_the_model_cannot_take_are_422_and_change_nothing(client):
    """Not-finite or negative times and a frame of aspect ratio over 200 were 500s; now each is a 422 with the
    reason, the session unchanged, and the next good frame is taken."""
    sid = client.post("/api/sessions", json={}).json()["id"]
    for t, body, detail in [("nan", jpeg(10), "not a finite number"), ("inf", jpeg(10), "not a finite number"),
                            ("-1", jpeg(10), "not a finite number"), ("0", jpeg(10, size=(400, 1), fmt="PNG"),
                                                                     "aspect ratio")]:
        r = client.post(f"/api/sessions/{sid}/frames?t={t}", content=body)
        assert r.status_code == 422 and detail in r.json()["detail"], (t, r.text)
        assert client.get(f"/api/sessions/{sid}").json()["frames_seen"] == 0
    r = client.post(f"/api/sessions/{sid}/frames?t=0.5", content=jpeg(10))
    assert r.status_code == 200 and r.json()["frames_seen"] == 1 and r.json()["time"] == 0.5


def test_a_second_request_while_the_first_waits_for_the_model_is_429_and_the_first_goes_through(manager):
    """While another session has the model, a session's second frame (or question) before its first is
    answered is refused at once, not queued on a worker thread; the first is then taken, and the next one
    after it is too."""
    import threading

    import httpx

    with live_service(manager) as url:
        session_id = httpx.post(f"{url}/api/sessions", json={"source": None}).json()["id"]
        assert httpx.post(f"{url}/api/sessions/{session_id}/frames", params={"t": 0.0}, content=jpeg(10)).status_code == 200
        first: dict[str, httpx.Response] = {}
        served = manager.get(session_id)
        for kind, send in [("frame", lambda: httpx.post(f"{url}/api/sessions/{session_id}/frames", params={"t": 1.0},
                                                        content=jpeg(90), timeout=60)),
                           ("question", lambda: httpx.post(f"{url}/api/sessions/{session_id}/questions",
                                                           json={"question": "What?", "max_new_tokens": 2}, timeout=60))]:
            with manager.model_lock:  # the model busy with another session
                waiting = threading.Thread(target=lambda kind=kind, send=send: first.update({kind: send()}))
                waiting.start()
                deadline = time.monotonic() + 30
                while kind not in served._in_flight and time.monotonic() < deadline:
                    time.sleep(0.01)
                second = send()
                assert second.status_code == 429, (kind, second.json())
                assert second.json()["detail"] == (
                    f"a {kind} of session {session_id} is still "
                    f"{'waiting for the model' if kind == 'frame' else 'being answered'}; send the next one after its answer")
            waiting.join(60)
            assert first[kind].status_code == 200
        assert first["frame"].json()["frames_seen"] == 2 and first["question"].json()["time"] == 1.0
        after = httpx.post(f"{url}/api/sessions/{session_id}/frames", params={"t": 2.0}, content=jpeg(50), timeout=60)
        assert after.status_code == 200 and after.json()["frames_seen"] == 3 and not served._in_flight


def test_a_body_without_a_length_is_cut_off_at_the_limit_as_it_arrives():
    """A chunked body announces no length: read_body refuses it once it is over the limit, having read no
    more than that (here the client would send without end), instead of holding all of it first."""
    import asyncio

    from starlette.requests import Request

    from serve.app import read_body
    from serve.sessions import ServeError

    received = 0

    async def endless() -> dict:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, endless)
    with pytest.raises(ServeError) as refused:
        asyncio.run(read_body(request, 2500, "a frame"))
    assert (refused.value.status, str(refused.value)) == (413, "a frame of more than 2500 bytes is over the limit of 2500")
    assert received == 3


def test_an_upload_far_over_the_limit_is_refused_before_it_is_spooled(client, manager, monkeypatch):
    """FastAPI parses an upload's form (spooling the file to disk) before the route runs: the route's
    max_body_size stops a body over the limit plus the multipart overhead as it arrives, chunked too, and
    the route (which names the file it writes with uuid4) never runs."""
    import serve.app
    from serve.app import MULTIPART_OVERHEAD

    named = []
    monkeypatch.setattr(serve.app.uuid, "uuid4", lambda: named.append(1))

    limit = manager.limits.max_upload_bytes + MULTIPART_OVERHEAD
    sent = 0

    def body():
        nonlocal sent
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"v.mp4\"\r\n\r\n"
        yield boundary
        while sent < 4 * limit:
            sent += 100_000
            yield b"x" * 100_000

    r = client.post("/api/sessions/upload", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json() == {"detail": f"the upload is over the limit of {manager.limits.max_upload_bytes} bytes"}
    assert named == []
