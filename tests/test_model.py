"""The Pangu model: DSSN and TinyInit as DESIGN.md states them, document masking,
parameter counts, and a loss that falls."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from pangu_cli.main import app
from pangu_cli.model import ModelConfig, PanguModel
from pangu_cli.presets import PRESETS, describe, model_config


def small_cfg(**kw) -> ModelConfig:
    base = dict(n_layers=8, d_model=256, ffn_hidden=512, n_heads=4, n_kv_heads=2, vocab_size=512)
    return ModelConfig(**{**base, **kw})


def test_depth_scaled_sandwich_gammas():
    torch.manual_seed(0)
    cfg = small_cfg()
    model = PanguModel(cfg)
    for block in model.layers.values():
        assert torch.allclose(block.attn_post_norm.weight, torch.full((256,), 0.283 / math.sqrt(8)))
        assert torch.allclose(block.mlp_post_norm.weight, torch.full((256,), 0.432 / math.sqrt(8)))
        assert torch.all(block.attn_norm.weight == 1) and torch.all(block.mlp_norm.weight == 1)
    plain = PanguModel(small_cfg(norm="sandwich"))
    assert torch.all(plain.layers["0"].attn_post_norm.weight == 1)
    pre_ln = PanguModel(small_cfg(norm="pre_ln"))
    assert pre_ln.layers["0"].attn_post_norm is None
    # four norms per layer with sandwich, two with pre-LN
    assert sum(1 for n, _ in model.named_parameters() if "norm" in n) == 4 * 8 + 1
    assert sum(1 for n, _ in pre_ln.named_parameters() if "norm" in n) == 2 * 8 + 1


def test_tiny_init_and_baseline_init_std():
    torch.manual_seed(0)
    d, depth = 256, 8
    tiny = PanguModel(small_cfg())
    sigma = math.sqrt(1 / (2 * d * depth))
    for w in (
        tiny.layers["3"].attn.wq.weight,
        tiny.layers["3"].mlp.w_down.weight,
        tiny.output.weight,
    ):
        assert w.std().item() == pytest.approx(sigma, rel=0.03)
    assert tiny.tok_embeddings.weight.std().item() == pytest.approx(0.5, rel=0.03)
    base = PanguModel(small_cfg(init="baseline"))
    assert base.layers["0"].attn.wq.weight.std().item() == pytest.approx(
        math.sqrt(2 / (5 * d)), rel=0.03
    )
    assert base.layers["0"].attn.wo.weight.std().item() == pytest.approx(
        math.sqrt(2 / (5 * d * depth)), rel=0.03
    )


def test_sublayer_output_std_matches_dssn_constants():
    """DSSN: at init each sublayer adds to the residual stream with std c / sqrt(L)."""
    torch.manual_seed(0)
    model = PanguModel(small_cfg())
    block = model.layers["0"]
    h = model.tok_embeddings(torch.randint(0, 512, (4, 64)))
    rope = __import__("kernels").rope_cos_sin(torch.arange(64).expand(4, 64), 64, 1e4)
    a = block.attn_post_norm(block.attn(block.attn_norm(h), rope, None))
    assert a.std().item() == pytest.approx(0.283 / math.sqrt(8), rel=0.1)


def test_document_mask_and_position_reset_isolate_documents():
    torch.manual_seed(0)
    model = PanguModel(model_config("tiny"))
    tokens = torch.randint(0, 8192, (2, 40))
    doc_ids = torch.zeros(2, 40, dtype=torch.int32)
    doc_ids[:, 15:] = 1
    positions = torch.arange(40).expand(2, 40).clone()
    positions[:, 15:] -= 15
    packed = model(tokens, positions, doc_ids)
    alone = model(tokens[:, 15:], positions[:, 15:], None)
    torch.testing.assert_close(packed[:, 15:], alone, rtol=1e-5, atol=1e-5)
    # without the mask, the second document sees the first
    unmasked = model(tokens, positions, None)
    assert (unmasked[:, 15:] - alone).abs().max() > 1e-3


def test_parameter_count_matches_closed_form():
    cfg = PRESETS["pangu-ultra-135b"]
    d, f, hd = cfg.d_model, cfg.ffn_hidden, cfg.head_dim
    attn = d * cfg.n_heads * hd * 2 + d * cfg.n_kv_heads * hd * 2
    per_layer = attn + 3 * d * f + 4 * d
    expected = cfg.n_layers * per_layer + 2 * cfg.vocab_size * d + d
    info = describe(cfg, 4096)
    assert info["parameters"] == expected
    assert info["parameters"] == pytest.approx(133.9e9, rel=0.005)
    assert (
        info["training_flops_per_token"]
        == 6 * (expected - cfg.vocab_size * d) + 12 * 94 * (96 * 128) * 4096
    )


def test_model_info_cli_json():
    result = CliRunner().invoke(app, ["model-info", "--preset", "pangu-ultra-135b", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert abs(info["parameters"] / 133.9e9 - 1) < 0.005
    assert (info["layers"], info["hidden"], info["ffn_hidden"]) == (94, 12288, 28672)
    assert (info["heads"], info["kv_heads"], info["head_dim"], info["vocab_size"]) == (
        96,
        8,
        128,
        153376,
    )


def test_model_info_unknown_preset_is_one_line_exit_2():
    result = CliRunner().invoke(app, ["model-info", "--preset", "nope"])
    assert result.exit_code == 2
    assert "unknown model preset 'nope'" in result.output
    assert "Traceback" not in result.output


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = PanguModel(model_config("tiny", vocab_size=256))
    tokens = torch.randint(0, 256, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(tokens[:, :-1], targets=tokens[:, 1:]) / tokens[:, 1:].numel()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), rel=0.05)
    assert losses[-1] < 0.6 * losses[0]
