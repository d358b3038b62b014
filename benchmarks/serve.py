"""Concurrent sessions on one served model (``vl3mem bench serve``).

Starts ``vl3mem serve``'s app (tiny model, CPU by default) on 127.0.0.1 and, for 1, 4 and 16
sessions at once (``--sessions``), runs one client thread per session over real HTTP: it opens a
session without a source, pushes the frames of a sample video as JPEG at ``--fps`` in real time
(a frame whose time has passed while the previous push waited is dropped and counted: a live
client does not queue), and asks a question every ``--ask-every`` seconds of stream time. Prints,
per number of sessions: sustained frames/s per session, frames dropped, question latency p50 / p95.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time

import numpy as np

from videollama3.options import check_device

from . import add_video_arguments, existing_video, run_as_script

DEFAULT_VIDEOS = ["vtest.avi", "trailer_bbb.mp4", "bikes.mp4"]


def client(base: str, frames: list[tuple[bytes, float]], seconds: float, ask_every: float, out: dict) -> None:
    """One session: push ``frames`` in real time for ``seconds``, ask every ``ask_every`` s; fill ``out``."""
    import httpx

    with httpx.Client(base_url=base, timeout=120) as http:
        sid = http.post("/api/sessions", json={}).json()["id"]
        pushed = dropped = 0
        latencies: list[float] = []
        start, next_ask = time.perf_counter(), ask_every
        for data, t in frames:
            if t > seconds:
                break
            late = time.perf_counter() - start - t
            if late > 0.5:  # its moment has passed: a live client drops it
                dropped += 1
                continue
            if late < 0:
                time.sleep(-late)
            http.post(f"/api/sessions/{sid}/frames", params={"t": t}, content=data).raise_for_status()
            pushed += 1
            if t >= next_ask:
                asked = time.perf_counter()
                http.post(f"/api/sessions/{sid}/questions", json={"question": "What is happening now?",
                                                                  "max_new_tokens": 8}).raise_for_status()
                latencies.append(time.perf_counter() - asked)
                next_ask += ask_every
        wall = time.perf_counter() - start
        http.delete(f"/api/sessions/{sid}")
    out.update(pushed=pushed, dropped=dropped, wall=wall, latencies=latencies)


def jpeg_frames(path: str, fps: float, seconds: float) -> list[tuple[bytes, float]]:
    """The first ``seconds`` of ``path`` at ``fps``, as JPEG bytes with their times."""
    from PIL import Image

    from videollama3.video import iter_frames

    out = []
    for frame, t in iter_frames(path, fps=fps, end=seconds):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=85)
        out.append((buffer.getvalue(), t))
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the table; return the numbers."""
    import uvicorn

    from serve.app import create_app
    from serve.sessions import Limits, SessionManager
    from videollama3.loading import build_session, load_model

    parser = argparse.ArgumentParser(prog="vl3mem bench serve", description=__doc__.split("\n")[0])
    add_video_arguments(parser, DEFAULT_VIDEOS, fps=2.0)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="stream time each client pushes")
    parser.add_argument("--ask-every", type=float, default=5.0, help="seconds of stream time between questions")
    args = parser.parse_args(argv)
    check_device(args.device, "--device")
    for video in args.videos:
        existing_video(video, "--videos")
    model, tokenizer = load_model(args.model, device=args.device)
    manager = SessionManager(build_session(model, tokenizer), "hierarchical", {}, ".",
                             Limits(max_sessions=max(args.sessions)))
    server = uvicorn.Server(uvicorn.Config(create_app(manager), host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    videos = [jpeg_frames(v, args.fps, args.seconds) for v in args.videos]
    print(f"model {args.model} on {args.device}; each client pushes {args.seconds:g} s of video at {args.fps:g} "
          f"frames/s in real time and asks every {args.ask_every:g} s")
    print("| sessions | frames/s per session (offered) | frames pushed | dropped | question p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    results = {}
    for n in args.sessions:
        outs = [{} for _ in range(n)]
        threads = [threading.Thread(target=client, args=(base, videos[i % len(videos)], args.seconds,
                                                         args.ask_every, outs[i])) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies = np.array([x for o in outs for x in o["latencies"]]) * 1000
        rate = float(np.mean([o["pushed"] / o["wall"] for o in outs]))
        r = results[n] = {"frames_per_s": round(rate, 2), "pushed": sum(o["pushed"] for o in outs),
                          "dropped": sum(o["dropped"] for o in outs),
                          "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
                          "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies.size else None}
        print(f"| {n} | {r['frames_per_s']} ({args.fps:g}) | {r['pushed']} | {r['dropped']} | {r['p50_ms']} | "
              f"{r['p95_ms']} |", flush=True)
    server.should_exit = True
    return results


if __name__ == "__main__":
    sys.exit(run_as_script(main))
