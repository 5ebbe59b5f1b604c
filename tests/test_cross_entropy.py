"""The fused head + cross-entropy against the plain logits -> F.cross_entropy reference."""

import pytest
import torch

import kernels
from kernels import cross_entropy as ce
from pangu_cli.model import ModelConfig, PanguModel, cross_entropy_sum


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def loss_and_grads(fn, hidden, weight, targets, scale: float = 0.37):
    h = hidden.detach().clone().requires_grad_(True)
    w = weight.detach().clone().requires_grad_(True)
    loss = fn(h, w, targets)
    (loss * scale).backward()  # an upstream gradient that is not 1
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk_elements", [1 << 22, 7 * 50, 64 * 50])
def test_fused_matches_reference_with_ignored_targets(monkeypatch, chunk_elements):
    # 7 * 50 elements = 7-row chunks over 45 rows: an uneven last chunk.
    monkeypatch.setattr(ce, "CHUNK_ELEMENTS", chunk_elements)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 15, 16, generator=g)
    weight = torch.randn(50, 16, generator=g) * 0.3
    targets = torch.randint(0, 50, (3, 15), generator=g)
    targets[0, :4] = -100
    targets[2, -1] = -100
    fused = loss_and_grads(kernels.linear_cross_entropy, hidden, weight, targets)
    ref = loss_and_grads(
        lambda h, w, t: kernels.linear_cross_entropy_reference(h.flatten(0, 1), w, t.flatten()),
        hidden, weight, targets,
    )  # fmt: skip
    assert fused[0].dtype == torch.float32
    for a, b in zip(fused, ref, strict=True):
        assert rel_err(a, b) < 1e-5
    # Ignored positions get no gradient.
    assert fused[1][0, :4].abs().max() == 0


def test_no_grad_path_gives_the_same_loss():
    hidden, weight = torch.randn(40, 8), torch.randn(30, 8)
    targets = torch.randint(0, 30, (40,))
    with torch.no_grad():
        loss = kernels.linear_cross_entropy(hidden, weight, targets)
    ref = kernels.linear_cross_entropy_reference(hidden, weight, targets)
    assert rel_err(loss, ref) < 1e-6


def test_bf16_autocast_matches_reference_under_autocast():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(64, 32, generator=g)
    weight = torch.randn(100, 32, generator=g) * 0.2
    targets = torch.randint(0, 100, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = loss_and_grads(kernels.linear_cross_entropy, hidden, weight, targets)
        ref = loss_and_grads(kernels.linear_cross_entropy_reference, hidden, weight, targets)
    assert fused[2].dtype == torch.float32  # the weight's gradient keeps the weight's dtype
    for a, b in zip(fused, ref, strict=True):
        assert rel_err(a, b) < 2e-2


def test_model_with_targets_returns_the_summed_loss_of_its_logits():
    torch.manual_seed(0)
    model = PanguModel(ModelConfig(n_layers=2, d_model=32, ffn_hidden=64, vocab_size=97))
    tokens = torch.randint(0, 97, (2, 12))
    targets = torch.randint(0, 97, (2, 12))
    targets[1, 5:] = -100
    fused = model(tokens, targets=targets)
    grads = torch.autograd.grad(fused, list(model.parameters()))
    plain = cross_entropy_sum(model(tokens), targets)
    ref_grads = torch.autograd.grad(plain, list(model.parameters()))
    assert rel_err(fused, plain) < 1e-6
    for a, b in zip(grads, ref_grads, strict=True):
        assert rel_err(a, b) < 1e-5
