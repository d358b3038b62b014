"""The hook: VideoLLaMA3 whose language model sees the memory, not the whole video."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, VideoLlama3ForConditionalGeneration

from memory_bank import FeatureAdapter, MemoryBackend, MemoryBankConfig, MemoryEntry

from .models import VIDEO_TOKEN


def memory_tokens(entries: Sequence[MemoryEntry]) -> tuple[torch.Tensor, torch.Tensor]:
    """A readout as one tensor: ``(sum n_i, C)`` tokens (a new tensor, on the entries'
    device) and ``(sum n_i,)`` long tier ids.

    Raises:
        ValueError: for an empty readout.
    """
    if not entries:
        raise ValueError("the memory readout is empty; push a frame before asking")
    tokens = torch.cat([e.tokens for e in entries])
    tier_ids = torch.repeat_interleave(
        torch.tensor([e.tier for e in entries], device=tokens.device),
        torch.tensor([e.num_tokens for e in entries], device=tokens.device),
    )
    return tokens, tier_ids


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

    def build_messages(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> list[dict[str, Any]]:
        """Chat messages: the memory in the first user turn, earlier ``(question, answer)``
        turns, then ``question`` (a user message; no assistant reply)."""
        messages = []
        for i, (q, a) in enumerate(history):
            text = f"{self.memory_prompt(entries)}\n{q}" if i == 0 and entries else q
            messages += [{"role": "user", "content": [{"type": "text", "text": text}]},
                         {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        text = question if history or not entries else f"{self.memory_prompt(entries)}\n{question}"
        messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
        return messages

    def build_prompt(self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """Chat-formatted text: the memory, then the question (earlier turns first, when given),
        ending with the assistant's generation prompt."""
        return self.tokenizer.apply_chat_template(self.build_messages(entries, question, history), tokenize=False,
                                                  add_generation_prompt=True)

    def embed_visual(self, tokens: torch.Tensor, tier_ids: torch.Tensor) -> torch.Tensor:
        """Language-model inputs for memory tokens: FeatureAdapter (when the memory is
        enabled), then the native projector.

        Args:
            tokens: ``(N, C_mem)`` memory tokens (any float dtype, any device).
            tier_ids: ``(N,)`` long, the tier of each token.

        Returns:
            ``(N, D_llm)`` on the model's device, in the projector's dtype; differentiable
            with respect to the adapter and projector.
        """
        tokens = tokens.to(self.device, self.adapter.fc1.weight.dtype)
        if self.enable_memory_bank:
            tokens = self.adapter(tokens, tier_ids.to(self.device))
        return self.model.model.projector(tokens.to(self.model.model.projector.readout[0].weight.dtype))

    def visual_embeds(self, entries: Sequence[MemoryEntry]) -> torch.Tensor:
        """``(sum n_i, D_llm)`` language-model inputs for the entries (see :meth:`embed_visual`)."""
        tokens, tier_ids = memory_tokens(entries)
        return self.embed_visual(tokens, tier_ids)

    def _scatter_visual(self, input_ids: torch.Tensor, embeds: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """``embeds`` with ``visual`` rows written at the ``<|video_pad|>`` positions of ``input_ids``
        (row-major over the batch, as the native model does)."""
        mask = (input_ids == self.video_token_id).unsqueeze(-1)
        if int(mask.sum()) != visual.shape[0]:
            raise ValueError(
                f"prompt holds {int(mask.sum())} {VIDEO_TOKEN} tokens for {visual.shape[0]} visual tokens; "
                "the question text must not contain the video pad token"
            )
        return embeds.masked_scatter(mask, visual.to(embeds.dtype))

    def prepare_inputs(
        self, entries: Sequence[MemoryEntry], question: str, history: Sequence[tuple[str, str]] = ()
    ) -> dict[str, torch.Tensor]:
        """``input_ids`` ``(1, L)``, ``attention_mask`` ``(1, L)`` and ``inputs_embeds`` ``(1, L, D)``
        with the visual embeddings scattered at the ``<|video_pad|>`` positions.

        Raises:
            ValueError: when the question text holds ``<|video_pad|>`` itself.
        """
        text = self.build_prompt(entries, question, history)
        input_ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        if entries:
            embeds = self._scatter_visual(input_ids, embeds, self.visual_embeds(entries))
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "inputs_embeds": embeds}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual_tokens: torch.Tensor,
        tier_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> Any:
        """Training forward: memory tokens through adapter and projector into the prompt, then the
        native language model (its loss when ``labels`` are given).

        Args:
            input_ids: ``(B, L)`` long, right-padded prompts + answers.
            attention_mask: ``(B, L)``, 0 at padding.
            visual_tokens: ``(N, C_mem)``: every sample's memory tokens, concatenated in
                batch order; ``N`` equals the number of ``<|video_pad|>`` ids in ``input_ids``.
            tier_ids: ``(N,)`` long.
            labels: ``(B, L)`` long, -100 where no loss is taken (prompt, padding).

        Returns:
            The native model's output (``.loss``: mean cross-entropy over the labelled tokens,
            next-token shifted; ``.logits``: ``(B, L, vocab)``).

        Raises:
            ValueError: when the pad-token count and ``N`` differ.
        """
        embeds = self.model.get_input_embeddings()(input_ids)
        if visual_tokens.numel():
            embeds = self._scatter_visual(input_ids, embeds, self.embed_visual(visual_tokens, tier_ids))
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

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
