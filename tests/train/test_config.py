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
