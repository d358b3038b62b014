"""End-to-end training on CPU: the tiny config on the real videos, resume, --adapter, bad input."""

import json
import shutil

import pytest

from train.config import TrainConfigError, load_config
from train.trainer import train
from vl3mem.cli import main as vl3mem

from .conftest import TINY_CONFIG, write_jsonl


def test_tiny_run_learns_saves_and_is_loaded_by_answer(tmp_path, videos, capsys):
    """`vl3mem train --config train/configs/tiny.yaml`: 40 steps, loss falls, then `answer --adapter`."""
    out = tmp_path / "run"
    assert vl3mem(["train", "--config", str(TINY_CONFIG), "--output-dir", str(out), "--quiet",
                   "--set", f"data.video_root={videos}"]) == 0
    assert "steps 1-40: loss" in capsys.readouterr().out
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    losses = state["losses"]
    assert len(losses) == 40 and state["samples_seen"] == 160
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 5.0  # ~ln(262): the random tiny model knows nothing
    assert last < 0.5 * first, f"loss fell only from {first:.3f} to {last:.3f}"
    for step in (20, 40):
        files = {p.name for p in (out / f"checkpoint-{step}").iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors", "feature_adapter.safetensors",
                "projector.safetensors", "memory.yaml", "vl3mem_checkpoint.json", "training_state"} <= files
    assert list((out / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    # the adapter in peft's own format, on the language model only
    adapter_config = json.loads((out / "checkpoint-40" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["modules_to_save"] == ["lm_head"]

    report = tmp_path / "answers.json"
    question = "Is the frame now brighter or darker than the first frame?"
    assert vl3mem(["answer", str(videos / "bikes.mp4"), "-q", question, "--at", "3", "--adapter", str(out), "--output", str(report), "--quiet",
                   "--max-new-tokens", "8"]) == 0
    answers = json.loads(report.read_text())
    assert answers["model"] == "tiny" and answers["memory"] == "hierarchical"
    assert answers["adapter"].endswith("checkpoint-40")
    assert answers["answers"][0]["frames_seen"] == 4


def small_config(tmp_path, videos, data, **overrides):
    return load_config(TINY_CONFIG, {
        "data.path": str(data), "data.video_root": str(videos), "output_dir": str(tmp_path / "run"),
        "batch_size": 2, "max_steps": 6, "save_steps": 3, "report_to": "none", "lora.dropout": 0.1, **overrides})


def test_resume_gives_the_same_loss_sequence(tmp_path, videos, short_data):
    """Stop after step 3, resume: steps 4-6 equal the uninterrupted run's (data order,
    optimizer, schedule and dropout RNG restored)."""
    config = small_config(tmp_path, videos, short_data)
    full = train(config, progress=False)
    assert full.steps == 6 and len(full.losses) == 6
    shutil.rmtree(tmp_path / "run" / "checkpoint-6")  # as if the run had died after step 3
    resumed = train(config, resume=True, progress=False)
    assert resumed.first_step == 3 and resumed.steps == 6
    assert resumed.losses == pytest.approx(full.losses[3:], rel=1e-6, abs=1e-7)
    state = json.loads((tmp_path / "run" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["losses"] == pytest.approx(full.losses, rel=1e-6, abs=1e-7)
    # a checkpoint that lost its optimizer state is refused, not silently restarted
    shutil.rmtree(tmp_path / "run" / "checkpoint-6")
    (tmp_path / "run" / "checkpoint-3" / "training_state" / "optimizer.bin").unlink()
    with pytest.raises(TrainConfigError, match="checkpoint-3/training_state is damaged"):
        train(config, resume=True, progress=False)


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_folders(tmp_path, videos, short_data):
    config = small_config(tmp_path, videos, short_data, max_steps=3)
    with pytest.raises(TrainConfigError, match="no checkpoint-STEP folder"):
        train(config, resume=True, progress=False)
    train(config, progress=False)
    with pytest.raises(TrainConfigError, match="already holds checkpoints; pass --resume"):
        train(config, progress=False)
    other = small_config(tmp_path, videos, short_data, max_steps=6, seed=1)
    with pytest.raises(TrainConfigError, match="trained with other seed"):
        train(other, resume=True, progress=False)


def test_bad_training_data_exits_2_naming_the_record_or_is_skipped(tmp_path, videos, capsys):
    data = write_jsonl(tmp_path / "bad.jsonl", [
        {"video": "bikes.mp4", "questions": [{"id": "ok", "time": 1, "question": "Q", "answer": "fine"}]},
        {"video": "bikes.mp4", "questions": [{"id": "late", "time": 30, "question": "Q", "answer": "fine"}]},
    ])
    args = ["train", "--config", str(TINY_CONFIG), "--output-dir", str(tmp_path / "run"), "--quiet",
            "--set", f"data.path={data}", "--set", f"data.video_root={videos}", "--set", "report_to=none",
            "--max-steps", "1", "--set", "batch_size=1"]
    assert vl3mem(args) == 2
    err = capsys.readouterr().err
    assert "line 2 (bikes.mp4) turn 0 (late): time 30.00s is beyond the end" in err and "Traceback" not in err
    assert vl3mem(args + ["--skip-bad"]) == 0
    assert "skipped" in capsys.readouterr().err


def test_checkpoints_are_atomic_and_damage_is_one_line(tmp_path, videos, short_data, capsys):
    """A run killed while saving leaves only a hidden partial folder; resume takes the last complete
    checkpoint. Damaged files, other optimizer settings and a max_steps below the checkpoint are one line."""
    config = small_config(tmp_path, videos, short_data, max_steps=3)
    train(config, progress=False)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("checkpoint", ".checkpoint"))) == ["checkpoint-3"]
    partial = run / ".checkpoint-6.partial" / "training_state"  # killed while writing step 6
    partial.mkdir(parents=True)
    (partial / "optimizer.bin").write_bytes(b"")
    resumed = train(small_config(tmp_path, videos, short_data, max_steps=4), resume=True, progress=False)
    assert resumed.first_step == 3 and resumed.steps == 4

    base = ["train", "--config", str(TINY_CONFIG), "--quiet", "--set", f"data.path={short_data}",
            "--set", f"data.video_root={videos}", "--output-dir", str(run), "--set", "batch_size=2",
            "--set", "report_to=none", "--set", "lora.dropout=0.1", "--set", "save_steps=3", "--resume"]

    capsys.readouterr()

    def one_line(*extra):
        code = vl3mem([*base, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (extra, err)
        return err[0]

    assert "max_steps 2 is not above it" in one_line("--max-steps", "2")
    assert "was trained with other optimizer" in one_line("--max-steps", "8", "--set", "optimizer.lr=0.5")
    state = run / "checkpoint-4" / "trainer_state.json"
    good = state.read_text()
    state.write_text('{"step": "four", "samples_seen": 8, "losses": []}')
    assert f"{state} is damaged" in one_line("--max-steps", "8")
    state.write_text(good)
    rng = next((run / "checkpoint-4" / "training_state").glob("random_states*"))
    rng.write_bytes(b"garbage")
    assert f"the random state {rng} is damaged" in one_line("--max-steps", "8")
    adapter = run / "checkpoint-4" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])
    assert "cannot read the weights in" in one_line("--max-steps", "8")


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, videos, short_data, capsys):
    run = tmp_path / "run"
    code = vl3mem(["train", "--config", str(TINY_CONFIG), "--quiet", "--set", f"data.path={short_data}",
                   "--set", f"data.video_root={videos}", "--output-dir", str(run), "--set", "batch_size=2",
                   "--set", "report_to=none", "--set", "save_steps=1", "--max-steps", "6",
                   "--set", "optimizer.lr=1e30", "--set", "optimizer.max_grad_norm=0", "--set", "optimizer.warmup_steps=0"])
    out = capsys.readouterr().err
    errors = [line for line in out.splitlines() if line.startswith("vl3mem: error: ")]
    assert code == 2 and "Traceback" not in out and len(errors) == 1, out
    assert "training loss is" in errors[0] and "nothing of this step was saved" in errors[0]
    saved = sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    step = int(errors[0].split(" at step ")[1].split(";")[0])
    assert saved == list(range(1, step))  # every good step kept, none of the bad one


def test_a_damaged_fine_tuned_checkpoint_is_one_line_for_answer(tmp_path, videos, short_data, capsys):
    """`answer --adapter` on a checkpoint whose files are cut short, not safetensors, or of the wrong
    shape of JSON: status 2 and one line naming the file, never a safetensors or attribute traceback."""
    train(small_config(tmp_path, videos, short_data, max_steps=1, save_steps=1), progress=False)
    good = tmp_path / "run" / "checkpoint-1"
    capsys.readouterr()  # the run's own summary

    def damaged(name: str, change) -> str:
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        code = vl3mem(["answer", str(videos / "bikes.mp4"), "-q", "x", "--adapter", str(folder), "--quiet",
                       "--max-new-tokens", "2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (name, err)
        return err[0]

    def cut(file: str):
        return lambda folder: (folder / file).write_bytes((folder / file).read_bytes()[:-7])

    assert "the FeatureAdapter in" in damaged("adapter", cut("feature_adapter.safetensors"))
    message = damaged("projector", lambda folder: (folder / "projector.safetensors").write_bytes(b"junk"))
    assert "projector.safetensors is not a readable safetensors file (" in message and "train again" in message
    assert "cannot load the LoRA adapter in" in damaged("lora", cut("adapter_model.safetensors"))
    assert "vl3mem_checkpoint.json holds a list, not a mapping" in damaged(
        "meta", lambda folder: (folder / "vl3mem_checkpoint.json").write_text("[]"))
    assert "memory.yaml holds a str, not a mapping" in damaged(
        "memory", lambda folder: (folder / "memory.yaml").write_text("hierarchical"))
