"""The hook: VideoLLaMA3 whose language model sees the memory, not the whole video.

:class:`VideoLlama3WithMemory` wraps transformers' native
``VideoLlama3ForConditionalGeneration`` and keeps the tensor side: per-frame encoding,
the FeatureAdapter, the projector, placing visual embeddings into the prompt, forward
and generate. Everything textual is :class:`~videollama3.processing.MemoryProcessor`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import VideoLlama3ForConditionalGeneration
from transformers.modeling_outputs import CausalLMOutputWithPast

from memory_bank import FeatureAdapter, MemoryBackend, MemoryConfigError, MemoryEntry

from .processing import IGNORE_INDEX


def memory_tokens(
    entries: Sequence[MemoryEntry], width: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A readout as one tensor: ``(sum n_i, C)`` tokens (a new tensor, on the entries' device and in
    their dtype) and ``(sum n_i,)`` long tier ids on the same device.

    Args:
        entries: a memory readout, in time order.
        width: ``C``, the width of an empty result (a question before the first frame).
        device: where an empty result is made (default: the CPU).
    """
    if not entries:
        return torch.zeros(0, width, device=device), torch.zeros(0, dtype=torch.long, device=device)
    tokens = torch.cat([e.tokens for e in entries])
    tier_ids = torch.repeat_interleave(
        torch.tensor([e.tier for e in entries], device=tokens.device),
        torch.tensor([e.num_tokens for e in entries], device=tokens.device),
    )
    return tokens, tier_ids


class MatmulPatchEmbedding(nn.Conv2d):
    """The vision encoder's patch embedding, ``nn.Conv2d(3, D, kernel_size=p, stride=p)`` applied to
    ``(N, 3, p, p)`` patches (one output position each), computed on the CPU as the matrix product it
    is: ``(N, 3 * p * p) @ (3 * p * p, D) + bias`` -> ``(N, D, 1, 1)``, the convolution's own output
    shape. Same parameters (names, shapes, the very tensors), so checkpoints, LoRA and optimisers see
    the native module; values equal the convolution's to float rounding (about 3e-6 at width 1152).

    Why: on the CPU, torch runs this convolution through oneDNN, which reorders the 3-channel patches
    and is 2.9x-3.6x slower than the product (batch of 8 frames of 520 patches, 1 thread, 2-core VM:
    7.8 against 2.6 ms at the tiny model's width 32; 53 against 15 ms for 2 frames at a real
    checkpoint's 1152), and in bfloat16 and float16 too (one frame at width 1152: 3.5 against 9.9 ms,
    54 against 169 ms). Against a float64 convolution its float32 error is 1.1e-6, oneDNN's 3.3e-6.
    The same rewrite as vLLM's ``Conv2dLayer`` for kernel == stride. On other devices, and for any
    other input shape, it is the native convolution.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, p, p)`` patches -> ``(N, D, 1, 1)``, in the input's dtype and on its device."""
        if input.is_cpu and input.dim() == 4 and tuple(input.shape[-2:]) == self.kernel_size:
            n = input.shape[0]
            out = F.linear(input.reshape(n, -1), self.weight.reshape(self.out_channels, -1), self.bias)
            return out.view(n, self.out_channels, 1, 1)
        return super().forward(input)


def conv_sharing_parameters(conv: nn.Conv2d, cls: type[nn.Conv2d]) -> nn.Conv2d:
    """A ``cls`` (``nn.Conv2d`` or a subclass) with ``conv``'s geometry and training mode whose
    ``weight`` and ``bias`` are ``conv``'s very tensors (no copy, no allocation)."""
    shared = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                 dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                 padding_mode=conv.padding_mode, device="meta")
    shared.weight, shared.bias = conv.weight, conv.bias
    return shared.train(conv.training)


def use_matmul_patch_embedding(model: VideoLlama3ForConditionalGeneration) -> None:
    """Swap the vision encoder's patch-embedding ``nn.Conv2d`` for a :class:`MatmulPatchEmbedding`
    sharing its parameters (no copy), in place, when its kernel equals its stride with no padding,
    dilation or groups (every VideoLLaMA3 checkpoint's); otherwise leave it. Called by
    :func:`~videollama3.loading.load_model` on every model it loads."""
    embeddings = model.model.vision_model.embeddings
    conv = embeddings.patch_embedding
    if type(conv) is not nn.Conv2d or conv.stride != conv.kernel_size or conv.groups != 1 \
            or conv.dilation != (1, 1) or conv.padding not in ("valid", (0, 0)) or conv.padding_mode != "zeros":
        return
    embeddings.patch_embedding = conv_sharing_parameters(conv, MatmulPatchEmbedding)


ASSISTED_GENERATION_KWARGS = ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit")
"""``generate`` arguments that score candidate tokens at several positions of one forward
(assisted decoding): :meth:`VideoLlama3WithMemory.generate` leaves the head whole for them."""


def _keep_last_position(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of the language-model head: ``(B, L, D)`` hidden states -> ``(B, 1, D)``, the last position."""
    return (args[0][:, -1:], *args[1:])


@contextlib.contextmanager
def last_position_logits(model: VideoLlama3ForConditionalGeneration) -> Iterator[None]:
    """Within the block, ``model``'s language-model head computes the logits of the last position only:
    ``(B, 1, vocab)`` instead of ``(B, L, vocab)``, all ``generate`` reads of a forward (greedy, sampling,
    beam search; not assisted decoding, which scores several candidates at once).

    This is what transformers' ``generate`` does with ``logits_to_keep=1`` for a model whose ``forward``
    takes it (Qwen2's does); ``VideoLlama3ForConditionalGeneration.forward`` (transformers 5.24) does not,
    so its prefill computes the head at every prompt position, about 1,500 of them for the default memory:
    ``1500 x 151936`` logits, 0.7 TFLOP and 0.46 GB in bfloat16 at the 2B checkpoint's width 1536 (by
    FLOPs about 15 % of its prefill), 1.6 TFLOP at the 7B's 3584 (about 8 %). Measured with
    ``vl3mem bench head`` (2B widths, 2 decoder layers, float32, 2-core CPU): 7.3 s against 2.5 s per
    prefill, peak memory 925 against 225 MB above the model's. Done with a forward pre-hook on
    ``model.get_output_embeddings()`` (a peft ``modules_to_save`` wrapper included), removed on exit;
    the module and its weights are untouched. Not for a forward whose other positions are needed (a
    loss): :meth:`VideoLlama3WithMemory.generate` is its one user.
    """
    handle = model.get_output_embeddings().register_forward_pre_hook(_keep_last_position)
    try:
        yield
    finally:
        handle.remove()


def labelled_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens, with ``head`` applied to the positions that
    predict one only.

    The loss of transformers' ``ForCausalLMLoss`` (``labels`` shifted by one, :data:`IGNORE_INDEX` ignored, float32
    logits, mean over the labelled tokens), which the native ``VideoLlama3ForConditionalGeneration``
    computes from the logits of every position. A training sample is mostly prompt (the memory's
    visual tokens), so that is ``(B, L, vocab)`` float32 logits, and their gradient, for the few
    answer tokens the loss reads: at ``L = 1500`` and a vocabulary of 151,936, 0.9 GB per sample.

    Args:
        head: the language-model head (``model.get_output_embeddings()``), ``D -> vocab``.
        hidden: ``(B, L, D)`` last hidden states of the language model, any dtype and device.
        labels: ``(B, L)`` long, :data:`IGNORE_INDEX` (-100) where no loss is taken; any device.

    Returns:
        A float32 scalar on ``hidden``'s device, differentiable; NaN when no token is labelled (as the native loss).
        Selecting the labelled rows costs one device sync (their count).
    """
    targets = labels[:, 1:].to(hidden.device)
    labelled = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][labelled]).float()
    return F.cross_entropy(logits, targets[labelled])


class VideoLlama3WithMemory(nn.Module):
    """Wraps transformers' native ``VideoLlama3ForConditionalGeneration`` with a FeatureAdapter
    sized for a memory backend.

    Frames are encoded one at a time by ``model.model.vision_model`` (exact: vision
    attention is per frame); their pre-projector tokens ``(h*w, C_vis)`` go to a memory
    backend; a question's visual tokens are the memory readout, mapped by
    ``FeatureAdapter -> projector`` and placed at the prompt's ``<|video_pad|>`` positions
    exactly as the native model places its video features.

    The adapter is sized from the memory it is built for: ``FeatureAdapter(in = the
    memory's token width, out = the vision width, tiers = len(memory.memory_tier_names))``.
    Built without a memory, there is no adapter and visual tokens go straight to the
    projector: with every frame kept (``memory_bank.UnboundedMemory``) that is the native
    model (``--memory none``).

    Args:
        model: a native VideoLLaMA3 (any checkpoint, or the tiny one).
        memory: the backend whose tokens the adapter maps (None: no adapter).

    Raises:
        MemoryConfigError: when the memory has no tiers.
    """

    def __init__(self, model: VideoLlama3ForConditionalGeneration, memory: MemoryBackend | None = None) -> None:
        super().__init__()
        self.model = model
        vision_width = model.config.vision_config.hidden_size
        self.adapter: FeatureAdapter | None = None
        if memory is not None:
            tiers = len(memory.memory_tier_names)
            if tiers < 1:
                raise MemoryConfigError(f"{type(memory).__name__} names no tiers; memory_tier_names must not be empty")
            self.adapter = FeatureAdapter(memory.mm_hidden_size, vision_width, tiers)
            self.adapter.to(device=model.device, dtype=model.dtype)
        self.video_token_id = model.config.video_token_id

    @property
    def device(self) -> torch.device:
        """Device of the native model."""
        return self.model.device

    @property
    def vision_dtype(self) -> torch.dtype:
        """Dtype of the vision encoder's weights (what ``pixel_values`` should be built in)."""
        return self.model.model.vision_model.dtype

    @property
    def patch_size(self) -> int:
        """Side in pixels of the vision encoder's patches (14 in every VideoLLaMA3 checkpoint; what
        ``pixel_values`` must be cut into, see :func:`~videollama3.preprocess.preprocess_frames`)."""
        return self.model.config.vision_config.patch_size

    @property
    def memory_width(self) -> int:
        """Width ``C`` of the tokens this model takes from a memory (the adapter's input, else the vision width)."""
        return self.adapter.in_dim if self.adapter is not None else self.model.config.vision_config.hidden_size

    def check_memory(self, memory: MemoryBackend) -> None:
        """Raise :class:`MemoryConfigError` unless ``memory``'s tokens fit this model.

        The width must be :attr:`memory_width` and, with an adapter, every tier must have
        a tier embedding.
        """
        if memory.mm_hidden_size != self.memory_width:
            raise MemoryConfigError(
                f"memory stores tokens of width {memory.mm_hidden_size} but the model takes {self.memory_width}; "
                "build the memory with mm_hidden_size equal to the model's"
            )
        tiers = len(memory.memory_tier_names)
        if self.adapter is not None and tiers > self.adapter.num_tiers:
            raise MemoryConfigError(
                f"memory {type(memory).__name__} has {tiers} tiers but the model's FeatureAdapter embeds "
                f"{self.adapter.num_tiers}; build the model for that memory"
            )

    # ------------------------------------------------------------ encoding
    @torch.no_grad()
    def encode_frames(
        self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, merge_sizes: torch.Tensor
    ) -> torch.Tensor | list[torch.Tensor]:
        """Pre-projector tokens of each frame.

        Args:
            pixel_values: ``(sum t*gh*gw, 3*14*14)`` from :func:`~videollama3.preprocess.preprocess_frames`,
                in :attr:`vision_dtype`, on any device (moved to :attr:`device` here: a session
                preprocesses on the CPU and uploads a batch at a time).
            grid_thw: ``(F, 3)`` long, one ``[1, gh, gw]`` row per frame.
            merge_sizes: ``(F,)`` long.

        Returns:
            The ``F`` token grids of shape ``(gh / merge, gw / merge, C_vis)`` (9 x 16 x 1152 for a
            16:9 frame of a real checkpoint at 144 tokens), in the vision model's dtype and on its
            device: one ``(F, h, w, C_vis)`` tensor when the frames share a grid (the encoder's output
            buffer, as :meth:`~memory_bank.MemoryBackend.add_frames` takes a batch), else a list of
            views into that buffer. Either way ``result[i]`` is frame ``i``'s grid (a memory backend
            copies what it keeps).
        """
        out = self.model.model.vision_model(
            pixel_values=pixel_values.to(self.device, self.vision_dtype),
            grid_thw=grid_thw.to(self.device),
            merge_sizes=merge_sizes.to(self.device),
        ).last_hidden_state
        grids = (grid_thw[:, 1:] // merge_sizes[:, None]).tolist()
        if all(grid == grids[0] for grid in grids):
            return out.view(len(grids), grids[0][0], grids[0][1], -1)
        return [t.view(h, w, -1) for t, (h, w) in zip(out.split([h * w for h, w in grids]), grids)]

    # ----------------------------------------------------------- embedding
    def embed_visual(self, tokens: torch.Tensor, tier_ids: torch.Tensor) -> torch.Tensor:
        """Language-model inputs for memory tokens: the FeatureAdapter (when there is one),
        then the native projector.

        Args:
            tokens: ``(N, C_mem)`` memory tokens (any float dtype, any device).
            tier_ids: ``(N,)`` long, the tier of each token.

        Returns:
            ``(N, D_llm)`` on the model's device, in the projector's dtype; differentiable
            with respect to the adapter and projector.
        """
        projector = self.model.model.projector
        dtype = next(projector.parameters()).dtype
        if self.adapter is not None:
            tokens = self.adapter(tokens.to(self.device), tier_ids.to(self.device))
        return projector(tokens.to(self.device, dtype))

    def inputs_embeds(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor, tier_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` embeddings of ``input_ids`` with the visual embeddings of ``visual_tokens`` at the
        ``<|video_pad|>`` positions (row-major over the batch), placed by the native model's
        ``get_placeholder_mask``, which checks that the counts agree.

        Raises:
            ValueError: when the number of ``<|video_pad|>`` ids differs from ``N``.
        """
        input_ids = input_ids.to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        if not visual_tokens.numel():
            return embeds
        visual = self.embed_visual(visual_tokens, tier_ids).to(embeds.dtype)
        _, mask = self.model.model.get_placeholder_mask(input_ids, embeds, video_features=visual)
        return embeds.masked_scatter(mask, visual)

    # ----------------------------------------------------- forward, generate
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual_tokens: torch.Tensor,
        tier_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_logits: bool = True,
    ) -> Any:
        """Memory tokens through adapter and projector into the prompt, then the native language
        model (its loss when ``labels`` are given).

        Args:
            input_ids: ``(B, L)`` long, right-padded prompts (+ answers in training).
            attention_mask: ``(B, L)``, 0 at padding.
            visual_tokens: ``(N, C_mem)``: every sample's memory tokens, concatenated in
                batch order; ``N`` equals the number of ``<|video_pad|>`` ids in ``input_ids``.
            tier_ids: ``(N,)`` long.
            labels: ``(B, L)`` long, -100 where no loss is taken (prompt, padding).
            return_logits: False, with ``labels``: no logits, and the head runs only at the positions
                the loss reads (:func:`labelled_loss`): the same loss and gradients, without the
                ``(B, L, vocab)`` logits (what training uses; ``train/trainer.py``).

        Returns:
            The native model's output (``.loss``: mean cross-entropy over the labelled tokens,
            next-token shifted, float32; ``.logits``: ``(B, L, vocab)``), or with ``return_logits=False``
            and ``labels`` a ``CausalLMOutputWithPast`` holding that ``.loss`` only.

        Raises:
            ValueError: when the pad-token count and ``N`` differ.
        """
        embeds = self.inputs_embeds(input_ids, visual_tokens, tier_ids)
        attention_mask = attention_mask.to(self.device)
        if labels is None or return_logits:
            return self.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)
        hidden = self.model.model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return CausalLMOutputWithPast(loss=labelled_loss(self.model.get_output_embeddings(), hidden, labels))

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual_tokens: torch.Tensor,
        tier_ids: torch.Tensor,
        max_new_tokens: int = 64,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate after a prompt holding the memory (greedy unless ``generate_kwargs`` say otherwise).

        The head computes the logits of the last position only (:func:`last_position_logits`), as
        transformers does for models that take ``logits_to_keep``; same tokens and scores.

        Args:
            input_ids, attention_mask, visual_tokens, tier_ids: as for :meth:`forward`, ``B = 1``.
            max_new_tokens: generation budget.
            **generate_kwargs: passed to the native ``generate``.

        Returns:
            ``(1, T)`` long: the new tokens only (or what ``generate_kwargs`` such as
            ``return_dict_in_generate`` ask the native ``generate`` for).
        """
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", self.model.generation_config.pad_token_id)
        embeds = self.inputs_embeds(input_ids, visual_tokens, tier_ids)
        assisted = any(generate_kwargs.get(name) is not None for name in ASSISTED_GENERATION_KWARGS)
        with contextlib.nullcontext() if assisted else last_position_logits(self.model):
            return self.model.generate(inputs_embeds=embeds, attention_mask=attention_mask.to(self.device),
                                       max_new_tokens=max_new_tokens, **generate_kwargs)
