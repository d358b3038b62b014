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


def test_the_patch_embedding_runs_as_a_matrix_product_of_the_native_parameters(tiny, bikes_frames):
    """load_model swaps the vision encoder's patch-embedding Conv2d for MatmulPatchEmbedding: the same
    parameter tensors and state_dict, the native encoder's features and gradients to float rounding."""
    import copy

    from torch import nn

    from videollama3.modeling import MatmulPatchEmbedding, use_matmul_patch_embedding
    from videollama3.preprocess import preprocess_frames

    native = tiny[0]
    model = copy.deepcopy(native)
    conv = model.model.vision_model.embeddings.patch_embedding
    use_matmul_patch_embedding(model)
    swapped = model.model.vision_model.embeddings.patch_embedding
    assert type(conv) is nn.Conv2d and type(swapped) is MatmulPatchEmbedding
    assert swapped.weight is conv.weight and swapped.bias is conv.bias  # shared, not copied
    assert list(model.state_dict()) == list(native.state_dict())
    assert type(load_model("tiny")[0].model.vision_model.embeddings.patch_embedding) is MatmulPatchEmbedding

    pixel_values, grid_thw, merge_sizes = preprocess_frames(bikes_frames[0][0])
    outputs, grads = [], []
    for m in (native, model):
        m.zero_grad()
        out = m.model.vision_model(pixel_values=pixel_values, grid_thw=grid_thw, merge_sizes=merge_sizes)
        out.last_hidden_state.square().sum().backward()
        outputs.append(out.last_hidden_state.detach())
        grads.append(m.model.vision_model.embeddings.patch_embedding.weight.grad.clone())
    native.zero_grad()
    assert outputs[0].shape == outputs[1].shape == (pixel_values.shape[0] // 4, 32)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)
    assert not torch.equal(outputs[1], torch.zeros_like(outputs[1]))

    # any other input is the native convolution's: an image larger than one patch
    image = torch.randn(2, 3, 28, 42)
    with torch.no_grad():
        assert torch.equal(swapped(image), nn.functional.conv2d(image, conv.weight, conv.bias, stride=14))
    assert swapped(image).shape == (2, 32, 2, 3)


def test_a_patch_embedding_that_is_not_one_patch_per_output_is_left_alone(tiny):
    import copy

    from torch import nn

    from videollama3.modeling import use_matmul_patch_embedding

    model = copy.deepcopy(tiny[0])
    embeddings = model.model.vision_model.embeddings
    overlapping = embeddings.patch_embedding = nn.Conv2d(3, 32, 14, stride=7)
    use_matmul_patch_embedding(model)
    assert embeddings.patch_embedding is overlapping
