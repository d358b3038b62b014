"""Resumed, interrupted and concurrent evaluations give the records of one uninterrupted run."""

import json

import pytest

from eval.cli import output_lock
from eval.benchmarks import load_benchmark
from videollama3.errors import AnnotationError
from vl3mem.cli import main

QUESTIONS = [(1.0, "What is on the left?"), (2.0, "Any car?"), (4.0, "How many bikes?"), (6.0, "Where?"),
             (8.0, "What changed?")]
MEMORIES = {"fifo": ["num_recent=2", "max_prompted=2"], "lru_quantized": ["capacity=3", "grace_frames=1"],
            "hierarchical": ["memory_capacities=2,2,1"], "significance": ["threshold=0.0001"]}


def annotations(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_text(json.dumps({"video": "bikes.mp4", "questions": [
        {"id": f"q{k}", "time": t, "question": q, "options": ["red", "blue"], "answer": "A"}
        for k, (t, q) in enumerate(QUESTIONS)]}) + "\n")
    return path


def run(videos, ann, out, memory, *extra):
    argv = ["eval", "--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(videos), "--model", "tiny",
            "--output-dir", str(out), "--quiet", "--max-new-tokens", "2", "--memory", memory]
    for option in MEMORIES[memory]:
        argv += ["--memory-option", option]
    return main(argv + list(extra))


def comparable(out):
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "latency_s"} for x in lines]


@pytest.mark.parametrize("memory", list(MEMORIES))
def test_a_resumed_run_equals_an_uninterrupted_one(videos, tmp_path, capsys, memory):
    ann = annotations(tmp_path)
    assert run(videos, ann, tmp_path / "full", memory) == 0
    full = comparable(tmp_path / "full")
    assert [r["id"] for r in full] == ["q0", "q1", "q2", "q3", "q4"]
    for killed_after in (1, 3):
        out = tmp_path / f"resumed{killed_after}"
        out.mkdir()
        (out / "run.json").write_text((tmp_path / "full" / "run.json").read_text().replace(
            str(tmp_path / "full"), str(out)))
        lines = (tmp_path / "full" / "predictions.jsonl").read_text().splitlines(keepends=True)
        (out / "predictions.jsonl").write_text("".join(lines[:killed_after]))
        assert run(videos, ann, out, memory) == 0, capsys.readouterr().err
        resumed = comparable(out)
        # the answered ones were not asked again, and what asking did to the memory was replayed
        assert resumed == full, memory


@pytest.mark.parametrize("cut", [1, 0.5, -1])
def test_a_torn_last_line_loses_only_that_record(videos, tmp_path, capsys, cut):
    ann = annotations(tmp_path)
    out = tmp_path / "run"
    assert run(videos, ann, out, "fifo") == 0
    full = comparable(out)
    data = (out / "predictions.jsonl").read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    length = len(data) - last_start
    keep = last_start + (int(length * cut) if isinstance(cut, float) else cut % length)
    (out / "predictions.jsonl").write_bytes(data[:keep])  # killed while writing the last record
    assert run(videos, ann, out, "fifo") == 0, capsys.readouterr().err
    assert comparable(out) == full  # re-answered, on a line of its own; nothing glued onto the torn bytes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 5


def test_a_second_run_on_the_same_folder_is_refused_and_ids_count_once(videos, tmp_path, capsys):
    ann = annotations(tmp_path)
    out = tmp_path / "run"
    assert run(videos, ann, out, "fifo") == 0
    capsys.readouterr()
    with output_lock(out, 0):  # another evaluation holds the folder
        assert run(videos, ann, out, "fifo") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another evaluation is writing to" in err[0]
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines + lines))  # a file an older version wrote twice
    assert run(videos, ann, out, "fifo") == 0
    assert json.loads((out / "summary.json").read_text())["questions"] == 5


def test_a_damaged_predictions_line_is_one_clear_line(videos, tmp_path, capsys):
    ann = annotations(tmp_path)
    out = tmp_path / "run"
    assert run(videos, ann, out, "fifo") == 0
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text(lines[0] + "[1, 2]\n" + "".join(lines[1:]))
    capsys.readouterr()
    assert run(videos, ann, out, "fifo") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2 is not a prediction record" in err[0]


@pytest.mark.parametrize("kind, content, message", [
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": 1, "time": 1, "question": "Q", "answer": "fine"},
                                                    {"id": "1", "time": 2, "question": "Q2", "answer": "good"}]}],
     "line 1 question 1: question id '1' is used twice (first at line 1 question 1)"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "a", "time": 1, "question": "Q", "answer": "fine"}]},
               {"video": "vtest.avi", "questions": [{"id": "a", "time": 1, "question": "Q", "answer": "fine"}]}],
     "line 2 question a: question id 'a' is used twice (first at line 1 question a)"),
    ("ovbench", [{"video_id": "bikes", "questions": [{"middle_frame_timestamp": 1, "question": "Q",
                                                      "options": ["A. a", "B. b"], "answer": "A"}]}] * 2,
     "video 'bikes' question 0: question id 'bikes#0' is used twice (first at dup.json: video 'bikes' question 0)"),
    ("ovo", [{"id": 7, "task": "EPM", "video": "bikes.mp4", "realtime": 1, "question": "Q", "options": ["a", "b"],
              "gt": 0}] * 2, "question id '7' is used twice"),
])
def test_duplicate_question_ids_are_named_not_merged(tmp_path, videos, kind, content, message):
    path = tmp_path / "dup.json"
    path.write_text("\n".join(json.dumps(r) for r in content) if kind == "jsonl" else json.dumps(content))
    with pytest.raises(AnnotationError) as e:
        load_benchmark(kind, path, videos)
    assert message in str(e.value)
    assert str(e.value).count(f"{path}: ") == 1 and str(e.value).count("--skip-bad") == 1  # said once
    bench = load_benchmark(kind, path, videos, skip_bad=True)
    assert bench.num_questions == 1 and len(bench.skipped) == 1 and message in bench.skipped[0]
