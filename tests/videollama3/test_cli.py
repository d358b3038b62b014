import json
import os
import subprocess
import sys

import pytest

from videollama3.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_answer_end_to_end_on_bikes(videos, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    output = tmp_path / "answers.json"
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Any cars?", "time": 7.2}) + "\n")
    code, out, err = run(capsys, "answer", str(videos / "bikes.mp4"), "-q", "What is moving?", "--at", "4.5",
                         "-q", "How many bikes?", "--questions", str(questions), "--model", "tiny",
                         "--max-new-tokens", "4", "--output", str(output), "--quiet")
    assert code == 0, err
    assert torch.get_num_threads() == threads  # the core left to the decoders while frames came is given back
    report = json.loads(output.read_text())
    assert report["frames_encoded"] == 10 and report["decoding_stopped_at"] is None
    answers = report["answers"]
    assert [a["question"] for a in answers] == ["What is moving?", "How many bikes?", "Any cars?"]
    assert [a["frames_seen"] for a in answers] == [5, 10, 8]
    assert [a["time"] for a in answers] == [4.0, 9.0, 7.0]
    # bikes.mp4 is 640x272: 7x18 = 126 tokens a frame (aspect kept); 5x12 = 60 in mid
    # 5 frames: all in short; 10 frames: 8 short x 126 + 2 mid x 60
    assert [a["visual_tokens"] for a in answers] == [5 * 126, 8 * 126 + 2 * 60, 8 * 126]
    assert answers[0]["tiers"] == {"short": [0.0, 1.0, 2.0, 3.0, 4.0], "mid": [], "long": []}
    assert all(a["latency_s"] > 0 for a in answers)
    assert "[4.0s] Q: What is moving?" in out and "visual tokens" in out


@pytest.mark.parametrize("dtype, held", [("auto", "float32"), ("bfloat16", "bfloat16"), ("float16", "float16")])
def test_dtype_sets_the_model_and_what_the_memory_holds(videos, tmp_path, capsys, dtype, held):
    """--dtype: auto is float32 on the CPU; bfloat16 / float16 load the model so, its frames' tokens are held
    so, and the report says which."""
    import torch

    from videollama3.loading import load_session, resolve_load_spec

    output = tmp_path / "answers.json"
    code, _, err = run(capsys, "answer", str(videos / "bikes.mp4"), "-q", "What moves?", "--at", "3", "--model", "tiny",
                       "--dtype", dtype, "--max-new-tokens", "2", "--output", str(output), "--quiet")
    assert code == 0, err
    report = json.loads(output.read_text())
    assert report["dtype"] == held and report["answers"][0]["frames_seen"] == 4
    session = load_session(resolve_load_spec("tiny"), dtype=getattr(torch, held))
    session.push_frame(torch.zeros(272, 640, 3, dtype=torch.uint8).numpy(), 0.0)
    assert {p.dtype for p in session.model.model.parameters()} == {getattr(torch, held)}
    assert [e.tokens.dtype for e in session.memory.readout()] == [getattr(torch, held)]


def test_memory_none_is_the_native_view(videos, capsys):
    code, out, _ = run(capsys, "answer", str(videos / "bikes.mp4"), "-q", "What?", "--model", "tiny", "--memory",
                       "none", "--max-new-tokens", "2", "--quiet")
    assert code == 0 and "1260 visual tokens" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{tmp}/missing.mp4", "-q", "x"], "no such video file"),
        (["{tmp}/text.mp4", "-q", "x"], "cannot open"),
        (["{tmp}/empty.mp4", "-q", "x"], "empty"),
        (["{tmp}/cut.mp4", "-q", "x"], "cannot open"),
        (["{bikes}", "-q", "x", "--at", "11"], "beyond the end"),
        (["{bikes}", "-q", "x", "--at", "1e300"], "question time 1e+300 s is beyond the end of the video (10.00 s)"),
        (["{bikes}", "-q", "x", "--at", "-1"], "negative"),
        (["{bikes}", "-q", "x", "--memory", "lru"], "unknown memory 'lru'; known: hierarchical, fifo, lru_quantized, significance, unbounded, none"),
        (["{bikes}", "--at", "1"], "--at 1.0 comes before any -q"),
        (["{bikes}"], "no question given"),
        (["{bikes}", "--questions", "{tmp}/bad.jsonl"], "line 1"),
        (["{bikes}", "--questions", "{tmp}/at.jsonl"], "at.jsonl line 2: expected a JSON object with 'question' (and "
                                                       "optional 'time' in seconds): unknown field 'at'"),
        (["{bikes}", "-q", "x", "--model", "{tmp}/no-model"], "does not exist"),
        (["{bikes}", "-q", "x", "--encode-batch", "0"], "--encode-batch must be a number of frames >= 1, got 0"),
        (["{bikes}", "-q", "x", "--torch-threads", "0"], "--torch-threads must be a number of threads >= 1, got 0"),
        (["{bikes}", "-q", "x", "--frame-rate", "0"], "--frame-rate must be a positive, finite number"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, videos, tmp_path, capsys):
    (tmp_path / "text.mp4").write_text("hello")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "cut.mp4").write_bytes((videos / "bikes.mp4").read_bytes()[:100_000])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    (tmp_path / "at.jsonl").write_text('{"question": "a?", "time": 1}\n{"question": "b?", "at": 3}\n')  # not asked at the end
    argv = [a.format(tmp=tmp_path, bikes=videos / "bikes.mp4") for a in argv]
    if "--model" not in argv:
        argv += ["--model", "tiny"]
    code, out, err = run(capsys, "answer", *argv, "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vl3mem: error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_unreachable_default_model_suggests_tiny(videos):
    """As a user would run it: a subprocess, real exit status, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "videollama3", "answer", str(videos / "bikes.mp4"), "-q", "x",
                           "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "--model tiny" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_decoding_that_fails_half_way_answers_what_it_reached(tiny, bikes_frames):
    from videollama3.errors import VideoError
    from videollama3.loading import build_session
    from videollama3.session import run_stream

    def broken():
        yield from bikes_frames[:4]
        raise VideoError("decoding x stopped at 3.40s", "x", stopped_at=3.4)

    session = build_session(*tiny)
    result = run_stream(session, broken(), [("early", 1.5), ("late", 5.0), ("end", None)], max_new_tokens=2)
    assert sorted(result.answers) == [0] and result.answers[0].frames_seen == 2
    assert result.stopped_at == 3.4 and "stopped at 3.40s" in result.error
