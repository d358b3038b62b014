"""Write placeholder videos for the questions of benchmark annotation files, where the real videos
are absent: a dry run of ``vl3mem eval`` (``--no-model``, or the tiny model) on the published files.

Each video (or frame folder, for names without a video extension) the first ``--limit`` questions
name is written under ``--out`` at its path in the file: grey 64x48 frames with a moving bar, at
2 frames per second (a frame folder: at the record's frame rate, else 1), lasting until 2 s after
the video's last question (the last poll, for a proactive one). Its answers mean nothing.

    python scripts/placeholder_videos.py --benchmark ovo --annotations ovo_bench_new.json \\
        --out /tmp/ovo_videos --limit 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

from eval.benchmarks import BENCHMARKS, load_benchmark
from videollama3.questions import VIDEO_EXTENSIONS

SIZE = (48, 64)  # height, width
RATE = 2


def frame(i: int, rate: float) -> np.ndarray:
    """A grey frame with a bar at a place that moves once a second."""
    image = np.full((*SIZE, 3), 128, np.uint8)
    x = int(i / rate) % SIZE[1]
    image[:, x:x + 4] = 255
    return image


def write_video(path: Path, seconds: float) -> None:
    """``seconds`` of frames at :data:`RATE` per second, H.264 (MPEG-4 part 2 for ``.avi``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4" if path.suffix == ".avi" else "libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        for i in range(int(seconds * RATE) + 1):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame(i, RATE), format="rgb24")))
        container.mux(stream.encode())


def write_folder(path: Path, seconds: float, rate: float) -> None:
    """``seconds`` of numbered JPEG frames at ``rate`` per second."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(int(seconds * rate) + 1):
        Image.fromarray(frame(i, rate)).save(path / f"{i + 1:05d}.jpg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmark", required=True, choices=list(BENCHMARKS))
    p.add_argument("--annotations", required=True, nargs="+")
    p.add_argument("--out", required=True, help="the --video-root to give vl3mem eval")
    p.add_argument("--limit", type=int, default=20, help="videos of the first N questions, in file order")
    args = p.parse_args(argv)
    bench = load_benchmark(args.benchmark, args.annotations, args.out, skip_bad=True, check_videos=False)
    bench.limit(args.limit)
    for video in bench.videos:
        last = max(q.poll.times[-1] if q.poll else q.time for q in video.questions) + 2
        if video.video.exists():
            continue
        if video.video.suffix.lower() in VIDEO_EXTENSIONS[1:]:
            write_video(video.video, last)
        else:
            write_folder(video.video, last, video.frame_rate or 1.0)
    print(f"{len(bench.videos)} videos for {bench.num_questions} questions under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
