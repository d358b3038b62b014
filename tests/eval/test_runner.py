"""The one-pass evaluation: outputs, resume, shards, no future leak, evidence retention."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videollama3.questions import TimedQuestion, VideoQuestions
from eval.benchmarks import BENCHMARKS
from eval.runner import PredictionStore, evaluate_video, read_records, retention
from videollama3.loading import build_session
from vl3mem.cli import main

from ..videollama3.test_parity import capture_llm_inputs

DEV = Path(__file__).parents[2] / "eval" / "data" / "dev.jsonl"


def run_eval(capsys, videos, out, *argv):
    code = main(["eval", "--benchmark", "jsonl", "--annotations", str(DEV), "--video-root", str(videos),
                 "--model", "tiny", "--output-dir", str(out), "--quiet", "--max-new-tokens", "4", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_outputs_and_resume(videos, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_eval(capsys, videos, out, "--limit", "5")
    assert code == 0, err
    first = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in first] == ["vtest-01", "vtest-02", "vtest-03", "vtest-04", "vtest-05"]
    code, stdout, err = run_eval(capsys, videos, out)  # resume: the 5 answered are not asked again
    assert code == 0, err
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert lines[:5] == first and len(lines) == 31 == len({json.loads(x)["id"] for x in lines})
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in lines]
    correct = sum(r["correct"] for r in records)
    assert summary["questions"] == 31 and summary["accuracy"]["micro"] == round(100 * correct / 31, 2)
    assert sum(t["total"] for t in summary["accuracy"]["tasks"].values()) == 31
    for r in records:  # each answered from the memory at its time, nothing later
        assert r["asked_at"] <= r["time"] and r["frames_seen"] == int(r["time"]) + 1
        assert r["prediction"] is not None and r["visual_tokens"] > 0 and r["memory_bytes"] > 0
    for name in ("report.md", "accuracy.png", "timeline.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "## Accuracy" in report and "accuracy: micro" in stdout
    held = summary["mean_memory_bytes"]  # the mean of the records', shown in MiB and in whole bytes
    assert held == round(sum(r["memory_bytes"] for r in records) / 31, 4)
    assert f"- mean memory held: {held / 2**20:.2f} MiB ({held:.0f} bytes)" in report
    tokens = summary["mean_visual_tokens"]
    assert tokens == round(sum(r["visual_tokens"] for r in records) / 31, 4)
    assert f"- mean visual tokens: {round(tokens, 1)}" in report
    code, _, err = run_eval(capsys, videos, out, "--memory", "fifo")  # other settings: refused
    assert code == 2 and "holds a run with other settings (memory)" in err
    code, _, err = run_eval(capsys, videos, out, "--dtype", "bfloat16")  # another dtype is another run too
    assert code == 2 and "holds a run with other settings (dtype)" in err


def test_shards_merge_into_one_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "predictions.jsonl").write_text(json.dumps({"id": "a"}) + "\n")
    for rank, ids in ((0, ["b", "c"]), (1, ["d", "a"])):
        store = PredictionStore(out, rank, 2)
        for i in ids:
            store.append({"id": i})
    assert {p.name for p in PredictionStore(out, 0, 2).shard_paths()} == {"predictions.rank0.jsonl", "predictions.rank1.jsonl"}
    assert PredictionStore(out, 1, 2).load() == {"a", "b", "c", "d"}
    merged = PredictionStore(out, 0, 2).merge()
    assert [r["id"] for r in merged] == ["a", "b", "c", "d"]
    assert [r["id"] for r in read_records(out / "predictions.jsonl")] == ["a", "b", "c", "d"]
    assert not (out / "shards").exists()


def launch_two_processes(*eval_argv: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``python -m eval`` on two CPU processes (gloo), on a free port of its own."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend",
           "no", "-m", "eval", *eval_argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_accelerate_launch_with_two_cpu_processes(videos, tmp_path):
    out = tmp_path / "dist"
    proc = launch_two_processes("--benchmark", "jsonl", "--annotations", str(DEV), "--video-root", str(videos),
                                "--model", "tiny", "--no-model", "--output-dir", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["questions"] == 31
    records = read_records(out / "predictions.jsonl")
    assert len(records) == 31 == len({r["id"] for r in records}) and not (out / "shards").exists()


def test_two_processes_report_what_each_skipped(videos, tmp_path):
    """The video rank 1 could not read is in rank 0's summary and report, with its question unanswered."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "bikes.mp4").symlink_to(videos / "bikes.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    ann = tmp_path / "a.jsonl"  # videos are dealt out in file order: bikes.mp4 to rank 0, broken.mp4 to rank 1
    ann.write_text("\n".join(json.dumps({"video": v, "questions": [
        {"id": v, "time": 2, "question": "What?", "options": ["a", "b"], "answer": "A"}]}) for v in ("bikes.mp4", "broken.mp4")))
    out = tmp_path / "dist"
    proc = launch_two_processes("--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(root),
                                "--model", "tiny", "--no-model", "--output-dir", str(out), "--quiet", "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["questions"] == 1 and summary["unanswered"] == ["broken.mp4"]
    (skipped,) = summary["skipped_videos"]
    assert "broken.mp4" in skipped and "1 questions not asked" in skipped
    assert "## Videos skipped (--skip-bad): they could not be read" in (out / "report.md").read_text()


def test_bad_annotations_exit_2_or_are_skipped(videos, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(DEV.read_text().splitlines()[1] + "\n" + json.dumps({"video": "missing.mp4", "questions": []}) + "\n")
    code = main(["eval", "--benchmark", "jsonl", "--annotations", str(bad), "--video-root", str(videos),
                 "--model", "tiny", "--output-dir", str(tmp_path / "o"), "--quiet", "--no-model"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "line 2: video 'missing.mp4' not found" in err
    code = main(["eval", "--benchmark", "jsonl", "--annotations", str(bad), "--video-root", str(videos),
                 "--model", "tiny", "--output-dir", str(tmp_path / "o"), "--quiet", "--no-model", "--skip-bad"])
    capsys.readouterr()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert code == 0 and summary["questions"] == 14 and "missing.mp4" in summary["skipped_records"][0]


@pytest.mark.parametrize("altered_from", [4, 0])
def test_no_future_frame_reaches_an_evaluated_answer(tiny, bikes_frames, tmp_path, monkeypatch, altered_from):
    """A question at 3.0 s: altering frames >= 4 changes neither the LLM input nor the record."""
    import eval.runner

    model, tokenizer = tiny
    video = VideoQuestions(Path("bikes.mp4"), 1, [TimedQuestion("q", 3.0, "What?", ["a", "b"], "A")])
    results = []
    for frames in (bikes_frames, [(255 - f if i >= altered_from else f, t) for i, (f, t) in enumerate(bikes_frames)]):
        reader = type("Reader", (), {"info": type("Info", (), {"duration": 6.0})(), "close": lambda self: None,
                                     "frames": lambda self, fps, start, end, frames=frames: iter(frames)})
        monkeypatch.setattr(eval.runner, "open_video", lambda path, rate, reader=reader: reader())
        store = PredictionStore(tmp_path / f"o{len(results)}")
        seen, handle = capture_llm_inputs(model)
        try:
            evaluate_video(build_session(model, tokenizer), video, 1, store, BENCHMARKS["jsonl"], max_new_tokens=2)
        finally:
            handle.remove()
        (record,) = read_records(store.path)
        assert record["frames_seen"] == 4 and record["asked_at"] == 3.0
        results.append((seen[0], record["prediction"]))
    assert torch.equal(results[0][0], results[1][0]) == (altered_from == 4)


def test_no_model_retention_hierarchical_keeps_old_evidence_fifo_does_not(videos, tmp_path, capsys):
    ann = tmp_path / "old.jsonl"
    ann.write_text(json.dumps({"video": "vtest.avi", "fps": 1, "questions": [
        {"id": "old", "time": 60, "question": "What happened at the start?", "options": ["a", "b"], "answer": "A",
         "task": "past", "evidence": [2, 4]}]}) + "\n")
    kept = {}
    for memory in ("hierarchical", "fifo"):
        code = main(["eval", "--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(videos),
                     "--model", "tiny", "--memory", memory, "--no-model", "--output-dir", str(tmp_path / memory),
                     "--quiet"])
        assert code == 0, capsys.readouterr().err
        (record,) = read_records(tmp_path / memory / "predictions.jsonl")
        assert record["prediction"] is None and record["correct"] is None
        kept[memory] = record["retention"]
    capsys.readouterr()
    assert kept["hierarchical"]["kept_any"] and kept["hierarchical"]["tier"] in ("short", "mid", "long")
    assert kept["fifo"] == {"kept_own": False, "kept_any": False, "only_merged": False, "tier": None, "weight": 0.0}
    # "kept at all" by a summary spanning the whole past; the weight says how little of it is the window
    assert 0 < kept["hierarchical"]["weight"] < 0.05


def test_retention_reads_the_memory_entries():
    from memory_bank import MemoryEntry

    tokens = torch.zeros(4, 2)
    entries = [MemoryEntry(tokens, (2, 2), 0, 0.0, tier=2, last_frame_index=3, end_timestamp=3.0, num_frames=4),
               MemoryEntry(tokens, (2, 2), 5, 5.0, tier=1),
               MemoryEntry(tokens, (2, 2), 9, 9.0), MemoryEntry(tokens, (2, 2), 10, 10.0)]
    names = ("short", "mid", "long")
    assert retention(entries, names, (4.5, 5.5)) == {"kept_own": True, "kept_any": True, "only_merged": False,
                                                      "tier": "mid", "weight": 0.25}  # 4 of 16 tokens
    # frames 1 and 2 of the summary of frames 0-3: half its 4 tokens, of 16
    assert retention(entries, names, (1.0, 2.0)) == {"kept_own": False, "kept_any": True, "only_merged": True,
                                                      "tier": "long", "weight": 0.125}
    assert retention(entries, names, (6.0, 8.0)) == {"kept_own": False, "kept_any": False, "only_merged": False,
                                                      "tier": None, "weight": 0.0}
    assert retention(entries, names, None) is None


def test_the_report_gives_frames_per_second_and_time_per_stage(videos, tmp_path, capsys):
    out = tmp_path / "speed"
    code, _, err = run_eval(capsys, videos, out, "--limit", "3", "--decode-ahead", "2")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    speed = summary["throughput"]
    assert speed["frames"] > 0 and speed["questions"] == 3 and speed["frames_per_s"] > 0
    assert set(speed["ms_per_frame"]) == {"decode", "preprocess", "encode", "add"}
    report = (out / "report.md").read_text()
    assert "## Throughput" in report and f"frames encoded: {speed['frames']}" in report
