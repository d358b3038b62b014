import re

import pytest
import torch

from train.config import LM_PROJECTIONS, LoraSettings, TrainConfig, TrainConfigError
from train.samples import collate
from train.trainer import apply_lora, count_parameters, prepare_model
from videollama3.checkpoint import load_adapter, resolve_checkpoint, save_checkpoint
from videollama3.loading import build_session
from videollama3.modeling import memory_tokens


def lora_module_names(model):
    return [n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)]


def test_lora_wraps_only_language_model_layers(fresh_tiny):
    wrapped = build_session(*fresh_tiny).model
    apply_lora(wrapped, r=4, alpha=8, dropout=0.0, target_modules=LM_PROJECTIONS)
    names = lora_module_names(wrapped.model)
    # 2 decoder layers x 7 projections, every one under the language model
    assert len(names) == 14
    assert all(re.fullmatch(r"model\.language_model\.layers\.[01]\.(self_attn|mlp)\.\w+_proj", n) for n in names)
    assert not lora_module_names(wrapped.model.model.vision_model)  # its attention has q_proj/k_proj/v_proj too
    assert not any("lora_" in n for n, _ in wrapped.model.model.projector.named_parameters())


def test_lora_that_would_touch_the_vision_side_is_refused(fresh_tiny):
    wrapped = build_session(*fresh_tiny).model
    with pytest.raises(TrainConfigError, match="wraps vision-side modules"):
        apply_lora(wrapped, 4, 8, 0.0, ["q_proj"], modules_to_save=["patch_embedding"])
    assert not lora_module_names(wrapped.model)  # refused before anything was injected
    with pytest.raises(TrainConfigError, match="match no language-model layer"):
        apply_lora(wrapped, 4, 8, 0.0, ["out_proj"])  # a vision-only name


@pytest.mark.parametrize("adapter, projector", [(True, False), (True, True), (False, True)])
def test_trainable_parameters_are_lora_and_the_flagged_parts(fresh_tiny, adapter, projector):
    wrapped = build_session(*fresh_tiny).model
    config = TrainConfig(train_adapter=adapter, train_projector=projector, gradient_checkpointing=False)
    prepare_model(wrapped, config)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    expected = {n for n, _ in wrapped.named_parameters() if "lora_" in n}
    expected |= {n for n, _ in wrapped.named_parameters() if n.startswith("adapter.")} if adapter else set()
    expected |= {n for n, _ in wrapped.named_parameters() if ".projector." in n} if projector else set()
    assert trainable == expected
    counts = count_parameters(wrapped)
    # LoRA r=8 on q,k,v,o (64x64, kv 64->32), gate/up (64->128), down (128->64): r * (in + out) each, 2 layers
    assert counts["lora"] == 2 * 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert counts["feature_adapter"] == (32 * 32 + 32 + 32 * 32 + 32 + 3 * 32 if adapter else 0)
    assert counts["modules_to_save"] == 0
    assert counts["trainable"] == counts["lora"] + counts["feature_adapter"] + counts["projector"]
    assert not wrapped.model.model.vision_model.training and wrapped.model.model.language_model.training


def sample_for(session, frames, question="What is there?", answer="bikes"):
    """A training sample of ``question`` / ``answer`` after ``frames``, and the readout it was made from."""
    from train.samples import TrainingSample

    session.reset()
    for f, t in frames:
        session.push_frame(f, t)
    entries = session.memory.readout()
    ids, labels, _ = session.processor.training_example(entries, question, answer, [], 8192)
    tokens, tiers = memory_tokens(entries, session.model.memory_width)
    return TrainingSample("x", 0.0, ids, labels, tokens, tiers, len(frames), 0.0, []), entries


def batch_for(session, frames, question="What is there?", answer="bikes"):
    sample, entries = sample_for(session, frames, question, answer)
    return collate([sample], session.processor.pad_token_id), entries


def test_training_forward_equals_the_inference_inputs(tiny, bikes_frames):
    """The training forward places the same embeddings generate() gets."""
    session = build_session(*tiny)
    wrapped = session.model
    batch, entries = batch_for(session, bikes_frames[:3])
    n_prompt = int((batch["labels"][0] == -100).sum())
    with torch.no_grad():
        logits = wrapped(**batch).logits
        inputs = session.processor(entries, "What is there?")
        embeds = wrapped.inputs_embeds(inputs["input_ids"], *memory_tokens(entries, wrapped.memory_width))
        native = wrapped.model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    assert torch.equal(inputs["input_ids"][0], batch["input_ids"][0, :n_prompt])
    torch.testing.assert_close(logits[:, :n_prompt], native, rtol=1e-5, atol=1e-5)


def test_the_loss_from_the_labelled_positions_equals_the_native_loss_and_gradients(fresh_tiny, bikes_frames):
    """return_logits=False (the trainer's) runs the head at the answer tokens only: same loss, same gradients,
    through LoRA, a trained head (peft's modules_to_save wrapper), the adapter and the projector."""
    session = build_session(*fresh_tiny)
    wrapped = session.model
    lora = LoraSettings(dropout=0.0, modules_to_save=["lm_head"])
    prepare_model(wrapped, TrainConfig(lora=lora, train_projector=True, gradient_checkpointing=False))
    torch.manual_seed(0)
    with torch.no_grad():  # away from the zero-initialised LoRA B and adapter output, where some gradients are 0
        for p in wrapped.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    samples = [sample_for(session, bikes_frames[:2])[0], sample_for(session, bikes_frames[:3], "Which?", "two red bikes")[0]]
    batch = collate(samples, session.processor.pad_token_id)  # of two lengths: the first is right-padded
    labelled = int((batch["labels"] != -100).sum())
    assert 0 < labelled < batch["input_ids"].shape[1] // 10  # a few answer tokens after hundreds of visual ones
    rows = []
    handle = wrapped.model.get_output_embeddings().register_forward_pre_hook(lambda m, args: rows.append(args[0].shape))
    results = []
    try:
        for return_logits in (True, False):
            wrapped.zero_grad()
            rows.clear()
            out = wrapped(**batch, return_logits=return_logits)
            out.loss.backward()
            results.append((out, list(rows), {n: p.grad.clone() for n, p in wrapped.named_parameters() if p.requires_grad}))
    finally:
        handle.remove()
    (native, native_rows, native_grads), (ours, our_rows, our_grads) = results
    assert native_rows == [batch["input_ids"].shape + (64,)]  # every position of both samples
    assert our_rows == [(labelled, 64)] and ours.logits is None and native.logits.shape[:2] == batch["input_ids"].shape
    assert ours.loss.dtype == torch.float32
    torch.testing.assert_close(ours.loss, native.loss, rtol=1e-6, atol=1e-6)
    assert our_grads.keys() == native_grads.keys()
    assert any("lm_head" in n for n in our_grads) and any("lora_" in n for n in our_grads)
    assert all(grad.abs().sum() > 0 for grad in native_grads.values())
    for name in native_grads:
        torch.testing.assert_close(our_grads[name], native_grads[name], rtol=1e-4, atol=1e-6)


def test_activation_checkpointing_gives_the_same_loss_and_gradients(fresh_tiny, bikes_frames):
    results = []
    for checkpointing in (False, True):
        from videollama3.tiny import build_tiny_model

        torch.manual_seed(0)
        session = build_session(*build_tiny_model(seed=0))
        wrapped = session.model
        prepare_model(wrapped, TrainConfig(gradient_checkpointing=checkpointing, train_projector=True))
        batch, _ = batch_for(session, bikes_frames[:2])
        loss = wrapped(**batch, return_logits=False).loss  # as the trainer calls it
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in wrapped.named_parameters() if p.requires_grad}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and any(g.abs().sum() > 0 for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


def test_checkpoint_round_trip_gives_the_trained_model(tmp_path, bikes_frames):
    from videollama3.tiny import build_tiny_model

    torch.manual_seed(1)
    session = build_session(*build_tiny_model(seed=0), "fifo", {"num_recent": 4})
    wrapped = session.model
    peft_model = prepare_model(wrapped, TrainConfig(train_projector=True, gradient_checkpointing=False))
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in wrapped.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    wrapped.eval()
    batch, _ = batch_for(session, bikes_frames[:2])
    with torch.no_grad():
        trained = wrapped(**batch).logits
    save_checkpoint(tmp_path / "checkpoint-7", wrapped, base_model="tiny", memory="fifo",
                    memory_options={"num_recent": 4}, peft_model=peft_model, projector=True, step=7)
    info = resolve_checkpoint(tmp_path)  # an output folder: its latest checkpoint
    assert (info.base_model, info.memory, info.memory_options, info.lora, info.projector, info.step) == (
        "tiny", "fifo", {"num_recent": 4}, True, True, 7)
    fresh = build_session(*build_tiny_model(seed=0), info.memory, info.memory_options).model
    with torch.no_grad():
        base = fresh(**batch).logits
        loaded = load_adapter(fresh, info)(**batch).logits
    assert not lora_module_names(fresh.model)  # merged into the weights
    torch.testing.assert_close(loaded, trained, rtol=1e-4, atol=1e-5)
    assert (base - trained).abs().max() > 1e-2  # control: the base model alone differs


def test_parameter_counts_from_the_config_alone(fresh_tiny):
    from train.config import load_config
    from train.params import count_for

    from .conftest import TINY_CONFIG

    config = load_config(TINY_CONFIG)
    wrapped = build_session(*fresh_tiny).model
    prepare_model(wrapped, config)
    assert count_for(config) == count_parameters(wrapped)  # meta device == the real tiny model
    # VideoLLaMA3-2B (Qwen2.5-1.5B, SigLIP width 1152), LoRA r=8 on the 7 projections of 28 layers
    big = count_for(load_config(TINY_CONFIG, {"lora.modules_to_save": [], "train_projector": False}), "videollama3-2b")
    per_layer = 8 * (2 * (1536 + 1536) + 2 * (1536 + 256) + 3 * (1536 + 8960))
    assert big["lora"] == 28 * per_layer == 9_232_384
    assert big["feature_adapter"] == 2 * (1152 * 1152 + 1152) + 3 * 1152
    assert big["trainable"] == big["lora"] + big["feature_adapter"]
