"""Every memory backend behind the streaming session, the CLI and the bench."""

import json

import pytest
import torch

from memory_bank import MEMORY_BACKENDS, FIFOMemory, MemoryConfigError, build_memory
from videollama3.cli import main
from videollama3.loading import build_session
from videollama3.options import parse_memory_options, parse_value, read_memory_config
from videollama3.session import (
    StreamingSession,
    default_encode_batch,
    pipelined,
    run_stream,
)

from .test_parity import capture_llm_inputs

BOUNDED = ["hierarchical", "fifo", "lru_quantized", "significance"]


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("altered_from", [4, 0])
@pytest.mark.parametrize("encode_batch", [1, 3])
def test_no_future_frame_reaches_an_answer_with_any_backend(tiny, bikes_frames, name, altered_from, encode_batch):
    """A question at 3.0 s sees frames 0..3: altering frames >= 4 changes nothing;
    altering every frame (the control) changes the language-model input. With frames encoded in
    batches of 3 (0-2, then 3 alone: the question falls due, then 4-5) the same holds."""
    model, tokenizer = tiny
    altered = [(255 - f if i >= altered_from else f, t) for i, (f, t) in enumerate(bikes_frames)]
    prefills = []
    for frames in (bikes_frames, altered):
        session = build_session(model, tokenizer, name)
        session.encode_batch = encode_batch
        seen, handle = capture_llm_inputs(model)
        try:
            result = run_stream(session, iter(frames), [("What happened?", 3.0)], max_new_tokens=2)
        finally:
            handle.remove()
        assert session.frames_seen == 6 and result.answers[0].frames_seen == 4
        prefills.append(seen[0])
    assert torch.equal(prefills[0], prefills[1]) == (altered_from == 4)


def test_the_default_encode_batch_is_the_devices(tiny):
    assert [default_encode_batch(d) for d in ("cpu", "cuda", "cuda:1", torch.device("cpu"))] == [8, 32, 32, 8]
    assert build_session(*tiny).encode_batch == 8  # the tiny model is on the CPU


@pytest.mark.parametrize("name", [*BOUNDED, "unbounded"])
def test_frames_encoded_in_batches_equal_one_at_a_time(tiny, bikes_frames, name):
    """The memory after a stream with questions is the same, token for token, whether frames are
    encoded one at a time or in batches (the vision encoder attends within each frame)."""
    model, tokenizer = tiny
    readouts, pushes = [], []
    for batch in (1, 4):
        session = build_session(model, tokenizer, name)
        session.encode_batch = batch
        calls = []
        push = session.push_frames
        session.push_frames = lambda frames, push=push, calls=calls: (calls.append(len(frames)), push(frames))
        result = run_stream(session, iter(bikes_frames), [("What?", 4.5), ("Now?", None)], max_new_tokens=2)
        readouts.append([(e.frame_index, e.timestamp, e.tier, e.tokens) for e in session.memory.readout()])
        pushes.append((calls, [a.frames_seen for a in result.answers.values()]))
    assert pushes == [([1] * 6, [5, 6]), ([4, 1, 1], [5, 6])]  # the batch is cut where the question falls due
    assert [r[:3] for r in readouts[0]] == [r[:3] for r in readouts[1]]
    assert all(torch.equal(a[3], b[3]) for a, b in zip(*readouts))


@pytest.mark.parametrize("name", [*BOUNDED, "unbounded"])
@pytest.mark.parametrize("encode_batch", [1, 4])
def test_the_three_stage_pipeline_equals_frames_pushed_in_turn(tiny, bikes_frames, name, encode_batch):
    """Decoding and preprocessing ahead in threads (pipelined) gives the memory, the answers and
    what each question saw, token for token, of frames decoded, preprocessed and encoded in turn;
    the raw frames still reach the backend (significance compares pixels)."""
    model, tokenizer = tiny
    runs = []
    for depth in (0, 2):
        session = build_session(model, tokenizer, name)
        session.encode_batch = encode_batch
        frames = pipelined(session, iter(bikes_frames), depth)
        result = run_stream(session, frames, [("What?", 2.5), ("Now?", None)], max_new_tokens=3)
        runs.append(([(e.frame_index, e.timestamp, e.tier, e.tokens) for e in session.memory.readout()],
                     [(a.answer, a.frames_seen, a.tiers) for a in result.answers.values()],
                     session.timings["frames"]))
        assert session.timings["preprocess"] > 0
    (readout0, answers0, n0), (readout1, answers1, n1) = runs
    assert n0 == n1 == 6 and answers0 == answers1
    assert [r[:3] for r in readout0] == [r[:3] for r in readout1]
    assert all(torch.equal(a[3], b[3]) for a, b in zip(readout0, readout1))


@pytest.mark.parametrize("depth", [0, 2])
def test_the_pipeline_gives_torch_its_threads_back_when_the_source_ends(tiny, bikes_frames, depth):
    """With ``threads``, torch runs at that many threads while frames come (a question mid-stream
    too: the decoders still run) and at its own count again once the source has ended, broken off
    or been closed: the end question and the last batch have every core."""
    from videollama3.errors import VideoError

    def breaking(frames):
        yield from frames[:3]
        raise VideoError("the file is cut here", "bikes.mp4")

    own = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        session = build_session(*tiny, "hierarchical")
        session.encode_batch = 4
        threads_at, pushed_at = [], []
        ask, push = session.ask, session.push_frames
        session.ask = lambda *a, **k: (threads_at.append(torch.get_num_threads()), ask(*a, **k))[1]
        session.push_frames = lambda frames: (pushed_at.append((len(frames), torch.get_num_threads())), push(frames))
        frames = pipelined(session, iter(bikes_frames), depth, threads=1)
        assert torch.get_num_threads() == 3  # nothing changes before the first frame is asked for
        run_stream(session, frames, [("What?", 2.5), ("Now?", None)], max_new_tokens=2)
        assert threads_at == [1, 3] and torch.get_num_threads() == 3
        assert pushed_at == [(3, 1), (3, 3)]  # the batch after the source ended: every core

        session.reset()
        result = run_stream(session, pipelined(session, breaking(bikes_frames), depth, threads=1),
                            [("What?", 1.5), ("Now?", 4.0)], max_new_tokens=2)
        assert result.error and list(result.answers) == [0] and torch.get_num_threads() == 3

        session.reset()
        frames = pipelined(session, iter(bikes_frames), depth, threads=1)

        def refuse(i):
            raise RuntimeError("a question that raises")

        with pytest.raises(RuntimeError, match="a question that raises") as raised:
            run_stream(session, frames, [("What?", 1.5)], ask=refuse)
        assert raised.traceback  # which holds the frames alive: the threads come back at once, not at collection
        assert torch.get_num_threads() == 3
        session.reset()
        frames = pipelined(session, iter(bikes_frames), depth, threads=2)
        next(frames)
        assert torch.get_num_threads() == 2
        frames.close()  # a consumer that leaves early
        assert torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads must be >= 1"):
            pipelined(session, iter(bikes_frames), depth, threads=0)
    finally:
        torch.set_num_threads(own)


def test_a_prepared_frame_holds_what_preprocessing_gives(tiny, bikes_frames):
    from videollama3.preprocess import preprocess_frames

    session = build_session(*tiny, "hierarchical")
    frame = bikes_frames[0][0]
    prepared = session.prepare(frame)
    want = preprocess_frames(frame, session.frame_tokens, dtype=session.model.vision_dtype)
    assert prepared.frame is frame and prepared.shape == frame.shape
    assert all(torch.equal(a, b) for a, b in zip((prepared.pixel_values, prepared.grid_thw, prepared.merge_sizes), want))
    with pytest.raises(ValueError, match=r"one \(H, W, 3\) uint8 RGB frame"):
        session.prepare(frame[None])


def test_fifo_session_keeps_the_frame_each_question_was_asked_at(tiny, bikes_frames):
    session = build_session(*tiny, "fifo", {"num_recent": 2})
    result = run_stream(session, iter(bikes_frames), [("first?", 2.0), ("second?", None)], max_new_tokens=1)
    assert result.answers[0].tiers == {"recent": [1.0, 2.0], "prompted": []}
    assert result.answers[1].tiers == {"recent": [4.0, 5.0], "prompted": [2.0]}  # frame 2 outlived the window
    assert result.answers[1].visual_tokens == 3 * 126  # bikes.mp4: 7x18 tokens a frame
    assert isinstance(session.memory, FIFOMemory) and session.memory.prompted_frames == [2, 5]


def test_lru_session_counts_one_use_per_question(tiny, bikes_frames):
    session = build_session(*tiny, "lru_quantized", {"capacity": 3, "grace_frames": 1})
    for f, t in bikes_frames[:3]:
        session.push_frame(f, t)
    answer = session.ask("what?", max_new_tokens=1)
    assert session.memory.stats()["uses"] == [1, 1, 1]
    # unused until the question: frames 0 and 1 fell to 8 bits as frames arrived
    assert answer.tiers == {"32-bit": [2.0], "16-bit": [], "8-bit": [0.0, 1.0]}
    session.push_frame(*bikes_frames[3])  # full: frame 0 goes (as used as frame 1, older); frame 2 earns 16 bits
    assert [(e.frame_index, e.tier) for e in session.memory.readout()] == [(1, 2), (2, 1), (3, 0)]


def test_the_model_is_sized_from_the_memory_it_is_given(tiny):
    width = tiny[0].config.vision_config.hidden_size
    for name in MEMORY_BACKENDS:
        session = build_session(*tiny, name)
        assert session.memory.mm_hidden_size == width
        adapter = session.model.adapter
        assert (adapter.in_dim, adapter.out_dim, adapter.num_tiers) == (width, width, len(session.memory.memory_tier_names))
    assert build_session(*tiny, "hierarchical", {"memory_capacities": [2, 1, 1]}).memory.config.memory_capacities == (2, 1, 1)
    other = build_session(*tiny, "hierarchical", {"mm_hidden_size": 48})  # features from another encoder
    assert (other.model.adapter.in_dim, other.model.adapter.out_dim, other.model.memory_width) == (48, width, 48)
    one_tier = build_session(*tiny, "unbounded")
    with pytest.raises(MemoryConfigError, match="has 2 tiers but the model's FeatureAdapter embeds 1"):
        StreamingSession(one_tier.model, one_tier.processor, build_memory("fifo", mm_hidden_size=width))
    with pytest.raises(MemoryConfigError, match="width 48 but the model takes 32"):
        StreamingSession(one_tier.model, one_tier.processor, build_memory("unbounded", mm_hidden_size=48))


def test_memory_none_is_unbounded_without_an_adapter(tiny):
    session = build_session(*tiny, "none")
    assert session.model.adapter is None and session.memory.memory_tier_names == ("all",)
    assert build_session(*tiny, "unbounded").model.adapter is not None


# ------------------------------------------------------------------- options
@pytest.mark.parametrize("text, value", [("6", 6), ("0.5", 0.5), ("true", True), ("8,4,1", [8, 4, 1]),
                                         ("[144, 64]", [144, 64]), ("feature", "feature"), ("a,b", ["a", "b"])])
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_memory_options_and_config_files(tmp_path):
    assert parse_memory_options(["num_recent=4", " capacity = 3 "]) == {"num_recent": 4, "capacity": 3}
    with pytest.raises(MemoryConfigError, match="not key=value"):
        parse_memory_options(["num_recent"])
    (tmp_path / "m.yaml").write_text("memory: fifo\noptions:\n  num_recent: 3\n")
    (tmp_path / "flat.json").write_text('{"capacity": 5}')
    (tmp_path / "bad.yaml").write_text("memory: [unclosed\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_memory_config(tmp_path / "m.yaml") == ("fifo", {"num_recent": 3})
    assert read_memory_config(tmp_path / "flat.json") == (None, {"capacity": 5})
    for name, message in [("bad.yaml", "does not parse"), ("list.json", "mapping"), ("none.yaml", "no such")]:
        with pytest.raises(MemoryConfigError, match=message):
            read_memory_config(tmp_path / name)


# ----------------------------------------------------------------------- CLI
def answer(capsys, videos, tmp_path, *argv):
    output = tmp_path / "out.json"
    code = main(["answer", str(videos / "bikes.mp4"), "-q", "What moves?", "--at", "4.5", "-q", "And now?",
                 "--model", "tiny", "--max-new-tokens", "2", "--quiet", "--output", str(output), *argv])
    _, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(output.read_text())


@pytest.mark.parametrize(
    "argv, memory, tokens",
    [
        (["--memory", "fifo", "--memory-option", "num_recent=2"], "fifo", [2 * 126, 3 * 126]),
        (["--memory", "lru_quantized"], "lru_quantized", [5 * 126, 7 * 126]),
        (["--memory", "hierarchical", "--memory-option", "memory_capacities=4,2,1"], "hierarchical",
         [4 * 126 + 60, 4 * 126 + 2 * 60 + 36]),  # bikes.mp4: 7x18, 5x12 in mid, 4x9 in long
    ],
)
def test_answer_with_each_backend_end_to_end(videos, tmp_path, capsys, argv, memory, tokens):
    report = answer(capsys, videos, tmp_path, *argv)
    assert report["memory"] == memory and report["frames_encoded"] == 10
    assert [a["visual_tokens"] for a in report["answers"]] == tokens
    assert report["memory_stats"]["frames_added"] == 10


def test_answer_with_significance_and_a_config_file(videos, tmp_path, capsys):
    config = tmp_path / "memory.yaml"
    config.write_text("memory: significance\noptions:\n  criterion: pixel\n  stored_tokens: 36\n")
    report = answer(capsys, videos, tmp_path, "--memory-config", str(config), "--memory-option", "threshold=0.02")
    assert report["memory"] == "significance"
    assert report["memory_options"] == {"criterion": "pixel", "stored_tokens": 36, "threshold": 0.02}
    stats = report["memory_stats"]
    assert stats["frames_added"] == 10 and 1 <= stats["frames_stored"] <= 10
    assert report["answers"][-1]["visual_tokens"] == 36 * stats["entries"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--memory", "fifo", "--memory-option", "num_recent"], "not key=value"),
        (["--memory", "fifo", "--memory-option", "bogus=1"], "unknown option(s) bogus for memory 'fifo'"),
        (["--memory", "lru_quantized", "--memory-option", "capacity=0"], "capacity must be an integer >= 1"),
        (["--memory", "none", "--memory-option", "x=1"], "--memory none takes no options"),
        (["--memory-config", "missing.yaml"], "no such memory config file"),
    ],
)
def test_bad_memory_options_exit_2_with_one_line(videos, capsys, argv, message):
    code = main(["answer", str(videos / "bikes.mp4"), "-q", "x", "--model", "tiny", "--quiet", *argv])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
