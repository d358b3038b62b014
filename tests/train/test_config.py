import pytest

from train.config import (
    LM_PROJECTIONS,
    TrainConfig,
    TrainConfigError,
    load_config,
    parse_overrides,
)

from .conftest import TINY_CONFIG


def test_tiny_config_loads_with_its_values():
    config = load_config(TINY_CONFIG)
    assert config.model == "tiny" and config.memory == "hierarchical"
    assert config.data.path == "train/data/tiny.jsonl" and config.data.format == "jsonl"
    assert config.lora.r == 8 and config.lora.target_modules == LM_PROJECTIONS
    assert config.optimizer.lr == 1e-2 and isinstance(config.optimizer.lr, float)
    assert (config.batch_size, config.max_steps, config.save_steps) == (4, 40, 20)


def test_overrides_win_over_the_file_and_reach_nested_keys():
    config = load_config(TINY_CONFIG, parse_overrides(["optimizer.lr=1e-4", "data.fps=2", "max_steps=7",
                                                       "lora.target_modules=q_proj,v_proj"]))
    assert config.optimizer.lr == 1e-4
    assert config.data.fps == 2.0 and isinstance(config.data.fps, float)
    assert config.max_steps == 7
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert load_config(TINY_CONFIG, parse_overrides(["lora.target_modules=q_proj"])).lora.target_modules == ["q_proj"]


def test_defaults_without_a_file():
    assert load_config(None) == TrainConfig()


def test_yaml_exponent_without_a_dot_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 2e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(path).optimizer.lr == 2e-4


@pytest.mark.parametrize("text, message", [
    ("batch_sise: 4\n", "unknown key(s) batch_sise"),
    ("data:\n  vidoe_root: x\n", "unknown key(s) data.vidoe_root"),
    ("batch_size: four\n", "batch_size must be int"),
    ("batch_size: true\n", "batch_size must be int"),
    ("batch_size: 0\n", "batch_size must be >= 1"),
    ("lora: 8\n", "lora must be a mapping"),
    ("precision: fp16\n", "precision must be one of auto, bf16, fp32"),
    ("data:\n  format: csv\n", "data.format must be one of jsonl, videochat_online"),
    ("lora:\n  enabled: false\ntrain_adapter: false\n", "nothing to train"),
    ("- a\n- b\n", "must hold a mapping"),
    ("a: [\n", "does not parse"),
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(TrainConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_missing_file_and_bad_override():
    with pytest.raises(TrainConfigError, match="no such training config"):
        load_config("nope.yaml")
    with pytest.raises(TrainConfigError, match="is not key=value"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer.betas": [0.9, 1.0]}, "optimizer.betas must be two numbers in [0, 1)"),
    ({"optimizer.eps": 0.0}, "optimizer.eps must be > 0"),
    ({"optimizer.weight_decay": -0.1}, "optimizer.weight_decay must be >= 0"),
    ({"optimizer.warmup_steps": -1}, "optimizer.warmup_steps must be >= 0"),
    ({"data.frame_tokens": 2}, "data.frame_tokens must be at least 4"),
])
def test_optimizer_and_data_numbers_out_of_range_are_named(overrides, message):
    with pytest.raises(TrainConfigError, match=message.replace("[", "\\[").replace("(", "\\(").replace(")", "\\)")):
        load_config(TINY_CONFIG, overrides)


def test_config_files_that_do_not_parse_or_are_not_utf8_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\nlora: {r: [\n")
    with pytest.raises(TrainConfigError) as e:
        load_config(bad)
    assert "does not parse at line" in str(e.value) and "\n" not in str(e.value)
    bad.write_bytes(b"model: tiny # \xff\n")
    with pytest.raises(TrainConfigError, match="is not UTF-8 text"):
        load_config(bad)


def test_an_unwritable_output_dir_is_refused_before_any_work(tmp_path, videos):
    from train.trainer import train

    (tmp_path / "file").write_text("x")
    config = load_config(TINY_CONFIG, {"output_dir": str(tmp_path / "file" / "run"), "data.video_root": str(videos)})
    with pytest.raises(TrainConfigError, match="is a file, not a folder"):
        train(config, progress=False)
