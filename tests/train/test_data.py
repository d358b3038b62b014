import json

import pytest

from videollama3.errors import AnnotationError
from train.config import DataConfig
from train.data import COLUMNS, load_training_data

from .conftest import write_jsonl


def config(path, videos, **kw) -> DataConfig:
    return DataConfig(path=str(path), video_root=str(videos), **kw)


def test_jsonl_one_conversation_per_line_turns_in_time_order(tmp_path, videos):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"video": "bikes.mp4", "questions": [
            {"id": "late", "time": 5.0, "question": "Q2", "answer": "a2"},
            {"id": "early", "time": 1.0, "question": "Which?", "options": ["A. red", "B. blue"], "answer": "blue"},
        ]},
        {"video": "bikes.mp4", "fps": 2, "questions": [{"id": "x", "time": 3.0, "question": "Q3", "answer": "a3"}]},
    ])
    data = load_training_data(config(path, videos, fps=1.5))
    rows = data.dataset.to_list()
    assert list(data.dataset.column_names) == list(COLUMNS)
    assert [(r["record"], r["turn"], r["id"]) for r in rows] == [(0, 0, "early"), (0, 1, "late"), (1, 0, "x")]
    assert [r["fps"] for r in rows] == [1.5, 1.5, 2.0]  # the config's fps where a line gives none
    # multiple choice: asked as vl3mem eval asks it, trained on the letter
    assert rows[0]["question"] == ("Which?\nOptions:\n(A) red\n(B) blue\n"
                                   "Answer with the option's letter from the given choices directly.")
    assert rows[0]["answer"] == "B"
    assert rows[1]["question"] == "Q2" and rows[1]["answer"] == "a2"
    assert rows[0]["video"].endswith("bikes.mp4") and data.num_records == 2


def test_videochat_online_format(tmp_path, videos):
    path = tmp_path / "vco.json"
    path.write_text(json.dumps([
        {"id": "v1", "video": "bikes", "conversations": [
            {"from": "human", "timestamps": 2.0, "value": "<video>\nWhat is happening?"},
            {"from": "gpt", "value": "People ride bikes."},
            {"from": "human", "timestamps": [3.0, 6.5], "value": "And now?"},
            {"from": "gpt", "value": "Still riding."},
            {"from": "human", "value": "Anything else?"},
            {"from": "gpt", "value": "No."},
        ]},
        {"video": "carphone_distorted.mp4", "fps": 4, "conversations": [
            {"from": "human", "value": "<video>\nDescribe the video."},
            {"from": "gpt", "value": "A man in a car."},
        ]},
    ]))
    rows = load_training_data(config(path, videos, format="videochat_online")).dataset.to_list()
    assert [r["question"] for r in rows] == ["What is happening?", "And now?", "Anything else?", "Describe the video."]
    assert [r["answer"] for r in rows] == ["People ride bikes.", "Still riding.", "No.", "A man in a car."]
    # a span asks at its end; no timestamp: the previous turn's time, or the video's end
    assert [r["time"] for r in rows[:3]] == [2.0, 6.5, 6.5]
    assert 3.9 < rows[3]["time"] <= 4.1 and rows[3]["fps"] == 4.0
    assert [r["id"] for r in rows] == ["v1#0", "v1#2", "v1#4", "1#0"]


def test_videochat_online_also_reads_json_lines(tmp_path, videos):
    path = write_jsonl(tmp_path / "vco.jsonl", [{"video": "bikes.mp4", "conversations": [
        {"from": "human", "timestamps": 1, "value": "Q"}, {"from": "gpt", "value": "A"}]}])
    assert len(load_training_data(config(path, videos, format="videochat_online")).dataset) == 1


VCO_BAD = [
    ({"video": "nope.mp4", "conversations": [{"from": "human", "timestamps": 1, "value": "Q"},
                                             {"from": "gpt", "value": "A"}]},
     r"record 0: video 'nope.mp4' not found"),
    ({"id": "z", "video": "bikes.mp4", "conversations": [{"from": "gpt", "value": "A"}]},
     r"record 0 \(id 'z'\): turn 0 is an answer without a question"),
    ({"video": "bikes.mp4", "conversations": [{"from": "human", "timestamps": 1, "value": "Q"},
                                              {"from": "human", "timestamps": 2, "value": "Q2"},
                                              {"from": "gpt", "value": "A"}]},
     "turn 0 is a question without an answer"),
    ({"video": "bikes.mp4", "conversations": [{"from": "human", "timestamps": 1, "value": "Q"}]},
     "turn 0 is a question without an answer"),
    ({"video": "bikes.mp4", "conversations": [{"from": "human", "timestamps": 60, "value": "Q"},
                                              {"from": "gpt", "value": "A"}]},
     r"record 0 turn 0 \(0#0\): time 60.00s is beyond the end of bikes.mp4"),
    ({"video": "bikes.mp4", "conversations": [{"from": "human", "timestamps": 5, "value": "Q"},
                                              {"from": "gpt", "value": "A"},
                                              {"from": "human", "timestamps": 2, "value": "Q"},
                                              {"from": "gpt", "value": "A"}]},
     "time 2.00s is earlier than the turn before"),
    ({"video": "bikes.mp4", "conversations": [{"from": "human", "timestamps": -1, "value": "Q"},
                                              {"from": "gpt", "value": "A"}]},
     "timestamps must be seconds"),
    ({"video": "bikes.mp4", "conversations": [{"from": "system", "value": "Q"}]}, "'from' must be 'human' or 'gpt'"),
]


@pytest.mark.parametrize("record, message", VCO_BAD)
def test_videochat_online_bad_records_name_the_record(tmp_path, videos, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(AnnotationError, match=message) as e:
        load_training_data(config(path, videos, format="videochat_online"))
    assert str(path) in str(e.value) and "--skip-bad" in str(e.value)


@pytest.mark.parametrize("question, message", [
    ({"id": "q", "time": 1.0, "answer": "yes"}, "line 1 question q: no question text"),  # an answer without a question
    ({"id": "q", "time": 1.0, "question": "Q"}, "line 1 question q: no answer"),
    ({"id": "q", "time": 99.0, "question": "Q", "answer": "ok"}, r"line 1 \(bikes.mp4\) turn 0 \(q\): time 99.00s is beyond the end"),
])
def test_jsonl_bad_turns_name_the_record(tmp_path, videos, question, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "bikes.mp4", "questions": [question]}])
    with pytest.raises(AnnotationError, match=message):
        load_training_data(config(path, videos))


def test_jsonl_missing_video_names_the_line(tmp_path, videos):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "missing.mp4", "questions": []}])
    with pytest.raises(AnnotationError, match="line 1: video 'missing.mp4' not found"):
        load_training_data(config(path, videos))


def test_skip_bad_reports_and_keeps_the_good_records(tmp_path, videos):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"video": "missing.mp4", "questions": [{"time": 1, "question": "Q", "answer": "ok"}]},
        {"video": "bikes.mp4", "questions": [{"id": "ok", "time": 1, "question": "Q", "answer": "ok"},
                                             {"id": "late", "time": 99, "question": "Q", "answer": "ok"}]},
        {"video": "carphone_distorted.mp4", "questions": [{"id": "c", "time": 1, "question": "Q", "answer": "ok"}]},
    ])
    data = load_training_data(config(path, videos, skip_bad=True))
    assert [r["id"] for r in data.dataset.to_list()] == ["c"]  # a conversation with a bad turn goes whole
    assert len(data.skipped) == 2
    assert "missing.mp4" in data.skipped[0] and "beyond the end" in data.skipped[1]


def test_nothing_usable_is_an_error(tmp_path, videos):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"video": "missing.mp4", "questions": []}])
    with pytest.raises(AnnotationError, match="no usable turn"):
        load_training_data(config(path, videos, skip_bad=True))
