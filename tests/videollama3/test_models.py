import pytest
import torch

from videollama3.errors import ModelLoadError
from videollama3.loading import load_model


def test_saved_tiny_model_loads_back_by_path(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(str(tmp_path))
    ids = tokenizer("Time 0.0s:<|video_pad|> hi", return_tensors="pt")["input_ids"]
    assert torch.equal(loaded_tok("Time 0.0s:<|video_pad|> hi", return_tensors="pt")["input_ids"], ids)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert type(loaded) is type(model)


def test_unreachable_checkpoints_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="--model tiny"):
        load_model("someone/not-a-model")  # HF_HUB_OFFLINE=1 in tests: fails at once
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="None model, not VideoLLaMA3"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "video_llama_3"}')
    with pytest.raises(ModelLoadError, match="holds no model.safetensors"):
        load_model(str(tmp_path))
