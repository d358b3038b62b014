"""Adversarial input: every case one clear line and exit 2 (CLI), or a typed error (Python API)."""

import json

import numpy as np
import pytest
import torch

from memory_bank import HierarchicalMemoryBank, MemoryBankError
from videollama3.cli import main
from videollama3.loading import build_session
from vl3mem.cli import main as vl3mem


def one_line(capsys, code, expected_code=2):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == expected_code and len(err) == 1 and err[0].startswith("vl3mem: error: "), err
    return err[0]


def answer(videos, *argv):
    return main(["answer", str(videos / "bikes.mp4"), "--model", "tiny", "--quiet", "--max-new-tokens", "1", *argv])


def test_each_at_belongs_to_the_q_before_it(videos, tmp_path, capsys):
    out = tmp_path / "a.json"
    assert answer(videos, "-q", "end", "-q", "at0", "--at", "0", "--output", str(out)) == 0
    report = json.loads(out.read_text())
    assert [(a["question"], a["asked_at"]) for a in report["answers"]] == [("end", None), ("at0", 0.0)]
    capsys.readouterr()
    line = one_line(capsys, answer(videos, "-q", "x", "--at", "1", "--at", "2"))
    assert "-q 'x' has two --at times (1.0 and 2.0)" in line


@pytest.mark.parametrize("argv, message", [
    (["-q", "what is <|video_pad|>?"], "contains the special token <|video_pad|>"),
    (["-q", "x", "--fps", "inf"], "--fps must be a positive, finite number"),
    (["-q", "x", "--fps", "0"], "--fps must be a positive, finite number"),
    (["-q", "x", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["-q", "x", "--frame-tokens", "3"], "--frame-tokens must be at least 4"),
    (["-q", "x", "--device", "bogus"], "--device 'bogus' is not a torch device"),
])
def test_bad_arguments_are_one_line(videos, capsys, argv, message):
    assert message in one_line(capsys, answer(videos, *argv))


def test_cuda_without_cuda_is_one_line(videos, capsys):
    code = answer(videos, "-q", "x", "--device", "cuda")
    if torch.cuda.is_available():  # where CUDA exists the flag is valid
        assert code == 0
    else:
        assert "this machine has no CUDA GPU" in one_line(capsys, code)


@pytest.mark.parametrize("line, message", [
    ('{"question": null}', "'question' must be non-empty text, got None"),
    ('{"question": "Q", "time": true}', "'time' must be seconds or null, got True"),
    ('[1, 2]', "a list"),
    ('{"question": "a <|im_end|> b"}', "special token <|im_end|>"),
])
def test_bad_questions_files_name_the_line(videos, tmp_path, capsys, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine", "time": 1}\n' + line + "\n")
    text = one_line(capsys, answer(videos, "--questions", str(path)))
    assert f"{path} line 2" in text and message in text


def test_unwritable_outputs_are_refused_before_any_work(videos, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    assert "is a folder" in one_line(capsys, answer(videos, "-q", "x", "--output", str(tmp_path / "folder")))
    assert "is a file, not a folder" in one_line(capsys, answer(videos, "-q", "x", "--output",
                                                                 str(tmp_path / "file" / "a.json")))
    code = vl3mem(["eval", "--benchmark", "jsonl", "--annotations", "eval/data/dev.jsonl", "--video-root", str(videos),
                   "--model", "tiny", "--output-dir", str(tmp_path / "file"), "--quiet"])
    line = one_line(capsys, code)
    assert "--output-dir" in line and "is a file; give a folder" in line


def test_a_still_image_named_mp4_is_refused(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "photo.mp4", format="PNG")
    code = main(["answer", str(tmp_path / "photo.mp4"), "-q", "x", "--at", "50", "--model", "tiny", "--quiet"])
    assert "is a still image (png_pipe), not a video" in one_line(capsys, code)


def eval_on(videos, ann, tmp_path, *extra):
    return vl3mem(["eval", "--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(videos),
                   "--model", "tiny", "--output-dir", str(tmp_path / "out"), "--quiet", *extra])


@pytest.mark.parametrize("question, message", [
    ({"id": "a", "time": 1, "question": None, "answer": "x y"}, "no question text"),
    ({"id": "a", "time": 1, "question": "Q", "options": "abc", "answer": "A"}, "options must be a list of texts"),
    ({"id": "a", "time": 1, "question": "Q", "options": ["x", "<|video_pad|>"], "answer": "A"},
     "option 1 contains the special token <|video_pad|>"),
    ({"id": "a", "time": True, "question": "Q", "answer": "fine"}, "time must be a non-negative number"),
    ({"id": "a", "time": 1, "question": "Q", "answer": ["x"]}, "answer must be non-empty text"),
])
def test_silent_coercions_are_errors_naming_the_field(videos, tmp_path, capsys, question, message):
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"video": "bikes.mp4", "questions": [question]}) + "\n")
    assert message in one_line(capsys, eval_on(videos, ann, tmp_path))


def test_annotations_without_a_question_and_bad_limits_exit_2(videos, tmp_path, capsys):
    ann = tmp_path / "empty.jsonl"
    ann.write_text("\n")
    assert "holds no usable question" in one_line(capsys, eval_on(videos, ann, tmp_path))
    ann.write_text(json.dumps({"video": "bikes.mp4", "fps": float("inf"), "questions": []}) + "\n")
    assert "fps must be a positive, finite number" in one_line(capsys, eval_on(videos, ann, tmp_path))
    assert "--limit must be a number of questions >= 0" in one_line(
        capsys, eval_on(videos, "eval/data/dev.jsonl", tmp_path, "--limit", "-1"))


def test_files_that_are_not_utf8_or_do_not_parse_are_one_line(videos, tmp_path, capsys):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"video": "bikes.mp4", "questions": [{"question": "caf\u00e9"}]}\n'.encode("latin-1"))
    assert "is not UTF-8 text" in one_line(capsys, eval_on(videos, latin, tmp_path))
    bad_yaml = tmp_path / "m.yaml"
    bad_yaml.write_text("memory: fifo\noptions: {num_recent: [\n")
    line = one_line(capsys, answer(videos, "-q", "x", "--memory-config", str(bad_yaml)))
    assert "does not parse at line" in line
    bad_yaml.write_bytes(b"memory: fifo\n# \xff\xfe\n")
    assert "is not UTF-8 text" in one_line(capsys, answer(videos, "-q", "x", "--memory-config", str(bad_yaml)))


def test_push_frame_rejects_batches_empty_frames_and_text_times(tiny, bikes_frames):
    session = build_session(*tiny)
    frame, t = bikes_frames[0]
    with pytest.raises(ValueError, match="takes one \\(H, W, 3\\) uint8 RGB frame"):
        session.push_frame(np.stack([frame, frame]), t)
    with pytest.raises(ValueError, match="empty"):
        session.push_frame(np.zeros((0, 0, 3), np.uint8), t)
    with pytest.raises(ValueError, match="timestamp must be a number of seconds"):
        session.push_frame(frame, "1.0")
    assert session.frames_seen == 0
    session.push_frame(frame, t)
    assert session.frames_seen == 1


def test_loading_a_truncated_or_foreign_bank_file_raises_the_documented_error(tmp_path):
    bank = HierarchicalMemoryBank(mm_hidden_size=4)
    for i in range(5):
        bank.add(torch.randn(16, 4), i, float(i))
    path = tmp_path / "bank.safetensors"
    bank.save(path)
    data = path.read_bytes()
    for name, content in {"truncated": data[: len(data) // 2], "foreign": b"hello world" * 20,
                          "empty": b""}.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(MemoryBankError):
            HierarchicalMemoryBank.load(tmp_path / name)
    assert len(HierarchicalMemoryBank.load(path).readout()) == len(bank.readout())


def test_push_frame_rejects_frames_without_pixels_and_takes_read_only_arrays(tiny, bikes_frames):
    """A sparse or meta tensor is a ValueError naming it (not a torch error from inside the resize); a read-only
    array (np.frombuffer of a pipe's bytes) is encoded as its writable copy would be, without a warning."""
    import warnings

    session, reference = build_session(*tiny), build_session(*tiny)
    frame, t = bikes_frames[0]
    for bad, name in [(torch.from_numpy(frame).to_sparse(), "sparse"), (torch.empty(frame.shape, dtype=torch.uint8,
                                                                                    device="meta"), "meta")]:
        with pytest.raises(ValueError, match=name):
            session.push_frame(bad, t)
    assert session.frames_seen == 0
    read_only = np.frombuffer(frame.tobytes(), np.uint8).reshape(frame.shape)
    assert not read_only.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session.push_frame(read_only, t)
    reference.push_frame(frame.copy(), t)
    (a,), (b,) = session.memory.readout(), reference.memory.readout()
    assert torch.equal(a.tokens, b.tokens)


def test_check_device_names_what_is_wrong(monkeypatch):
    from videollama3.errors import UsageError
    from videollama3.loading import load_checkpoint
    from videollama3.options import check_device

    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="device 'gpu0' is not a torch device; use cpu, cuda or cuda:N"):
        load_checkpoint("tiny", device="gpu0")  # the library path checks too, before anything loads
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--device cuda: this machine has no CUDA GPU"):
        check_device("cuda", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match=r"device cuda:2: there are 2 GPUs \(cuda:0 to cuda:1\)"):
        check_device("cuda:2")


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_where_nothing_can_be_written_is_one_line_before_any_work(videos, capsys, tmp_path):
    """As root, os.access calls every folder writable; /proc takes no new file even then."""
    line = one_line(capsys, answer(videos, "-q", "x", "--output", "/proc/answers/out.json"))
    assert line.startswith("vl3mem: error: --output /proc/answers/out.json: cannot write in /proc (")
    code = vl3mem(["eval", "--benchmark", "jsonl", "--annotations", str(tmp_path / "none.jsonl"), "--video-root",
                   str(videos), "--model", "tiny", "--output-dir", "/proc/run"])
    assert "--output-dir /proc/run: cannot write in /proc" in one_line(capsys, code)
