"""Property-based tests (Hypothesis) of the annotation loaders: random records give data or an
AnnotationError naming the problem, never another exception."""

import json

from hypothesis import given
from hypothesis import strategies as st

from eval.benchmarks import load_benchmark
from train.config import DataConfig
from train.data import load_training_data
from videollama3.errors import AnnotationError

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "A", "B. blue", "bikes.mp4", "bikes", "vtest.avi", "EPM", "OCR", "REC",
                                     "<|video_pad|>", "what?", "human", "gpt", "1.5"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)),
                      max_leaves=6)


def record(keys):
    return st.fixed_dictionaries({}, optional={k: VALUES for k in keys})


QUESTION = record(["id", "time", "question", "options", "answer", "task", "evidence", "middle_frame_timestamp",
                   "start", "end", "answer_type"])
FORMATS = {
    "jsonl": st.fixed_dictionaries({"video": st.sampled_from(["bikes.mp4", "nope.mp4", 3]),
                                    "questions": st.lists(QUESTION, max_size=3)},
                                   optional={"fps": VALUES}),
    "ovo": st.fixed_dictionaries({"task": st.sampled_from(["EPM", "OCR", "REC", "XYZ"]), "video": st.just("bikes.mp4")},
                                 optional={k: VALUES for k in ["id", "realtime", "question", "options", "gt", "answer"]}),
    "ovbench": st.fixed_dictionaries({"video_id": st.sampled_from(["bikes", "nope", None]),
                                      "questions": st.lists(QUESTION, max_size=3)}, optional={"fps": VALUES}),
}


def write(path, kind, records):
    text = "\n".join(json.dumps(r) for r in records) if kind == "jsonl" else json.dumps(records)
    path.write_text(text)
    return path


@given(data=st.data())
def test_random_records_load_or_fail_with_an_annotation_error(tmp_path_factory, data):
    from tests.videollama3.conftest import VIDEOS as videos

    kind = data.draw(st.sampled_from(list(FORMATS)))
    records = data.draw(st.lists(FORMATS[kind], max_size=4))
    path = write(tmp_path_factory.mktemp("ann") / "a.json", kind, records)
    for skip_bad in (False, True):
        try:
            bench = load_benchmark(kind, path, videos, skip_bad=skip_bad)
        except AnnotationError as e:
            assert str(path) in str(e)
            continue
        for video in bench.videos:
            for q in video.questions:
                assert isinstance(q.question, str) and q.question.strip() and q.time >= 0
                assert all(isinstance(o, str) for o in q.options)


CONVERSATION = st.fixed_dictionaries(
    {"video": st.sampled_from(["bikes.mp4", "nope.mp4"]),
     "conversations": st.lists(st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", None])},
                                                     optional={"value": VALUES, "timestamps": VALUES}), max_size=4)},
    optional={"id": VALUES, "fps": VALUES})


@given(data=st.data())
def test_random_training_records_load_or_fail_with_an_annotation_error(tmp_path_factory, data):
    from tests.videollama3.conftest import VIDEOS

    records = data.draw(st.lists(CONVERSATION, min_size=1, max_size=3))
    path = tmp_path_factory.mktemp("train") / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    for skip_bad in (False, True):
        try:
            loaded = load_training_data(DataConfig(path=str(path), format="videochat_online", video_root=str(VIDEOS),
                                                   skip_bad=skip_bad))
        except AnnotationError:
            continue
        assert all(isinstance(q, str) and q for q in loaded.dataset["question"])
