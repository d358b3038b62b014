"""The training loop: LoRA on the language model + FeatureAdapter (+ projector), with the
memory built frame by frame as at inference.

Built on accelerate (devices, mixed precision, gradient accumulation, DDP / DeepSpeed,
TensorBoard logging, optimizer / scheduler / RNG state) and peft (LoRA). The vision
encoder is frozen: each frame is encoded once, without gradients, and the memory stores
the detached tokens, exactly as a streaming session does.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from videollama3.checkpoint import (
    FEATURE_ADAPTER_FILE,
    LORA_FILE,
    PROJECTOR_FILE,
    latest_checkpoint,
    save_checkpoint,
)
from videollama3.modeling import VideoLlama3WithMemory
from videollama3.options import check_output_path

from .config import TrainConfig, TrainConfigError
from .data import load_training_data
from .samples import StreamingSampler, collate

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "train_config.yaml"
ACCELERATE_STATE = "training_state"
# settings a resumed run must share with the run it continues (the data order and the model)
# (the optimizer too: its state and schedule come from the checkpoint, so another lr or schedule would be
# recorded but not applied; a different one is refused)
RESUME_KEYS = ("model", "memory", "memory_options", "data", "lora", "train_adapter", "train_projector",
               "batch_size", "gradient_accumulation_steps", "seed", "system_prompt", "optimizer")


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        output_dir: where checkpoints and logs went.
        first_step: the step this run started from (0, or the resumed checkpoint's).
        steps: optimizer steps done in all (the last step).
        losses: training loss of every step this run did (step ``first_step + 1`` first).
        seconds: wall time of the training loop (no model loading).
        checkpoint: the last checkpoint written.
        trainable: parameter counts (see :func:`count_parameters`).
        skipped: records left out with ``skip_bad``.
    """

    output_dir: Path
    first_step: int
    steps: int
    losses: list[float]
    seconds: float
    checkpoint: Path | None
    trainable: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        """Optimizer steps per second of this run."""
        return (self.steps - self.first_step) / self.seconds if self.seconds else 0.0


def language_model_prefix(model: torch.nn.Module) -> str:
    """Module name of the native model's language model (``model.language_model``)."""
    target = model.model.language_model
    return next(name for name, module in model.named_modules() if module is target)


def apply_lora(wrapped: VideoLlama3WithMemory, r: int, alpha: int, dropout: float, target_modules: list[str],
               modules_to_save: list[str] = ()):
    """Inject LoRA (Hu et al., 2021, via peft) into the language model's decoder layers only, in place.

    The target is a regular expression anchored on the language model's module path, so
    the vision tower's attention (same layer names) is never wrapped. ``wrapped.model``
    keeps working as the native model, now with LoRA layers; every non-LoRA weight of it
    is frozen, except ``modules_to_save`` (trained in full).

    Returns:
        The ``peft.PeftModel`` (for saving the adapter in peft's format).

    Raises:
        TrainConfigError: when no layer of the language model matches ``target_modules``,
            or a module of the vision encoder or projector would be wrapped.
    """
    import re

    from peft import LoraConfig, get_peft_model

    prefix = re.escape(language_model_prefix(wrapped.model))
    names = "|".join(re.escape(m) for m in target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=rf"{prefix}\.layers\.\d+\.(?:[\w.]+\.)?(?:{names})",
                        modules_to_save=list(modules_to_save) or None)
    # peft matches modules_to_save by name suffix: refuse, before touching the model, one that
    # would reach the vision encoder or the projector
    visual = [n for part in ("vision_model", "projector")
              for n, _ in getattr(wrapped.model.model, part).named_modules(prefix=f"model.{part}")
              if any(n.endswith(m) for m in modules_to_save)]
    if visual:
        raise TrainConfigError(f"lora.modules_to_save {list(modules_to_save)} wraps vision-side modules "
                               f"({', '.join(visual[:3])}); name language-model modules only")
    try:
        return get_peft_model(wrapped.model, config)
    except ValueError as e:
        raise TrainConfigError(f"lora.target_modules {target_modules} match no language-model layer "
                               f"({str(e).splitlines()[0]})") from None


def count_parameters(wrapped: VideoLlama3WithMemory) -> dict[str, int]:
    """Parameter counts: ``lora``, ``modules_to_save`` (peft's trained copies), ``feature_adapter``,
    ``projector`` (trainable ones), ``trainable`` (their sum) and ``total`` (every parameter,
    LoRA and copies included)."""
    def trainable(params) -> int:
        return sum(p.numel() for p in params if p.requires_grad)

    named = list(wrapped.model.named_parameters())
    counts = {"lora": trainable(p for n, p in named if "lora_" in n),
              "modules_to_save": trainable(p for n, p in named if ".modules_to_save." in n),
              "feature_adapter": trainable(wrapped.adapter.parameters()) if wrapped.adapter is not None else 0,
              "projector": trainable(wrapped.model.model.projector.parameters())}
    counts["trainable"] = trainable(wrapped.parameters())
    counts["total"] = sum(p.numel() for p in wrapped.parameters())
    return counts


def prepare_model(wrapped: VideoLlama3WithMemory, config: TrainConfig):
    """Freeze, inject LoRA, set trainable parts and activation checkpointing, as ``config`` says.

    Trainable parameters are kept in float32 (the frozen base may be bf16).

    Returns:
        The ``peft.PeftModel`` (None without LoRA).
    """
    wrapped.requires_grad_(False)
    peft_model = None
    if config.lora.enabled:
        s = config.lora
        peft_model = apply_lora(wrapped, s.r, s.alpha, s.dropout, s.target_modules, s.modules_to_save)
    if wrapped.adapter is not None:
        wrapped.adapter.float().requires_grad_(config.train_adapter)
    if config.train_projector:
        wrapped.model.model.projector.float().requires_grad_(True)
    if config.gradient_checkpointing:
        wrapped.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    wrapped.train()
    wrapped.model.model.vision_model.eval()  # frozen encoder: inference behaviour
    return peft_model


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict) and k != "memory_options":
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
    return out


def _check_resume(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    changed = [k for k in RESUME_KEYS if saved.get(k) != current.get(k)]
    if changed:
        raise TrainConfigError(f"--resume: {path} was trained with other {', '.join(changed)}; "
                               "resume with the same settings, or train into another --output-dir")


def _load_trainable(wrapped: VideoLlama3WithMemory, peft_model, checkpoint: Path, config: TrainConfig) -> None:
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if peft_model is not None:
            set_peft_model_state_dict(peft_model, load_file(str(checkpoint / LORA_FILE)))
        if wrapped.adapter is not None:
            wrapped.adapter.load_state_dict(load_file(str(checkpoint / FEATURE_ADAPTER_FILE)))
        if config.train_projector:
            wrapped.model.model.projector.load_state_dict(load_file(str(checkpoint / PROJECTOR_FILE)))
    except (OSError, RuntimeError, SafetensorError) as e:  # a missing file is a FileNotFoundError
        raise TrainConfigError(f"--resume: cannot read the weights in {checkpoint} ({e.__class__.__name__}: "
                               f"{str(e).splitlines()[0]}); resume from an earlier checkpoint by removing it") from None


def _read_trainer_state(path: Path) -> tuple[int, int, list[float]]:
    """``(step, samples_seen, losses)`` from a checkpoint's ``trainer_state.json``.

    Raises:
        TrainConfigError: naming the file, when it is missing, not JSON or has wrong-typed fields.
    """
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        step, seen, losses = state["step"], state["samples_seen"], state["losses"]
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (step, seen)) or \
                not isinstance(losses, list) or not all(isinstance(x, (int, float)) for x in losses):
            raise TypeError("step and samples_seen must be integers >= 0, losses a list of numbers")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainConfigError(f"--resume: {path} is damaged ({e.__class__.__name__}: {e}); resume from an earlier "
                               "checkpoint by removing this one") from None
    return step, seen, [float(x) for x in losses]


def _check_rng_state(path: Path) -> None:
    """Raise :class:`TrainConfigError` naming ``path`` unless it holds this process's random states.

    accelerate's ``load_state`` logs a damaged random-state file at info level and goes on, so a
    resumed run would silently draw other dropout masks and data than the run it continues.
    """
    try:
        states = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(states, dict) or "torch_manual_seed" not in states:
            raise ValueError("no torch random state in it")
    except Exception as e:  # noqa: BLE001  (pickle raises many types for a damaged file)
        raise TrainConfigError(f"--resume: the random state {path} is damaged ({e.__class__.__name__}); resume from "
                               "an earlier checkpoint by removing this one") from None


def use_bf16(precision: str) -> bool:
    """Whether ``precision`` (``auto`` / ``bf16`` / ``fp32``) means bf16 on this machine.

    Raises:
        TrainConfigError: for ``bf16`` where no GPU supports it.
    """
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        raise TrainConfigError("precision bf16 needs a GPU that supports it; use precision: auto or fp32")
    return precision == "bf16" or (precision == "auto" and supported)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Fine-tune as ``config`` says; checkpoints every ``save_steps`` and at the end.

    Args:
        config: a checked :class:`TrainConfig`.
        resume: continue from the latest ``checkpoint-STEP`` in ``config.output_dir``: the
            trainable weights, optimizer, schedule, RNG state and data position are
            restored, so the run goes on as if it had not stopped.
        progress: show a progress bar (main process only).

    Raises:
        TrainConfigError: for settings that cannot be used, or a resume without a
            checkpoint or with other settings.
        AnnotationError: for bad training data (see :mod:`train.data`).
        ModelLoadError: when the model cannot be loaded.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm
    from transformers import get_scheduler

    from videollama3.loading import NATIVE_MEMORY, build_session, load_checkpoint

    if config.memory == NATIVE_MEMORY and config.train_adapter:
        raise TrainConfigError("memory 'none' bypasses the FeatureAdapter; set train_adapter: false")
    output_dir = Path(config.output_dir)
    check_output_path(output_dir, "output_dir", folder=True, error=TrainConfigError)
    checkpoint = latest_checkpoint(output_dir) if resume else None
    step, samples_seen, losses_before = 0, 0, []
    if resume and checkpoint is None:
        raise TrainConfigError(f"--resume: no checkpoint-STEP folder in {output_dir}")
    if not resume and latest_checkpoint(output_dir) is not None:
        raise TrainConfigError(f"{output_dir} already holds checkpoints; pass --resume to continue, "
                               "or give another --output-dir")
    if checkpoint is not None:
        try:
            saved = yaml.safe_load((checkpoint / CONFIG_FILE).read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError("not a mapping")
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise TrainConfigError(f"--resume: cannot read {checkpoint / CONFIG_FILE} ({e.__class__.__name__}); "
                                   "resume from an earlier checkpoint by removing this one") from None
        _check_resume(saved, config, checkpoint)
        step, samples_seen, losses_before = _read_trainer_state(checkpoint / STATE_FILE)
        if config.max_steps <= step:
            raise TrainConfigError(f"--resume: {checkpoint} is at step {step}; max_steps {config.max_steps} is not "
                                   "above it, so there is nothing to train (raise --max-steps)")
    bf16 = use_bf16(config.precision)
    if config.report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise TrainConfigError("report_to: tensorboard needs tensorboard (pip install 'vl3mem[train]'), "
                                   "or set report_to: none") from None
    accelerator = Accelerator(
        mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with="tensorboard" if config.report_to == "tensorboard" else None, project_dir=str(output_dir),
    )
    if accelerator.state.deepspeed_plugin is not None:  # no DataLoader to infer these from
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            gradient_clipping=config.optimizer.max_grad_norm or 0.0,
        )
    set_seed(config.seed)

    data = load_training_data(config.data)
    model, tokenizer, system_prompt = load_checkpoint(config.model, device=accelerator.device,
                                                      dtype=torch.bfloat16 if bf16 else torch.float32)
    session = build_session(model, tokenizer, config.memory, config.memory_options, frame_tokens=config.data.frame_tokens,
                            system_prompt=system_prompt if config.system_prompt else None)
    wrapped = session.model
    peft_model = prepare_model(wrapped, config)
    if checkpoint is not None:
        _load_trainable(wrapped, peft_model, checkpoint, config)
    counts = count_parameters(wrapped)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    o = config.optimizer
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    try:
        scheduler = get_scheduler(o.scheduler, optimizer, num_warmup_steps=o.warmup_steps,
                                  num_training_steps=config.max_steps)
    except (ValueError, KeyError) as e:
        raise TrainConfigError(f"optimizer.scheduler {o.scheduler!r}: {e}") from None
    model, optimizer = accelerator.prepare(wrapped, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, by us
    # trainable weights live in the checkpoint's own files; do not write the whole model again
    accelerator.register_save_state_pre_hook(lambda models, weights, _dir: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, _dir: models.clear())

    if checkpoint is not None:
        _check_rng_state(checkpoint / ACCELERATE_STATE / f"random_states_{accelerator.process_index}.pkl")
        try:
            accelerator.load_state(str(checkpoint / ACCELERATE_STATE))
        except Exception as e:  # noqa: BLE001  (torch / pickle / numpy raise many types for a damaged file)
            raise TrainConfigError(f"--resume: the training state in {checkpoint / ACCELERATE_STATE} is damaged "
                                   f"({e.__class__.__name__}: {' '.join(str(e).split())[:200]}); resume from an "
                                   "earlier checkpoint by removing this one") from None
    first_step = step
    sampler = StreamingSampler(session, data.dataset, dialogue=config.data.dialogue, max_length=config.data.max_length,
                               skip_bad=config.data.skip_bad, decode_ahead=config.data.decode_ahead)
    samples = sampler.samples(config.seed, start=samples_seen, rank=accelerator.process_index,
                              world_size=accelerator.num_processes)
    if config.report_to == "tensorboard":
        accelerator.init_trackers("tensorboard", config=_flat(config.to_dict()))
    if accelerator.is_main_process:
        print(f"trainable parameters: {counts['trainable']:,} of {counts['total']:,} (LoRA {counts['lora']:,}, "
              f"modules_to_save {counts['modules_to_save']:,}, FeatureAdapter {counts['feature_adapter']:,}, "
              f"projector {counts['projector']:,}); "
              f"{len(data.dataset)} turns in {data.num_records} conversations", file=sys.stderr)
        for line in data.skipped:
            print(f"vl3mem: skipped: {line}", file=sys.stderr)

    def save(at_step: int) -> Path:
        """Write ``checkpoint-STEP`` atomically: into a hidden temporary folder, renamed once complete,
        so a run killed while saving leaves no half-written checkpoint for ``--resume`` to take."""
        path = output_dir / f"checkpoint-{at_step}"
        partial = output_dir / f".checkpoint-{at_step}.partial"
        state_dict = accelerator.get_state_dict(model)  # every process: ZeRO-3 gathers shards
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            save_checkpoint(partial, wrapped, base_model=config.model, memory=config.memory,
                            memory_options=config.memory_options, peft_model=peft_model,
                            projector=config.train_projector, step=at_step, state_dict=state_dict)
            (partial / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            (partial / STATE_FILE).write_text(json.dumps(
                {"step": at_step, "samples_seen": samples_seen, "losses": losses_before + losses}, indent=1))
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial / ACCELERATE_STATE))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(path, ignore_errors=True)  # a complete one of the same step (a rerun): replaced
            partial.rename(path)
        accelerator.wait_for_everyone()
        return path

    losses: list[float] = []
    last = None
    pad_id = session.processor.pad_token_id
    start = time.perf_counter()
    with tqdm(total=config.max_steps, initial=step, unit="step", desc="train", file=sys.stderr,
              disable=not (progress and accelerator.is_main_process)) as bar:
        while step < config.max_steps:
            window = []
            for _ in range(config.gradient_accumulation_steps):
                batch = collate([next(samples) for _ in range(config.batch_size)], pad_id)
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.accumulate(model):
                    loss = model(**batch, return_logits=False).loss  # the head at answer tokens only
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and o.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, o.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                window.append(loss.detach())
                samples_seen += config.batch_size
            scheduler.step()
            step += 1
            value = accelerator.reduce(torch.stack(window).mean(), "mean").item()
            if not math.isfinite(value):
                kept = last or (checkpoint if checkpoint is not None else None)
                raise TrainConfigError(f"training loss is {value} at step {step}; nothing of this step was saved"
                                       + (f" (the last good checkpoint is {kept})" if kept else "")
                                       + "; lower optimizer.lr or raise optimizer.warmup_steps")
            losses.append(value)
            accelerator.log({"train/loss": value, "train/lr": scheduler.get_last_lr()[0]}, step=step)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.update(1)
            if step % config.save_steps == 0 or step == config.max_steps:
                last = save(step)
    seconds = time.perf_counter() - start
    accelerator.end_training()
    return TrainResult(output_dir, first_step, step, losses, seconds, last, counts, data.skipped + sampler.warnings)
