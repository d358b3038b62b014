"""Benchmark loaders: our JSONL, OVO-Bench, OVBench; bad records named, --skip-bad.

StreamingBench, forward probes, polls and the official scoring of every format: test_benchmarks.py."""

import json

import pytest

from eval.benchmarks import load_benchmark
from videollama3.errors import AnnotationError


def write(path, data, jsonl=False):
    path.write_text("\n".join(json.dumps(d) for d in data) + "\n" if jsonl else json.dumps(data))
    return path


def test_jsonl(tmp_path, videos):
    f = write(tmp_path / "a.jsonl", [{"video": "bikes.mp4", "fps": 2, "questions": [
        {"id": "q2", "time": 7.5, "question": "Which?", "options": ["(A) red", "B. blue"], "answer": "B",
         "task": "colour", "subtask": "car", "evidence": [6, 7]},
        {"id": "q1", "time": 1, "question": "What moves?", "answer": "a bike", "task": "open"},
    ]}], jsonl=True)
    bench = load_benchmark("jsonl", f, videos)
    (video,) = bench.videos
    assert video.video == videos / "bikes.mp4" and video.fps == 2
    q1, q2 = video.questions  # sorted by time
    assert (q1.id, q1.time, q1.options, q1.answer, q1.evidence) == ("q1", 1.0, [], "a bike", None)
    assert (q2.options, q2.answer, q2.task, q2.subtask, q2.evidence) == (["red", "blue"], "B", "colour", "car", (6.0, 7.0))


def test_ovo_bench(tmp_path, videos):
    records = [
        {"id": 1, "task": "EPM", "video": "bikes.mp4", "realtime": 8.0, "question": "Earlier?", "options": ["x", "y", "z"], "gt": 2},
        {"id": 2, "task": "OCR", "video": "vtest.avi", "realtime": 3.0, "question": "Text?", "options": ["a", "b"], "gt": 0},
        {"id": 3, "task": "REC", "video": "bikes.mp4", "activity": "ride", "test_info": [
            {"realtime": 6, "count": 2}, {"realtime": 2.0, "count": 1}]},
        {"id": 4, "task": "CRR", "video": "bikes.mp4", "question": "Who comes?", "test_info": [{"realtime": 9, "type": 1}]},
    ]
    bench = load_benchmark("ovo", write(tmp_path / "ovo.json", records), videos)
    assert [(v.video.name, [(q.id, q.time, q.answer, q.task, q.subtask) for q in v.questions]) for v in bench.videos] == [
        ("bikes.mp4", [("3#1", 2.0, "1", "REC", "forward"), ("3#0", 6.0, "2", "REC", "forward"),
                       ("1", 8.0, "C", "EPM", "backward"), ("4#0", 9.0, "Yes", "CRR", "forward")]),
        ("vtest.avi", [("2", 3.0, "A", "OCR", "real-time")])]
    assert [q.order for q in bench.videos[0].questions] == [3, 2, 0, 4]  # file order, probes in their record's order
    assert bench.videos[0].questions[0].extra == {"record": 3, "probe": 1, "count": 1}


def test_ovbench(tmp_path, videos):
    data = [{"video_id": "bikes", "fps": 25, "clip": [1, 9.5], "questions": [
        {"middle_frame_timestamp": 5.0, "question": "Who?", "options": ["A. a cyclist", "B. a dog"], "answer": "A",
         "answer_type": "OP", "sub_answer_type": "present"},
        {"middle_frame_timestamp": 2, "question": "Car?", "options": ["A. yes", "B. no"], "answer": "B. no",
         "answer_type": "ATR", "sub_answer_type": "past"},
    ]}]
    bench = load_benchmark("ovbench", write(tmp_path / "ovb.json", data), videos)
    (video,) = bench.videos
    assert video.video == videos / "bikes.mp4"  # extension found
    # fps is the frame rate of the frames (sampling stays --fps); the clip is what is streamed
    assert (video.fps, video.frame_rate, video.start, video.end) == (None, 25.0, 1.0, 9.5)
    assert [(q.id, q.time, q.options, q.answer, q.task, q.subtask, q.evidence) for q in video.questions] == [
        ("bikes#1", 2.0, ["yes", "no"], "B", "ATR", "past", None),
        ("bikes#0", 5.0, ["a cyclist", "a dog"], "A", "OP", "present", None)]
    assert bench.system_prompt.startswith("Carefully watch the video")
    assert bench.format.prompt(video.questions[0]) == "Question at 2s: Car?\nOptions:\n(A) yes\n(B) no\nAnswer:"


BAD = [
    ("jsonl", "not json\n", "line 1: does not parse as JSON"),
    ("jsonl", [{"video": "missing.mp4", "questions": []}], "line 1: video 'missing.mp4' not found"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "x", "time": 1, "question": "Q?", "answer": "B"}]}],
     "question x: answer 'B' is a letter but the question has no options"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "x", "question": "Q?", "answer": "a"}]}], "no 'time'"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "x", "time": 1, "question": "Q?", "answer": "a",
                                                     "evidance": [0, 1]}]}],  # a misspelt field is not dropped
     "question x: unknown field 'evidance' (the fields are id, time, question, options, answer, task, subtask, "
     "evidence)"),
    ("jsonl", [{"video": "bikes.mp4", "fsp": 2, "questions": []}], "line 1: unknown field 'fsp' (the fields are "
                                                                   "video, fps, questions)"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "x", "time": 1, "question": "Q?", "options": ["a", "b"],
                                                     "answer": "D"}]}], "names option D but there are 2 options"),
    ("ovo", [{"id": 7, "task": "EPM", "video": "bikes.mp4", "realtime": 1, "question": "Q?", "gt": 0}],
     "record 0 (id 7): a multiple-choice question needs at least 2 options"),
    ("ovo", [{"id": 7, "task": "XYZ", "video": "bikes.mp4"}], "unknown task 'XYZ'"),
    ("jsonl", [{"video": "bikes.mp4", "questions": [{"id": "x", "time": 1, "question": "Q?", "options": ["o"] * 27,
                                                     "answer": "A"}]}],
     "question x: 27 options, but a multiple-choice question has at most 26 (A to Z)"),
    ("ovo", [{"id": 7, "task": "EPM", "video": "bikes.mp4", "realtime": 1, "question": "Q?", "options": ["o"] * 40,
              "gt": 0}], "record 0 (id 7): 40 options, but a multiple-choice question has at most 26"),
    ("ovbench", [{"video_id": "nope", "questions": []}], "video 0 ('nope'): video 'nope' not found"),
    ("ovbench", [{"video_id": "bikes", "questions": [{"question": "Q?", "options": ["A. a", "B. b"], "answer": "A"}]}],
     "question 0: middle_frame_timestamp must be a non-negative number"),
    ("ovbench", [{"video_id": "bikes", "clip": [5, 2], "questions": []}], "video 0: clip end 2s is before its start 5s"),
    ("ovbench", [{"video_id": "bikes", "clip": [6, 9], "questions": [{"middle_frame_timestamp": 3, "question": "Q?",
                                                                      "options": ["A. a", "B. b"], "answer": "A"}]}],
     "question 0: at 3s it is before the part of the video streamed, which starts at 6s: its answer would see no frame"),
]


@pytest.mark.parametrize("kind, content, message", BAD)
def test_bad_records_are_named_or_skipped(tmp_path, videos, kind, content, message):
    path = tmp_path / "bad.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write(path, content, jsonl=kind == "jsonl")
    with pytest.raises(AnnotationError) as e:
        load_benchmark(kind, path, videos)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
    assert str(e.value).count(f"{path}: ") == 1 and str(e.value).count("--skip-bad") == 1  # said once
    bench = load_benchmark(kind, path, videos, skip_bad=True)
    assert bench.num_questions == 0 and len(bench.skipped) == 1 and message in bench.skipped[0]


def test_a_video_given_twice_with_other_settings_is_a_bad_record_not_the_first_settings(tmp_path, videos):
    """One pass streams a video one way: a second line on it with another sampling rate is refused by
    name, not streamed at the first line's rate (its questions would see frames it did not ask for)."""
    line = {"video": "bikes.mp4", "questions": [{"id": "a", "time": 1, "question": "Q?", "answer": "a bike"}]}
    again = [{**line, "fps": fps, "questions": [{**line["questions"][0], "id": qid}]} for fps, qid in ((1, "b"), (2, "c"))]
    f = write(tmp_path / "two.jsonl", [{**line, "fps": 1}, *again], jsonl=True)
    with pytest.raises(AnnotationError, match=r"line 3: bikes.mp4 was already given with other settings: fps 2 "
                                              r"\(before: 1\)"):
        load_benchmark("jsonl", f, videos)
    bench = load_benchmark("jsonl", f, videos, skip_bad=True)
    assert [q.id for v in bench.videos for q in v.questions] == ["a", "b"] and len(bench.skipped) == 1


def test_missing_file_unknown_format_and_a_file_that_is_not_a_list(tmp_path, videos):
    with pytest.raises(AnnotationError, match="bad.json: expected a JSON list of OVO-Bench records, got dict"):
        load_benchmark("ovo", write(tmp_path / "bad.json", {"not": "a list"}), videos, skip_bad=True)
    with pytest.raises(AnnotationError, match="no such annotation file"):
        load_benchmark("ovo", tmp_path / "none.json", videos)
    with pytest.raises(AnnotationError, match="unknown benchmark format 'mvbench'; known: jsonl, ovbench, ovo, streamingbench"):
        load_benchmark("mvbench", tmp_path / "none.json", videos)


def test_the_dev_file_has_30_timed_questions_with_evidence(videos):
    from pathlib import Path

    bench = load_benchmark("jsonl", Path(__file__).parents[2] / "eval" / "data" / "dev.jsonl", videos)
    questions = [q for v in bench.videos for q in v.questions]
    assert len(questions) >= 30 and not bench.skipped
    assert {v.video.name for v in bench.videos} == {"vtest.avi", "bikes.mp4"}
    assert all(len(q.options) == 4 and q.answer in "ABCD" and q.evidence and q.evidence[1] <= q.time for q in questions)
    assert len({q.answer for q in questions}) == 4  # answers are not all one letter
