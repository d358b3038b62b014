"""FeatureAdapter: trainable map from memory tokens to the projector's input."""

from __future__ import annotations

import torch
from torch import nn


class FeatureAdapter(nn.Module):
    """Residual MLP plus a learned tier embedding, between the memory and the projector.

    ``out = P(x) + MLP(P(x)) + E[tier]`` where ``P`` is the identity when
    ``in_dim == out_dim`` and a learned linear projection otherwise. The MLP's
    output layer and the tier embedding ``E`` start at zero, so an untrained
    adapter with equal widths is exactly the identity: enabling memory does not
    change what the base model sees for full-size frames (docs/design.md section 5).
    Training moves the tier embedding first (its gradient is non-zero at init),
    letting the language model tell a sharp frame from a compressed one.

    Args:
        in_dim: width of the memory tokens (the vision encoder's, 1152 for SigLIP).
        out_dim: width the projector expects.
        num_tiers: number of memory tiers (3 for short / mid / long).
        hidden_dim: MLP hidden width (defaults to ``out_dim``).

    Raises:
        ValueError: for non-positive sizes.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tiers: int = 3, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = out_dim if hidden_dim is None else hidden_dim
        if min(in_dim, out_dim, num_tiers, hidden_dim) < 1:
            raise ValueError(
                f"FeatureAdapter sizes must be positive, got in_dim={in_dim}, out_dim={out_dim}, "
                f"num_tiers={num_tiers}, hidden_dim={hidden_dim}"
            )
        self.in_dim, self.out_dim, self.num_tiers = in_dim, out_dim, num_tiers
        self.input_proj = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)
        self.fc1 = nn.Linear(out_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.tier_embedding = nn.Embedding(num_tiers, out_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        nn.init.zeros_(self.tier_embedding.weight)

    def forward(self, tokens: torch.Tensor, tier_ids: torch.Tensor) -> torch.Tensor:
        """Adapt memory tokens.

        Args:
            tokens: ``(..., in_dim)`` floating tensor.
            tier_ids: integer tensor of the leading shape of ``tokens`` (``tokens.shape[:-1]``),
                values in ``[0, num_tiers)``: the tier each token came from.

        Returns:
            ``(..., out_dim)`` tensor in the adapter's dtype, on its device.

        Raises:
            ValueError: when the width or the tier ids do not match.
        """
        if tokens.shape[-1] != self.in_dim:
            raise ValueError(f"FeatureAdapter expects tokens of width {self.in_dim}, got shape {tuple(tokens.shape)}")
        if tier_ids.shape != tokens.shape[:-1]:
            raise ValueError(
                f"tier_ids of shape {tuple(tier_ids.shape)} must match the token shape {tuple(tokens.shape[:-1])}"
            )
        x = self.input_proj(tokens.to(self.fc1.weight.dtype))
        return x + self.fc2(self.act(self.fc1(x))) + self.tier_embedding(tier_ids)
