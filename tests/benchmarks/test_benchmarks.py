"""The benchmarks run as ``vl3mem bench ...`` and say which flag to pass when a sample video is missing."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.encode import main as bench_encode
from vl3mem.cli import main


def test_bench_memory_all_writes_table_and_plot(videos, tmp_path, capsys):
    plot, numbers = tmp_path / "tokens.png", tmp_path / "bench.json"
    evidence = tmp_path / "evidence.jsonl"
    evidence.write_text(json.dumps({"video": "bikes.mp4", "fps": 1, "questions": [
        {"id": "q", "time": 5.5, "question": "What?", "options": ["a", "b"], "answer": "A", "evidence": [2, 3]},
        {"id": "late", "time": 9.5, "question": "What?", "options": ["a", "b"], "answer": "A", "evidence": [0, 0.5]}]}))
    code = main(["bench", "memory", "--all", "--videos", str(videos / "bikes.mp4"), "--fps", "1",
                 "--backends", "hierarchical", "fifo", "unbounded", "significance:criterion=ssim:buffer_size=3",
                 "--plot", str(plot), "--json", str(numbers),
                 "--evidence", str(evidence), "--video-root", str(videos)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # at 5.5 s every backend holds frames 0-5 as their own entries: 2 of 6 equal frames are evidence; at 9.5 s
    # fifo has let frame 0 go, unbounded holds it as 1 of 10 frames, hierarchical as a 60-token mid-tier frame of
    # the 8 * 126 + 2 * 60 tokens it holds
    evidence_kept = json.loads(numbers.read_text())["evidence"]
    assert evidence_kept.pop("significance:criterion=ssim:buffer_size=3")["questions"] == 2
    assert evidence_kept == {
        "hierarchical": {"questions": 2, "kept_own_pct": 100.0, "kept_any_pct": 100.0,
                         "weight_pct": round(100 * (2 / 6 + 60 / (8 * 126 + 2 * 60)) / 2, 2)},
        "fifo": {"questions": 2, "kept_own_pct": 50.0, "kept_any_pct": 50.0, "weight_pct": round(100 / 6, 2)},
        "unbounded": {"questions": 2, "kept_own_pct": 100.0, "kept_any_pct": 100.0,
                      "weight_pct": round(100 * (2 / 6 + 1 / 10) / 2, 2)}}
    results = json.loads(numbers.read_text())["bikes.mp4"]
    ssim = results.pop("significance:criterion=ssim:buffer_size=3")  # compares raw frames: it was given them
    assert 1 <= ssim["frames_stored"] <= 10 and ssim["entries"] == min(3, ssim["frames_stored"])
    assert {k: (r["frames"], r["frames_stored"], r["tokens"]) for k, r in results.items()} == {
        "hierarchical": (10, 10, 8 * 126 + 2 * 60), "fifo": (10, 10, 6 * 126), "unbounded": (10, 10, 10 * 126)}
    assert results["unbounded"]["tokens_held"] == [126 * (i + 1) for i in range(10)]  # bikes.mp4: 7x18 a frame
    assert "| fifo " in out and "mean add ms" in out


@pytest.mark.parametrize("spec, message", [("significance:criterion", "is not key=value"),
                                           ("significance:criterion=colour", "criterion"), ("nosuch", "nosuch")])
def test_bench_memory_all_names_a_bad_backend_spec(videos, capsys, spec, message):
    code = main(["bench", "memory", "--all", "--videos", str(videos / "bikes.mp4"), "--backends", spec])
    _, err = capsys.readouterr()
    assert code != 0 and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, flag", [(["memory", "--all", "--videos", "nowhere/vtest.avi"], "--videos"),
                                        (["stream", "--video", "nowhere/vtest.avi"], "--video"),
                                        (["encode", "--videos", "nowhere/vtest.avi"], "--videos")])
def test_a_missing_video_is_one_line_naming_the_flag(capsys, argv, flag):
    code = main(["bench", *argv])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "no video at nowhere/vtest.avi" in lines[0] and f"or pass {flag} PATH" in lines[0]
    assert "scripts/get_sample_videos.sh" in lines[0]


@pytest.mark.parametrize("target", [["memory"], ["memory", "--all"], ["stream"], ["pipeline"], ["encode"], ["head"],
                                    ["serve"]])
def test_every_benchmark_refuses_a_device_there_is_not_in_one_line(capsys, target):
    code = main(["bench", *target, "--device", "tpu9"])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().splitlines() == [
        "vl3mem: error: --device 'tpu9' is not a torch device; use cpu, cuda or cuda:N"]


def test_a_benchmark_run_as_a_module_prints_errors_as_the_command_does():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--frames", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "vl3mem: error: --frames, --pool and --min-adds must be at least 1, got [0], 256, 2000"]


def test_default_videos_are_the_sample_folder_of_a_clone(tmp_path, monkeypatch):
    import benchmarks

    assert benchmarks.sample_video("vtest.avi").parent.parts[-2:] == ("data", "videos")
    (tmp_path / "data" / "videos").mkdir(parents=True)
    (tmp_path / "data" / "videos" / "x.mp4").write_bytes(b"0")
    monkeypatch.setattr(benchmarks, "VIDEO_FOLDERS", (tmp_path / "data" / "videos",))
    assert benchmarks.sample_video("x.mp4") == tmp_path / "data" / "videos" / "x.mp4"


def test_bench_memory_refuses_zero_frames(capsys):
    code = main(["bench", "memory", "--frames", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--frames, --pool and --min-adds must be at least 1" in err[0]


def test_bench_pipeline_prints_the_three_paths_decoding_alone_and_the_ratios(videos, capsys):
    import re

    code = main(["bench", "pipeline", "--videos", str(videos / "bikes.mp4"), "--new-tokens", "2", "--encode-batch", "4",
                 "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| bikes.mp4")]
    assert [r[2].strip() for r in rows] == [
        "sequential", "pipelined", "pipelined, batches of 4", "decode ahead only", "pipelined / sequential",
        "pipelined, batches of 4 / sequential"]
    fps = {r[2].strip(): float(r[3]) for r in rows[:4]}
    ceiling = fps["decode ahead only"] / fps["sequential"]
    for row in rows[4:]:  # the ratio of the median rounds, then of the best, then decoding alone's
        ratio = re.fullmatch(r"(\d+\.\d\d)x \(best rounds \d+\.\d\dx; decoding ahead alone (\d+\.\d\d)x\)", row[3].strip())
        assert ratio is not None and float(ratio[2]) == pytest.approx(ceiling, abs=0.006)


def test_bench_encode_prints_time_per_frame_by_batch_and_the_features_equal_one_at_a_time(videos, capsys):
    results = bench_encode(["--videos", str(videos / "bikes.mp4"), "--frames", "5", "--batches", "1", "2", "5",
                            "--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| bikes.mp4")]
    assert [(r[1].strip(), r[4].strip()) for r in rows] == [("1", "0"), ("2", "0"), ("5", "0")]
    assert "default batch here: 8" in out  # on the CPU
    assert all(float(r[2]) == pytest.approx(results["bikes.mp4"][int(r[1])]["ms_per_frame"], abs=0.006) for r in rows)
    assert all(float(r[3]) == pytest.approx(1000 / float(r[2]), rel=0.01) for r in rows)
    for r in rows:  # the native convolution, timed in the same rounds: its ms, its time over ours, its distance
        numbers = results["bikes.mp4"][int(r[1])]
        assert float(r[5]) == pytest.approx(numbers["native_conv_ms_per_frame"], abs=0.006)
        assert r[6].strip() == f"{numbers['native_conv_ms_per_frame'] / numbers['ms_per_frame']:.2f}x"
        assert 0 < numbers["native_conv_max_abs_diff"] < 1e-4 and float(r[7]) < 1e-4


def test_native_patch_embedding_puts_the_native_convolution_back_for_the_block(tiny):
    import copy

    from torch import nn

    from benchmarks.encode import native_patch_embedding
    from videollama3.modeling import MatmulPatchEmbedding, use_matmul_patch_embedding

    model = copy.deepcopy(tiny[0])
    embeddings = model.model.vision_model.embeddings
    with native_patch_embedding(model) as swapped:  # the model as transformers builds it: nothing to replace
        assert swapped is False and type(embeddings.patch_embedding) is nn.Conv2d
    use_matmul_patch_embedding(model)
    ours = embeddings.patch_embedding
    with native_patch_embedding(model) as swapped:
        conv = embeddings.patch_embedding
        assert swapped is True and type(conv) is nn.Conv2d
        assert conv.weight is ours.weight and conv.bias is ours.bias and conv.stride == ours.stride == (14, 14)
    assert embeddings.patch_embedding is ours and isinstance(ours, MatmulPatchEmbedding)


def test_bench_encode_refuses_a_batch_of_zero(capsys):
    assert main(["bench", "encode", "--batches", "0"]) == 2
    assert "--batches and --repeats must be at least 1" in capsys.readouterr().err


def test_bench_pipeline_refuses_an_encode_batch_of_zero(capsys):
    assert main(["bench", "pipeline", "--encode-batch", "0"]) == 2
    assert "--encode-batch and --repeats must be at least 1" in capsys.readouterr().err


def test_bench_serve_prints_rates_drops_and_latencies(videos, capsys):
    code = main(["bench", "serve", "--videos", str(videos / "bikes.mp4"), "--sessions", "1", "2", "--seconds", "3",
                 "--ask-every", "1"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert [r[0].strip() for r in rows] == ["1", "2"]
    for sessions, rate, pushed, dropped, p50, p95 in rows:  # 2 frames/s for 3 s: frames 0 .. 3 s, each session
        assert int(pushed) + int(dropped) == 7 * int(sessions) and float(p95) >= float(p50) > 0


SMALL_HEAD = ["--layers", "1", "--hidden-size", "64", "--intermediate-size", "128", "--heads", "4", "--kv-heads", "2",
              "--vocab", "5000", "--prompt", "300", "--answer", "7", "--repeats", "1"]


def test_bench_head_computes_the_head_where_its_logits_are_read_with_the_native_results(capsys):
    from benchmarks.head import main as bench_head

    results = bench_head(SMALL_HEAD)
    prefill, step = results["prefill"], results["training step"]
    assert (prefill["native_rows"], prefill["our_rows"]) == (300, 1)  # every prompt position against the last
    assert (step["native_rows"], step["our_rows"]) == (300, 7)  # against the labelled answer tokens
    assert prefill["max_abs_diff"] == 0  # the same greedy token
    assert step["max_abs_diff"] < 1e-5  # the same loss
    for row in (prefill, step):
        assert row["native_ms"] > 0 and row["ours_ms"] > 0
        assert row["native_over_ours"] == pytest.approx(row["native_ms"] / row["ours_ms"])
        assert row["native_peak_mb"] is None and row["our_peak_mb"] is None  # measured on CUDA only
    out = capsys.readouterr().out
    assert "| prefill | " in out and "| training step | " in out
    assert f"float32 logits the prefill does not compute: {299 * 5000 * 4 / 2**20:.0f} MB" in out


@pytest.mark.parametrize("argv, message", [(["--prompt", "27"], "--prompt must exceed 20 question tokens + --answer 7"),
                                           (["--heads", "5"], "--hidden-size must be a multiple of --heads"),
                                           (["--layers", "0"], "must be at least 1")])
def test_bench_head_refuses_a_prompt_too_short_or_widths_that_do_not_divide(capsys, argv, message):
    assert main(["bench", "head", *SMALL_HEAD, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_memory_bank_at_a_revision_is_that_commit_s_package_beside_this_one():
    """``--against REV`` runs the memory_bank of a git revision beside this tree's: its own classes, its
    files as git holds them, imported once."""
    import inspect

    import memory_bank
    from benchmarks.memory import memory_bank_at

    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    other = memory_bank_at("HEAD")
    assert other.REVISION == head and other.__name__ == f"memory_bank_at_{head[:12]}"
    assert other.HierarchicalMemoryBank is not memory_bank.HierarchicalMemoryBank
    committed = subprocess.run(["git", "-C", str(root), "show", "HEAD:memory_bank/hierarchical.py"],
                               capture_output=True, text=True, check=True).stdout
    assert inspect.getsource(other.hierarchical) == committed
    assert memory_bank_at(head) is other


@pytest.mark.parametrize("path, message", [
    (None, "--against no-such-rev: no commit holding memory_bank/ of that name in "),
    ("", "--against needs git on the PATH"),
])
def test_memory_bank_at_names_what_is_wrong(monkeypatch, path, message):
    from benchmarks import BenchmarkInputError
    from benchmarks.memory import memory_bank_at

    if path is not None:
        monkeypatch.setenv("PATH", path)
    with pytest.raises(BenchmarkInputError, match=re.escape(message)):
        memory_bank_at("no-such-rev")


def test_compare_with_revision_times_both_banks_and_the_reference_on_every_frame(monkeypatch):
    import torch

    from benchmarks import memory as bench
    from memory_bank import MemoryBankConfig

    other = bench.memory_bank_at("HEAD")
    added = {"ours": 0, "revision": 0, "reference": 0}
    for name, cls in (("ours", bench.HierarchicalMemoryBank), ("revision", other.HierarchicalMemoryBank),
                      ("reference", bench.ReferencePyramidMemory)):
        def counting_add(self, *args, _add=cls.add, _name=name, **kwargs):
            added[_name] += 1
            return _add(self, *args, **kwargs)
        monkeypatch.setattr(cls, "add", counting_add)
    config = MemoryBankConfig(mm_hidden_size=8)
    pool = [torch.randn(144, 8) for _ in range(12)]
    r = bench.compare_with_revision(config, torch.device("cpu"), pool, frames=20, other=other, rounds=3)
    assert added == {"ours": 60, "revision": 60, "reference": 60}
    assert min(r["ours_ms"], r["revision_ms"], r["reference_ms"]) > 0
    assert r["speedup_rounds"][0] <= r["speedup"] <= r["speedup_rounds"][1]


def test_bench_memory_against_a_revision_that_is_not_one_is_one_line(capsys):
    code = main(["bench", "memory", "--frames", "5", "--against", "no-such-rev"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--against no-such-rev: no commit holding memory_bank/" in err[0]
