"""A small streaming training set whose answers the videos fix: questions on frame statistics.

For each video, frames are sampled at ``fps`` (as training samples them) and three kinds
of timed question are asked in turn, each answered from the frames up to its time:

- which colour channel is strongest in the current frame (multiple choice: red / green
  / blue, by mean channel value);
- whether the current frame is brighter or darker than the first one (mean luma,
  ITU-R BT.601 weights);
- at what time the brightest frame so far was (the frame that best matches "brightest",
  in whole seconds).

Two conversations per video: turns at odd and at even seconds. The output is the
training / evaluation JSONL format (:func:`videollama3.questions.read_jsonl_records`), with video paths relative to the
video root. ``train/data/tiny.jsonl`` was written by::

    python -m train.frame_questions --video-root ../shared/videos --output train/data/tiny.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from videollama3.video import iter_frames

VIDEOS = ("vtest.avi", "bikes.mp4", "trailer_bbb.mp4", "carphone_distorted.mp4")
CHANNELS = ("red", "green", "blue")
LUMA = np.array([0.299, 0.587, 0.114])


def frame_statistics(video: str | Path, fps: float = 1.0, until: float = 16.0) -> list[tuple[float, np.ndarray, float]]:
    """``[(time_s, mean RGB (3,) float64, mean luma)]`` of the frames sampled at ``fps`` up to ``until`` seconds."""
    stats = []
    for frame, t in iter_frames(video, fps=fps, end=until):
        rgb = frame.reshape(-1, 3).mean(axis=0)
        stats.append((t, rgb, float(rgb @ LUMA)))
    return stats


def conversation(video_name: str, stats: list[tuple[float, np.ndarray, float]], first: int, fps: float,
                 until: float) -> dict:
    """One conversation: turns at ``first, first + 2, ...`` seconds (<= ``until`` and the last frame)."""
    questions = []
    last = stats[-1][0]
    for k, t in enumerate(np.arange(first, min(until, last) + 1e-9, 2.0)):
        seen = [s for s in stats if s[0] <= t + 1e-9]
        _, rgb, luma = seen[-1]
        qid = f"{Path(video_name).stem}-{int(t)}"
        kind = k % 3
        if kind == 0:
            questions.append({"id": qid, "time": float(t), "task": "colour",
                              "question": "Which colour channel is strongest in the frame now?",
                              "options": list(CHANNELS), "answer": "ABC"[int(np.argmax(rgb))]})
        elif kind == 1:
            answer = "brighter" if luma > seen[0][2] else "darker"
            questions.append({"id": qid, "time": float(t), "task": "brightness",
                              "question": "Is the frame now brighter or darker than the first frame?",
                              "answer": answer})
        else:
            best = max(seen, key=lambda s: s[2])[0]
            questions.append({"id": qid, "time": float(t), "task": "brightest",
                              "question": "At what time was the brightest frame so far?",
                              "answer": f"{best:.0f} s"})
    return {"video": video_name, "fps": fps, "questions": questions}


def make_dataset(video_root: str | Path, videos: tuple[str, ...] = VIDEOS, fps: float = 1.0,
                 until: float = 16.0) -> list[dict]:
    """Two conversations per video (turns at odd / even seconds), in the JSONL format.

    Raises:
        VideoError: for a video that cannot be decoded.
    """
    records = []
    for name in videos:
        stats = frame_statistics(Path(video_root) / name, fps, until)
        records += [conversation(name, stats, first, fps, until) for first in (1, 2)]
    return [r for r in records if r["questions"]]


def main(argv: list[str] | None = None) -> int:
    """``python -m train.frame_questions --video-root DIR --output FILE.jsonl``."""
    parser = argparse.ArgumentParser(prog="python -m train.frame_questions", description=__doc__.split("\n")[0])
    parser.add_argument("--video-root", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--until", type=float, default=16.0, help="last question time, seconds")
    args = parser.parse_args(argv)
    records = make_dataset(args.video_root, fps=args.fps, until=args.until)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"{sum(len(r['questions']) for r in records)} turns in {len(records)} conversations -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
