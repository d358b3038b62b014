import pytest
import torch

from memory_bank import FeatureAdapter


def test_identity_at_init_with_equal_widths():
    adapter = FeatureAdapter(32, 32, num_tiers=3)
    x = torch.randn(10, 32)
    tiers = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    assert torch.equal(adapter(x, tiers), x)


def test_learned_projection_when_widths_differ():
    adapter = FeatureAdapter(16, 24)
    out = adapter(torch.randn(2, 5, 16), torch.zeros(2, 5, dtype=torch.long))
    assert out.shape == (2, 5, 24)
    assert isinstance(adapter.input_proj, torch.nn.Linear)


def test_gradient_reaches_the_adapter_at_init():
    adapter = FeatureAdapter(8, 8, num_tiers=3)
    x = torch.randn(6, 8)
    tiers = torch.tensor([0, 0, 1, 1, 2, 2])
    adapter(x, tiers).pow(2).sum().backward()
    assert adapter.tier_embedding.weight.grad.abs().sum() > 0
    assert adapter.fc2.weight.grad.abs().sum() > 0
    # each tier's embedding gradient is the sum of 2 * output over its tokens
    assert torch.allclose(adapter.tier_embedding.weight.grad[1], 2 * x[2:4].sum(0))


def test_tier_embedding_tells_tiers_apart_after_a_step():
    adapter = FeatureAdapter(8, 8)
    opt = torch.optim.SGD(adapter.parameters(), lr=0.1)
    x = torch.randn(6, 8)
    tiers = torch.tensor([0, 0, 1, 1, 2, 2])
    (adapter(x, tiers) - 1).pow(2).sum().backward()
    opt.step()
    out = adapter(torch.zeros(3, 8), torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1])


def test_rejects_mismatched_inputs():
    adapter = FeatureAdapter(8, 8)
    with pytest.raises(ValueError, match="width 8"):
        adapter(torch.randn(3, 9), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="tier_ids"):
        adapter(torch.randn(3, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="positive"):
        FeatureAdapter(0, 8)
