"""The language-model head only where its logits are read (``vl3mem bench head``): prefill and training step.

transformers' ``VideoLlama3ForConditionalGeneration`` computes the head's logits at every prompt
position, in ``generate``'s prefill (its ``forward`` takes no ``logits_to_keep``) and for a training
loss, though ``generate`` reads the last position's and a loss the answer tokens'.
:meth:`videollama3.modeling.VideoLlama3WithMemory.generate` hooks the head to the last position
(:func:`~videollama3.modeling.last_position_logits`), and ``forward(..., return_logits=False)``, the
trainer's call, runs it at the labelled positions only (:func:`~videollama3.modeling.labelled_loss`).

This script times both against the native computation, alternating in each of ``--repeats`` rounds
(medians printed), on one prompt of ``--prompt`` positions: all but 20 are ``<|video_pad|>`` tokens
(random visual tokens, as a memory readout puts them) and the last ``--answer`` are labelled. By
default the model is a random VideoLLaMA3 with the 2B checkpoint's language model widths (hidden
1536, MLP 8960, 12 heads, 2 key-value heads, vocabulary 151,936) and ``--layers`` decoder layers
(few, so a CPU run takes minutes: the head's share of a real checkpoint's 28 layers is smaller than
here, its absolute cost the same); ``--model`` loads a checkpoint instead. The training step trains
the projector only (gradients flow through the whole language model, as with LoRA). Prints ms per
prefill / step, the native time over ours, the rows the head computed, the largest difference of the
results (greedy token equal, loss within float rounding) and, on CUDA, the peak memory allocated;
on the CPU the size of the float32 logits not computed.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable

import torch

from videollama3.modeling import VideoLlama3WithMemory
from videollama3.options import check_device
from videollama3.processing import IGNORE_INDEX

from . import BenchmarkInputError, run_as_script

QUESTION_TOKENS = 20
"""Text positions of the prompt after its visual tokens (a question and the chat template)."""


def random_model(hidden: int, intermediate: int, heads: int, kv_heads: int, vocab: int, layers: int):
    """A randomly initialised ``VideoLlama3ForConditionalGeneration`` with these language-model widths and a
    one-layer vision encoder of width 32 (the head's cost does not depend on it), in eval mode."""
    from transformers import Qwen2Config, VideoLlama3VisionConfig

    from videollama3.tiny import build_random_model

    vision = VideoLlama3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     patch_size=14)
    text = Qwen2Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                       max_position_embeddings=32768, tie_word_embeddings=False)
    return build_random_model(text, vision, image_token_id=vocab - 2, video_token_id=vocab - 1)


def _timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor, float | None]:
    """``run()``'s seconds, result and, on CUDA, peak MB allocated above what was allocated before it."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if cuda else None
    return seconds, result, peak


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print the table; return ``{"prefill" | "training step": {"native_ms", "ours_ms",
    "native_over_ours", "native_rows", "our_rows", "max_abs_diff", "native_peak_mb", "our_peak_mb"}}``
    (peaks None off CUDA)."""
    parser = argparse.ArgumentParser(prog="vl3mem bench head", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a checkpoint or tiny (default: random, 2B widths)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the random model (default 2)")
    parser.add_argument("--hidden-size", type=int, default=1536)
    parser.add_argument("--intermediate-size", type=int, default=8960)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--prompt", type=int, default=1500, help="prompt positions (default 1500, the default memory's)")
    parser.add_argument("--answer", type=int, default=20, help="labelled answer tokens in the training step")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, native and ours alternating (median shown)")
    args = parser.parse_args(argv)
    device = check_device(args.device, "--device")
    if min(args.layers, args.hidden_size, args.intermediate_size, args.heads, args.kv_heads, args.answer,
           args.repeats) < 1 or args.vocab < 3:
        raise BenchmarkInputError("--layers, --hidden-size, --intermediate-size, --heads, --kv-heads, --answer and "
                                  "--repeats must be at least 1, --vocab at least 3")
    if args.prompt <= QUESTION_TOKENS + args.answer:
        raise BenchmarkInputError(f"--prompt must exceed {QUESTION_TOKENS} question tokens + --answer {args.answer}")
    if args.model is None:
        if args.hidden_size % args.heads or args.heads % args.kv_heads:
            raise BenchmarkInputError("--hidden-size must be a multiple of --heads, --heads of --kv-heads")
        model = random_model(args.hidden_size, args.intermediate_size, args.heads, args.kv_heads, args.vocab,
                             args.layers).to(device)
        described = (f"random, {args.layers} layers, hidden {args.hidden_size}, vocabulary {args.vocab}")
    else:
        from videollama3.loading import load_model

        model, _ = load_model(args.model, device=args.device)
        described = args.model
    wrapped = VideoLlama3WithMemory(model)
    vocab = model.config.text_config.vocab_size
    visual = args.prompt - QUESTION_TOKENS
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, min(vocab, 256), (1, args.prompt), generator=generator)
    input_ids[0, :visual] = model.config.video_token_id
    attention_mask = torch.ones_like(input_ids)
    tokens = torch.randn(visual, wrapped.memory_width, generator=generator).to(device, wrapped.vision_dtype)
    tier_ids = torch.zeros(visual, dtype=torch.long, device=device)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, -args.answer:] = torch.randint(0, vocab, (args.answer,), generator=generator)
    pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else 0
    head = model.get_output_embeddings()
    rows: list[int] = []
    handle = head.register_forward_hook(lambda module, inputs, output: rows.append(output[..., 0].numel()))

    def prefill(native: bool) -> torch.Tensor:
        with torch.no_grad():
            if native:
                embeds = wrapped.inputs_embeds(input_ids, tokens, tier_ids)
                return model.generate(inputs_embeds=embeds, attention_mask=attention_mask.to(device),
                                      max_new_tokens=1, do_sample=False, pad_token_id=pad)
            return wrapped.generate(input_ids, attention_mask, tokens, tier_ids, max_new_tokens=1, pad_token_id=pad)

    def step(native: bool) -> torch.Tensor:
        wrapped.zero_grad(set_to_none=True)
        loss = wrapped(input_ids, attention_mask, tokens, tier_ids, labels, return_logits=native).loss
        loss.backward()
        return loss.detach()

    results: dict[str, dict] = {}
    print(f"model {described} on {device} ({model.dtype}), {torch.get_num_threads()} torch threads; prompt of "
          f"{args.prompt} positions ({visual} visual), {args.answer} labelled")
    print("| stage | native ms | ours ms | native / ours | head rows native | head rows ours | max abs diff | "
          "native peak MB | our peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for stage, run in (("prefill", prefill), ("training step", step)):
            if stage == "training step":
                for name, p in model.named_parameters():  # the projector trains; the gradient crosses the model
                    p.requires_grad_(".projector." in f".{name}")
                model.train()
            runs = {True: [], False: []}
            outputs, peaks, counted = {}, {}, {}
            for native in (True, False):  # warm-up
                run(native)
            for _ in range(args.repeats):
                for native in (True, False):
                    rows.clear()
                    seconds, outputs[native], peaks[native] = _timed(functools.partial(run, native), device)
                    counted[native] = sum(rows)
                    runs[native].append(seconds)
            native_ms, ours_ms = (1000 * statistics.median(runs[n]) for n in (True, False))
            diff = float((outputs[True].float() - outputs[False].float()).abs().max())
            row = results[stage] = {"native_ms": native_ms, "ours_ms": ours_ms, "native_over_ours": native_ms / ours_ms,
                                    "native_rows": counted[True], "our_rows": counted[False], "max_abs_diff": diff,
                                    "native_peak_mb": peaks[True], "our_peak_mb": peaks[False]}
            peak = " | ".join("" if p is None else f"{p:.0f}" for p in (peaks[True], peaks[False]))
            print(f"| {stage} | {native_ms:.1f} | {ours_ms:.1f} | {row['native_over_ours']:.2f}x | {counted[True]} | "
                  f"{counted[False]} | {diff:.3g} | {peak} |", flush=True)
    finally:
        handle.remove()
    if device.type != "cuda":
        skipped = (results["prefill"]["native_rows"] - results["prefill"]["our_rows"]) * vocab * 4 / 2**20
        print(f"float32 logits the prefill does not compute: {skipped:.0f} MB (the training step: that, their "
              "log-softmax and their gradient)")
    return results


if __name__ == "__main__":
    sys.exit(run_as_script(main))
