"""Model presets, from CPU-test size to Pangu Ultra, and their parameter and FLOP counts.

Depth is the main dial, as in the report: the ladder grows deep and fairly narrow
(head dim 128 from 1B up, GQA with 8 KV heads at the top). Smaller presets keep
the report's vocabulary by default; the training stages resize it to the tokenizer.
"""

from __future__ import annotations

import dataclasses

import torch

from pangu_cli.errors import UserError
from pangu_cli.model import ModelConfig, PanguModel

PANGU_VOCAB = 153_376

PRESETS: dict[str, ModelConfig] = {
    # CPU tests in seconds.
    "tiny": ModelConfig(
        n_layers=4, d_model=64, ffn_hidden=176, n_heads=4, n_kv_heads=2, vocab_size=8192
    ),
    # The bundled demo: a few minutes of training on 2 CPU cores.
    "small": ModelConfig(
        n_layers=6, d_model=256, ffn_hidden=704, n_heads=8, n_kv_heads=2, vocab_size=8192
    ),
    "125m": ModelConfig(
        n_layers=20, d_model=640, ffn_hidden=1728, n_heads=10, n_kv_heads=2,
        vocab_size=32_768,
    ),
    "1b": ModelConfig(
        n_layers=32, d_model=1536, ffn_hidden=4096, n_heads=12, n_kv_heads=4,
        vocab_size=PANGU_VOCAB,
    ),
    "7b": ModelConfig(
        n_layers=48, d_model=3584, ffn_hidden=9728, n_heads=28, n_kv_heads=4,
        vocab_size=PANGU_VOCAB,
    ),
    "13b": ModelConfig(
        n_layers=64, d_model=4096, ffn_hidden=11264, n_heads=32, n_kv_heads=8,
        vocab_size=PANGU_VOCAB,
    ),
    # DESIGN.md section 2: 94 layers, 12288 hidden, SwiGLU 28672, 96/8 heads, 153,376 tokens.
    "pangu-ultra-135b": ModelConfig(
        n_layers=94, d_model=12288, ffn_hidden=28672, n_heads=96, n_kv_heads=8,
        vocab_size=PANGU_VOCAB,
    ),
}  # fmt: skip


def model_config(preset: str, **overrides: object) -> ModelConfig:
    """A preset's config with fields replaced (None values are ignored)."""
    if preset not in PRESETS:
        raise UserError(f"unknown model preset '{preset}' (known: {', '.join(PRESETS)})")
    fields = {k: v for k, v in overrides.items() if v is not None}
    base = PRESETS[preset]
    if "n_heads" in fields or "d_model" in fields:
        fields.setdefault("head_dim", 0)  # re-derive head_dim unless given
    try:
        return dataclasses.replace(base, **fields)
    except (TypeError, ValueError) as e:
        raise UserError(f"model config: {e}") from None


def build_meta_model(cfg: ModelConfig) -> PanguModel:
    """The model on the meta device: shapes only, no memory, instant at any size."""
    with torch.device("meta"):
        return PanguModel(cfg)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    embedding = model.tok_embeddings.weight.numel() if model.tok_embeddings is not None else 0
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def training_flops_per_token(cfg: ModelConfig, n_params: int, n_embedding: int, seq_len: int):
    """Model FLOPs per trained token: 6 per matmul parameter (forward + backward) plus
    attention scores and values, 12 * L * heads * head_dim * T (PaLM appendix B). The
    input embedding is a lookup, not a matmul, so it is left out; the output head is in."""
    attention = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
    return 6 * (n_params - n_embedding) + attention


def describe(cfg: ModelConfig, seq_len: int) -> dict[str, object]:
    counts = count_parameters(build_meta_model(cfg))
    return {
        "layers": cfg.n_layers,
        "hidden": cfg.d_model,
        "ffn_hidden": cfg.ffn_hidden,
        "heads": cfg.n_heads,
        "kv_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "norm": cfg.norm,
        "init": cfg.init,
        "rope_base": cfg.rope_base,
        "parameters": counts["total"],
        "parameters_non_embedding": counts["non_embedding"],
        "seq_len": seq_len,
        "training_flops_per_token": training_flops_per_token(
            cfg, counts["total"], counts["embedding"], seq_len
        ),
    }
