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


def test_frames_are_cut_into_the_vision_encoders_own_patch_size(tiny, bikes_frames):
    """A checkpoint whose encoder takes 16-pixel patches (transformers' default) gets frames cut into
    16-pixel patches, not VideoLLaMA3's 14: the stream runs and each frame keeps its 144-token budget."""
    from transformers import VideoLlama3ForConditionalGeneration

    from videollama3.loading import build_session
    from videollama3.preprocess import frame_size
    from videollama3.session import run_stream

    model, tokenizer = tiny
    config = model.config.to_dict()
    config["vision_config"]["patch_size"] = 16
    sixteen = VideoLlama3ForConditionalGeneration(type(model.config).from_dict(config)).eval()
    session = build_session(sixteen, tokenizer, "unbounded")
    assert session.model.patch_size == 16
    prepared = session.prepare(bikes_frames[0][0])
    height, width = frame_size(272, 640, 144, patch_size=16)
    assert prepared.pixel_values.shape == (height * width // 256, 3 * 16 * 16)
    result = run_stream(session, iter(bikes_frames), [("What?", None)], max_new_tokens=2)
    grid = (height // 32, width // 32)  # 16-pixel patches, merged 2 x 2
    assert result.answers[0].frames_seen == 6 and grid[0] * grid[1] <= 144
    assert [(e.grid, e.tokens.shape) for e in session.memory.readout()] == [(grid, (grid[0] * grid[1], 32))] * 6
