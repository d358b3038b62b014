"""DAMO's remote-code checkpoints load natively: key names, config, loading, `vl3mem convert`, bad folders."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import VideoLlama3Config, VideoLlama3ForConditionalGeneration

from videollama3.cli import main
from videollama3.conversion import (
    DAMO_SYSTEM_PROMPT,
    KEY_MAPPING,
    check_weights,
    checkpoint_kind,
    convert_checkpoint,
    convert_config,
    native_key,
)
from videollama3.errors import ModelLoadError
from videollama3.loading import build_session, load_checkpoint
from videollama3.tiny import build_tiny_model

KEY_LISTS = Path(__file__).resolve().parents[3] / "shared" / "checkpoints"
# SigLIP-NaViT of the real checkpoints (checkpoints/README.md); the key lists carry the language model's numbers
REAL_VISION = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
               "patch_size": 14, "model_type": "videollama3_vision_encoder"}


def damo_config(text: dict, vision: dict) -> dict:
    """A config.json as DAMO's remote code writes it: flat Qwen2 fields, nested vision config."""
    return {**text, "model_type": "videollama3_qwen2", "architectures": ["Videollama3Qwen2ForCausalLM"],
            "auto_map": {"AutoConfig": "configuration_videollama3.Videollama3Qwen2Config"},
            "vision_encoder": None, "vision_encoder_config": vision, "mm_projector_type": "mlp2x_gelu",
            "use_token_compression": True, "image_token_index": 151665, "use_cache": False}


def remote_key(native: str, layout: str) -> str:
    """Inverse of the mapping: the name DAMO's checkpoint stores a native parameter under."""
    vision = "model.vision_encoder.vision_encoder." if layout == "training" else "model.vision_encoder."
    for prefix, remote in (("model.vision_model.", vision), ("model.projector.", "model.mm_projector."),
                           ("model.language_model.", "model.")):
        if native.startswith(prefix):
            return remote + native[len(prefix):]
    return native


@pytest.mark.parametrize("size", ["2b", "7b"])
@pytest.mark.parametrize("layout", ["published", "training"])
def test_every_real_key_maps_onto_a_native_parameter_of_the_same_shape(size, layout):
    listing = json.loads((KEY_LISTS / f"damo_{size}_keys.json").read_text())
    keys = dict(listing["keys"])
    if layout == "training":
        keys = {k.replace("model.vision_encoder.", "model.vision_encoder.vision_encoder.", 1): v for k, v in keys.items()}
    config = convert_config(damo_config(listing["config"], REAL_VISION))
    with torch.device("meta"):
        model = VideoLlama3ForConditionalGeneration(config)
    native = {k: list(v.shape) for k, v in model.state_dict().items()}
    mapped = {native_key(k): shape for k, shape in keys.items()}
    assert len(mapped) == len(keys)  # the renames never merge two keys
    unexpected = sorted(set(mapped) - set(native))
    missing = sorted(set(native) - set(mapped))
    assert not unexpected, unexpected[:5]
    assert missing == (["lm_head.weight"] if listing["config"]["tie_word_embeddings"] else []), missing[:5]
    assert all(mapped[k] == native[k] for k in mapped), [k for k in mapped if mapped[k] != native[k]][:5]
    assert len(keys) == {"2b": 778, "7b": 779}[size]
    check_weights(config, {k: tuple(shape) for k, shape in mapped.items()}, size)  # what convert checks: passes


def test_the_mapping_is_anchored_and_ordered():
    assert native_key("model.vision_encoder.vision_encoder.post_layernorm.weight") == "model.vision_model.post_layernorm.weight"
    assert native_key("model.vision_encoder.encoder.layers.3.mlp.fc1.bias") == "model.vision_model.encoder.layers.3.mlp.fc1.bias"
    assert native_key("model.mm_projector.readout.2.weight") == "model.projector.readout.2.weight"
    assert native_key("model.layers.27.self_attn.q_proj.bias") == "model.language_model.layers.27.self_attn.q_proj.bias"
    assert native_key("model.norm.weight") == "model.language_model.norm.weight"
    assert native_key("lm_head.weight") == "lm_head.weight"
    assert native_key("model.language_model.norm.weight") == "model.language_model.norm.weight"  # native: unchanged
    assert all(pattern.startswith("^") for pattern in KEY_MAPPING)


def test_config_conversion_reads_every_number_and_refuses_other_projectors():
    remote = damo_config({"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
                          "num_key_value_heads": 2, "vocab_size": 300, "rope_theta": 12345.0, "rms_norm_eps": 1e-5,
                          "tie_word_embeddings": True, "max_position_embeddings": 777},
                         {"hidden_size": 40, "intermediate_size": 50, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "patch_size": 14})
    config = convert_config(remote, image_token_id=7, video_token_id=8)
    t, v = config.text_config, config.vision_config
    assert (t.model_type, t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads,
            t.vocab_size, t.max_position_embeddings, t.use_cache) == ("qwen2", 64, 96, 3, 2, 300, 777, True)
    assert t.rope_parameters["rope_theta"] == 12345.0
    assert config.tie_word_embeddings and t.tie_word_embeddings
    assert (v.model_type, v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.patch_size) == (
        "video_llama_3_vision", 40, 50, 1, 14)
    assert (config.image_token_id, config.video_token_id) == (7, 8)
    with pytest.raises(ModelLoadError, match="mm_projector_type 'linear' has no native equivalent"):
        convert_config({**remote, "mm_projector_type": "linear"})
    assert checkpoint_kind(remote, "x") == "damo" and checkpoint_kind({"model_type": "video_llama_3"}, "x") == "native"
    with pytest.raises(ModelLoadError, match="'llava' model, not VideoLLaMA3"):
        checkpoint_kind({"model_type": "llava"}, "x")


def tiny_pair(tied: bool):
    """The tiny native model (tied or untied embeddings) and its tokenizer."""
    model, tokenizer = build_tiny_model(seed=0)
    if tied:
        config = VideoLlama3Config(**{**model.config.to_dict(), "tie_word_embeddings": True})
        config.text_config.tie_word_embeddings = True
        torch.manual_seed(3)
        model = VideoLlama3ForConditionalGeneration(config).eval()
        assert model.lm_head.weight is model.get_input_embeddings().weight
    return model, tokenizer


def write_damo_checkpoint(model, tokenizer, folder: Path, layout: str = "published") -> Path:
    """The tiny model saved as DAMO's remote code saves its checkpoints: its key names (two shards and
    an index), its config format, its tokenizer."""
    folder.mkdir(parents=True)
    state = {remote_key(k, layout): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        del state["lm_head.weight"]  # DAMO's tied 2B file has no lm_head
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    text = {k: v for k, v in model.config.text_config.to_dict().items()
            if k not in ("model_type", "architectures", "transformers_version", "_name_or_path")}
    vision = {**model.config.vision_config.to_dict(), "model_type": "videollama3_vision_encoder"}
    (folder / "config.json").write_text(json.dumps(damo_config(text, vision)))
    tokenizer.save_pretrained(str(folder))
    return folder


def logits_of(model, tokenizer, frames):
    """Logits of the native forward on a two-frame video prompt."""
    session = build_session(model, tokenizer, "none")
    for f, t in frames:
        session.push_frame(f, t)
    from tests.videollama3.test_parity import native_inputs

    with torch.no_grad():
        return model(**native_inputs(session, frames, "What is moving?")).logits


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("layout", ["published", "training"])
def test_a_damo_checkpoint_loads_and_converts_to_the_same_logits(tmp_path, bikes_frames, tied, layout):
    model, tokenizer = tiny_pair(tied)
    frames = bikes_frames[:2]
    expected = logits_of(model, tokenizer, frames)
    damo = write_damo_checkpoint(model, tokenizer, tmp_path / "damo", layout)

    loaded, loaded_tokenizer, system_prompt = load_checkpoint(str(damo))  # directly, renamed while loading
    assert system_prompt == DAMO_SYSTEM_PROMPT
    torch.testing.assert_close(logits_of(loaded, loaded_tokenizer, frames), expected, rtol=0, atol=1e-6)

    native_dir = convert_checkpoint(damo, tmp_path / "native", progress=False)
    plain, info = VideoLlama3ForConditionalGeneration.from_pretrained(str(native_dir), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    torch.testing.assert_close(logits_of(plain.eval(), loaded_tokenizer, frames), expected, rtol=0, atol=1e-6)
    assert sorted(p.name for p in native_dir.glob("*.safetensors")) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = json.loads((native_dir / "model.safetensors.index.json").read_text())["weight_map"]
    assert all(k.startswith(("model.vision_model.", "model.projector.", "model.language_model.", "lm_head."))
               for k in index)
    video = json.loads((native_dir / "video_preprocessor_config.json").read_text())
    image = json.loads((native_dir / "preprocessor_config.json").read_text())
    assert (video["image_mean"], video["image_std"], video["merge_size"], video["min_pixels"], video["max_pixels"],
            video["use_token_compression"]) == ([0.5] * 3, [0.5] * 3, 2, 12544, 12845056, True)
    assert (image["merge_size"], image["min_pixels"], image["max_pixels"], image["resample"]) == (1, 3136, 3211264, 3)
    assert load_checkpoint(str(native_dir))[2] == DAMO_SYSTEM_PROMPT  # still a DAMO model: its system prompt


def test_convert_command_casts_and_refuses_a_second_write(tmp_path, capsys):
    model, tokenizer = tiny_pair(tied=False)
    damo = write_damo_checkpoint(model, tokenizer, tmp_path / "damo")
    assert main(["convert", str(damo), str(tmp_path / "bf16"), "--dtype", "bfloat16", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    plain = VideoLlama3ForConditionalGeneration.from_pretrained(str(tmp_path / "bf16"), dtype="auto")
    assert plain.dtype == torch.bfloat16
    torch.testing.assert_close(plain.lm_head.weight.float(), model.lm_head.weight.to(torch.bfloat16).float())
    assert main(["convert", str(damo), str(tmp_path / "bf16"), "--quiet"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_convert_leaves_nothing_behind_when_it_cannot_write(tmp_path, monkeypatch):
    """A disk that fills up on the second shard: one line, and neither the folder nor a partial one is left; a
    destination that is a file or a folder with other files is refused before anything is read."""
    import errno

    import safetensors.torch

    model, tokenizer = tiny_pair(tied=False)
    damo = write_damo_checkpoint(model, tokenizer, tmp_path / "damo")
    real_save, written = safetensors.torch.save_file, []

    def fill_up(tensors, path, metadata=None):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fill_up)
    with pytest.raises(ModelLoadError, match=re.escape(f"cannot write {tmp_path / 'native'} (No space left on device); "
                                                       "nothing was written")):
        convert_checkpoint(damo, tmp_path / "native", progress=False)
    assert len(written) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["damo"]
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="file is a file; give a new or empty folder"):
        convert_checkpoint(damo, tmp_path / "file", progress=False)
    with pytest.raises(ModelLoadError, match=f"{tmp_path} is a folder that is not empty; give a new or empty folder"):
        convert_checkpoint(damo, tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    assert (convert_checkpoint(damo, tmp_path / "empty", progress=False) / "config.json").is_file()


def bad_folders(tmp_path: Path, damo: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "llava"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llava"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    shards = tmp_path / "shards"
    shards.mkdir()
    for f in damo.iterdir():
        if f.name != "model-00002-of-00002.safetensors":
            (shards / f.name).write_bytes(f.read_bytes())
    projector = tmp_path / "projector"
    projector.mkdir()
    for f in damo.iterdir():
        (projector / f.name).write_bytes(f.read_bytes())
    config = json.loads((damo / "config.json").read_text())
    (projector / "config.json").write_text(json.dumps({**config, "mm_projector_type": "linear"}))
    first = "model-00001-of-00002.safetensors"
    truncated = copy_with(damo, tmp_path / "truncated", lambda d: (d / first).write_bytes((d / first).read_bytes()[:-9]))
    shape = copy_with(damo, tmp_path / "shape", lambda d: edit_shard(d / first, lambda s: s.update(
        {"lm_head.weight": torch.zeros(3, 3)} if "lm_head.weight" in s else {k: torch.zeros(3, 3) for k in sorted(s)[:1]})))
    dropped = copy_with(damo, tmp_path / "dropped", lambda d: edit_shard(d / first, lambda s: s.pop(max(s))))
    extra = copy_with(damo, tmp_path / "extra", lambda d: edit_shard(d / first, lambda s: s.update(
        {"model.mm_projector.extra.weight": torch.zeros(2)})))
    value = copy_with(damo, tmp_path / "value", lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "hidden_size": "wide"})))
    return {"no config": (empty, "has no config.json"), "another model": (other, "'llava' model, not VideoLLaMA3"),
            "bad json": (broken, "does not parse"), "missing shard": (shards, "missing 1 of 2 weight shards"),
            "projector": (projector, "mm_projector_type 'linear' has no native equivalent"),
            "truncated shard": (truncated, f"{first} is not a readable safetensors file"),
            "weight of another shape": (shape, "1 of another shape (lm_head.weight: [3, 3] in the files, [261, 64] in"),
            "weight missing": (dropped, "do not fit the model its config.json describes: 1 weight(s) missing ("),
            "unknown weight": (extra, "1 the model does not have (model.projector.extra.weight)"),
            "bad config value": (value, "Field 'hidden_size' expected int, got str (value: 'wide')")}


def copy_with(src: Path, dst: Path, change) -> Path:
    """A copy of the checkpoint folder ``src`` at ``dst``, then ``change(dst)``."""
    shutil.copytree(src, dst)
    change(dst)
    return dst


def edit_shard(file: Path, change) -> None:
    """Rewrite a safetensors file after ``change(tensors)`` (a dict, changed in place)."""
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


BAD_FOLDERS = ["no config", "another model", "bad json", "missing shard", "projector", "truncated shard",
               "weight of another shape", "weight missing", "unknown weight", "bad config value"]


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_checkpoint_folders_exit_2_with_one_line(tmp_path, videos, capsys, case):
    model, tokenizer = tiny_pair(tied=False)
    folder, message = bad_folders(tmp_path, write_damo_checkpoint(model, tokenizer, tmp_path / "damo"))[case]
    for argv in (["convert", str(folder), str(tmp_path / "out"), "--quiet"],
                 ["answer", str(videos / "bikes.mp4"), "-q", "x", "--model", str(folder), "--quiet"]):
        code = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv[0], err)
        assert not (tmp_path / "out").exists()  # convert checks everything before it writes


@pytest.mark.parametrize("case", ["weight missing", "weight of another shape"])
def test_a_native_folder_with_bad_weights_is_refused_not_loaded_at_random(tmp_path, case):
    """Native folders load through transformers' own key handling; its loading report is checked after the
    load (transformers would initialise a missing weight at random and go on)."""
    model, tokenizer = tiny_pair(tied=False)
    native = convert_checkpoint(write_damo_checkpoint(model, tokenizer, tmp_path / "damo"), tmp_path / "native",
                                progress=False)
    name = "model.language_model.norm.weight"
    shard = native / json.loads((native / "model.safetensors.index.json").read_text())["weight_map"][name]
    if case == "weight missing":
        edit_shard(shard, lambda s: s.pop(name))
        message = "1 weight(s) missing (model.language_model.norm.weight)"
    else:
        edit_shard(shard, lambda s: s.update({name: torch.ones(65)}))
        message = "1 of another shape (model.language_model.norm.weight: [65] in the files, [64] in the model)"
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        load_checkpoint(str(native))


def test_no_remote_code_is_offered_or_run(tmp_path, monkeypatch):
    """A DAMO config.json has an auto_map: loading must never ask whether to run its code."""
    import builtins

    def no_prompt(*args, **kwargs):
        raise AssertionError(f"asked on the terminal: {args}")

    monkeypatch.setattr(builtins, "input", no_prompt)
    model, tokenizer = tiny_pair(tied=False)
    damo = write_damo_checkpoint(model, tokenizer, tmp_path / "damo")
    assert json.loads((damo / "config.json").read_text())["auto_map"]
    load_checkpoint(str(damo))
    convert_checkpoint(damo, tmp_path / "native", progress=False)


def test_training_counts_a_damo_checkpoint_like_the_native_one(tmp_path):
    from train.config import load_config
    from train.params import count_for

    model, tokenizer = tiny_pair(tied=False)
    damo = write_damo_checkpoint(model, tokenizer, tmp_path / "damo")
    config = load_config("train/configs/tiny.yaml")
    assert count_for(config, str(damo)) == count_for(config, "tiny")
