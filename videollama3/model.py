"""The hook: VideoLLaMA3 whose language model sees the memory, not the whole video."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, VideoLlama3ForConditionalGeneration

from memory_bank import FeatureAdapter, MemoryBackend, MemoryBankConfig, MemoryEntry

from .models import VIDEO_TOKEN


class VideoLlama3WithMemory(nn.Module):
    """Wraps transformers' native ``VideoLlama3ForConditionalGeneration`` with a memory.

    Frames are encoded one at a time by ``model.model.vision_model`` (exact:
    vision attention is per frame); their pre-projector tokens ``(144, C_vis)``
    go to a memory backend; a question is answered from the memory readout:
    ``FeatureAdapter -> projector -> "Time {t:.1f}s:" + <|video_pad|> x n_i`` per
    entry in time order, scattered into ``inputs_embeds`` at the pad positions
    exactly as the native model does.

    With ``enable_memory_bank=False`` the adapter is skipped and the caller keeps
    every frame (``memory_bank.UnboundedMemory``): the result is the native model.

    Args:
        model: a native VideoLLaMA3 (any checkpoint, or the tiny one).
        tokenizer: its tokenizer, with a chat template.
        memory_config: memory settings; ``mm_hidden_size`` defaults to the vision
            encoder width. Its width may differ from the encoder's (features from
            another encoder): the adapter then projects.
        enable_memory_bank: use the memory + adapter (True) or the native path.

    Raises:
        ValueError: when the tokenizer lacks ``<|video_pad|>``.
    """

    def __init__(
        self,
        model: VideoLlama3ForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        memory_config: MemoryBankConfig | None = None,
        enable_memory_bank: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        vision_width = model.config.vision_config.hidden_size
        self.memory_config = memory_config or MemoryBankConfig(mm_hidden_size=vision_width)
        self.enable_memory_bank = enable_memory_bank
        self.adapter = FeatureAdapter(self.memory_config.mm_hidden_size, vision_width, self.memory_config.num_tiers)
        self.adapter.to(device=model.device, dtype=model.dtype)
        self.video_token_id = model.config.video_token_id
        if tokenizer.convert_tokens_to_ids(VIDEO_TOKEN) != self.video_token_id:
            raise ValueError(
                f"tokenizer maps {VIDEO_TOKEN} to {tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)} but the model "
                f"expects id {self.video_token_id}; load the tokenizer that belongs to the checkpoint"
            )

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.model.model.vision_model.dtype

    # ------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_frames(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, merge_sizes: torch.Tensor) -> list[torch.Tensor]:
        """Pre-projector tokens of each frame.

        Args:
            pixel_values: ``(sum t*gh*gw, 3*14*14)`` from :func:`~videollama3.preprocess.preprocess_frames`.
            grid_thw: ``(F, 3)`` long, one ``[1, gh, gw]`` row per frame.
            merge_sizes: ``(F,)`` long.

        Returns:
            ``F`` tensors of shape ``(gh*gw / merge**2, C_vis)`` (144 x 1152 for real
            checkpoints at 336x336), in the vision model's dtype and device.
        """
        out = self.model.model.vision_model(
            pixel_values=pixel_values.to(self.device, self.vision_dtype),
            grid_thw=grid_thw.to(self.device),
            merge_sizes=merge_sizes.to(self.device),
        ).last_hidden_state
        sizes = (grid_thw.prod(dim=1) // merge_sizes**2).tolist()
        return list(out.split(sizes))

    def encode_images_with_memory(
        self,
        pixel_values: torch.Tensor,
        grid_thw: torch.Tensor,
        merge_sizes: torch.Tensor,
        timestamps: Sequence[float],
        memory: MemoryBackend,
        frame_indices: Sequence[int] | None = None,
    ) -> list[MemoryEntry]:
        """Encode frames one at a time, add each to ``memory``, return the readout.

        Args:
            pixel_values, grid_thw, merge_sizes: as for :meth:`encode_frames`, ``F`` frames.
            timestamps: ``F`` times in seconds.
            memory: any memory backend.
            frame_indices: ``F`` indices (default: continue after the frames the memory has seen).

        Returns:
            The memory readout after the last frame, in time order.

        Raises:
            ValueError: when ``timestamps`` or ``frame_indices`` do not give one value per frame.
        """
        patches = grid_thw.prod(dim=1).tolist()
        if frame_indices is None:
            start = memory.stats().get("frames_added", 0)
            frame_indices = range(start, start + len(patches))
        if not len(timestamps) == len(frame_indices) == len(patches) == len(merge_sizes):
            raise ValueError(
                f"{len(patches)} frames in grid_thw but {len(timestamps)} timestamps, {len(frame_indices)} frame "
                f"indices and {len(merge_sizes)} merge sizes; give one of each per frame"
            )
        for pv, thw, ms, t, i in zip(pixel_values.split(patches), grid_thw, merge_sizes, timestamps, frame_indices):
            (tokens,) = self.encode_frames(pv, thw[None], ms[None])
            memory.add(tokens, i, t)
        return memory.readout()

    # ------------------------------------------------------------- prompt
    def memory_prompt(self, entries: Sequence[MemoryEntry]) -> str:
        """``Time {t:.1f}s:`` + ``<|video_pad|>`` x n_i per entry, joined by ``,`` (the native format).

        A merged entry is labelled with its start time.
        """
        return ",".join(f"Time {e.timestamp:.1f}s:" + VIDEO_TOKEN * e.num_tokens for e in entries)

    def build_prompt(self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """Chat-formatted text: the memory, then the question (earlier turns first, when given)."""
        messages = []
        for i, (q, a) in enumerate(history):
            text = f"{self.memory_prompt(entries)}\n{q}" if i == 0 and entries else q
            messages += [{"role": "user", "content": [{"type": "text", "text": text}]},
                         {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        text = question if history or not entries else f"{self.memory_prompt(entries)}\n{question}"
        messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def visual_embeds(self, entries: Sequence[MemoryEntry]) -> torch.Tensor:
        """``(sum n_i, D_llm)`` language-model inputs for the entries: adapter (when the memory
        is enabled), then the native projector."""
        tokens = torch.cat([e.tokens for e in entries]).to(self.device, self.adapter.fc1.weight.dtype)
        if self.enable_memory_bank:
            tiers = torch.repeat_interleave(
                torch.tensor([e.tier for e in entries], device=self.device),
                torch.tensor([e.num_tokens for e in entries], device=self.device),
            )
            tokens = self.adapter(tokens, tiers)
        return self.model.model.projector(tokens.to(self.model.model.projector.readout[0].weight.dtype))

    def prepare_inputs(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> dict[str, torch.Tensor]:
        """``input_ids`` ``(1, L)``, ``attention_mask`` ``(1, L)`` and ``inputs_embeds`` ``(1, L, D)``
        with the visual embeddings scattered at the ``<|video_pad|>`` positions."""
        text = self.build_prompt(entries, question, history)
        input_ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        if entries:
            visual = self.visual_embeds(entries).to(embeds.dtype)
            mask = (input_ids == self.video_token_id).unsqueeze(-1)
            if int(mask.sum()) != visual.shape[0]:
                raise ValueError(
                    f"prompt holds {int(mask.sum())} {VIDEO_TOKEN} tokens for {visual.shape[0]} visual tokens; "
                    "the question text must not contain the video pad token"
                )
            embeds = embeds.masked_scatter(mask, visual)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "inputs_embeds": embeds}

    @torch.no_grad()
    def generate(
        self, entries: Sequence[MemoryEntry], question: str, max_new_tokens: int = 64,
        history: Sequence[tuple[str, str]] = (), **generate_kwargs,
    ) -> str:
        """Answer ``question`` from the memory ``entries`` (greedy unless ``generate_kwargs`` say otherwise)."""
        inputs = self.prepare_inputs(entries, question, history)
        generate_kwargs.setdefault("do_sample", False)
        out = self.model.generate(
            inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
            max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **generate_kwargs,
        )
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()
