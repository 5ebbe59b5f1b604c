"""The Pangu dense decoder (DESIGN.md section 2), free of parallelism code.

Pre-norm attention and SwiGLU blocks with GQA, RoPE and RMSNorm, plus the two
switches the report ablates:
- norm: pre_ln | sandwich | depth_scaled_sandwich. Sandwich adds a norm on each
  sublayer's output; depth-scaled sandwich (DSSN) starts that norm's gamma at
  c / sqrt(L), so every layer's contribution to the residual stream starts small.
- init: baseline | tiny. TinyInit draws every weight matrix from N(0, 1/(2 d L))
  and the embedding from N(0, 0.5^2).
Packed sequences attend only within their own document (document-masked attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor

import kernels


@dataclass
class ModelConfig:
    n_layers: int = 4
    d_model: int = 64
    ffn_hidden: int = 176
    n_heads: int = 4
    n_kv_heads: int = 2
    vocab_size: int = 8192
    head_dim: int = 0  # 0: d_model // n_heads
    rope_base: float = 1e4
    norm: Literal["pre_ln", "sandwich", "depth_scaled_sandwich"] = "depth_scaled_sandwich"
    init: Literal["baseline", "tiny"] = "tiny"
    norm_eps: float = 1e-5
    c_attn: float = 0.283  # DSSN: initial std of the attention sublayer's output
    c_mlp: float = 0.432  # DSSN: initial std of the MLP sublayer's output
    embed_std: float = 0.5

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            self.head_dim = self.d_model // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: object
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        # -1 heads, not n_heads: under tensor parallelism each rank holds a slice of the heads.
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = kernels.apply_rope(q, cos, sin), kernels.apply_rope(k, cos, sin)
        out = kernels.document_attention(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.w_up = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.w_down = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(kernels.swiglu(self.w_gate(x), self.w_up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = FeedForward(cfg)
        sandwich = cfg.norm != "pre_ln"
        self.attn_post_norm = RMSNorm(cfg.d_model, cfg.norm_eps) if sandwich else None
        self.mlp_post_norm = RMSNorm(cfg.d_model, cfg.norm_eps) if sandwich else None

    def forward(
        self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: object
    ) -> torch.Tensor:
        a = self.attn(self.attn_norm(h), rope, mask)
        if self.attn_post_norm is not None:
            a = self.attn_post_norm(a)
        h = h + a
        m = self.mlp(self.mlp_norm(h))
        if self.mlp_post_norm is not None:
            m = self.mlp_post_norm(m)
        return h + m


class PanguModel(nn.Module):
    """tokens [B, T] -> logits [B, T, vocab], or with `targets` the summed loss.

    `layers` is a ModuleDict keyed by layer index, and `tok_embeddings`, `norm` and
    `output` may be set to None, so a pipeline stage can keep only its slice of the
    model and pass hidden states between stages.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings: nn.Embedding | None = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layers)})
        self.norm: RMSNorm | None = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.output: nn.Linear | None = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """TinyInit or the baseline init, and the DSSN gammas (DESIGN.md section 2)."""
        cfg = self.cfg
        d, depth = cfg.d_model, cfg.n_layers
        if cfg.init == "tiny":
            std = math.sqrt(1.0 / (2 * d * depth))
            embed_std, residual_std = cfg.embed_std, std
        else:  # baseline: small init, residual output projections scaled by depth
            std = math.sqrt(2.0 / (5 * d))
            embed_std, residual_std = std, math.sqrt(2.0 / (5 * d * depth))
        if self.tok_embeddings is not None:
            nn.init.normal_(self.tok_embeddings.weight, 0.0, embed_std, generator=generator)
        if self.output is not None:
            nn.init.normal_(self.output.weight, 0.0, std, generator=generator)
        if self.norm is not None:
            nn.init.ones_(self.norm.weight)
        post_gamma = {"pre_ln": 1.0, "sandwich": 1.0}.get(cfg.norm)
        for block in self.layers.values():
            for linear in (block.attn.wq, block.attn.wk, block.attn.wv, block.mlp.w_gate):
                nn.init.normal_(linear.weight, 0.0, std, generator=generator)
            nn.init.normal_(block.mlp.w_up.weight, 0.0, std, generator=generator)
            for linear in (block.attn.wo, block.mlp.w_down):
                nn.init.normal_(linear.weight, 0.0, residual_std, generator=generator)
            nn.init.ones_(block.attn_norm.weight)
            nn.init.ones_(block.mlp_norm.weight)
            if block.attn_post_norm is not None:
                attn_gamma = post_gamma or cfg.c_attn / math.sqrt(depth)
                mlp_gamma = post_gamma or cfg.c_mlp / math.sqrt(depth)
                block.attn_post_norm.weight.fill_(attn_gamma)
                block.mlp_post_norm.weight.fill_(mlp_gamma)

    def forward(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`tokens` [B, T] (or hidden states [B, T, d] on a later pipeline stage);
        `position_ids` [B, T] restart per document; `doc_ids` [B, T] index each
        position's document for the attention mask (None: plain causal).

        Returns logits [B, T, vocab]; given `targets` [B, T] (-100 where nothing is
        predicted), the summed next-token cross-entropy in fp32 instead, computed with the
        head fused into the loss so the full logits never exist."""
        h = self.tok_embeddings(tokens) if self.tok_embeddings is not None else tokens
        batch, seq = h.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(seq, device=h.device).expand(batch, seq)
        # RoPE tables and the document mask are built once and shared by every layer.
        rope = kernels.rope_cos_sin(position_ids, self.cfg.head_dim, self.cfg.rope_base)
        rope = (rope[0].to(h.dtype), rope[1].to(h.dtype))
        mask = kernels.prepare_document_mask(doc_ids, h.device.type)
        for block in self.layers.values():
            h = block(h, rope, mask)
        if self.norm is not None:
            h = self.norm(h)
        if self.output is None:
            return h
        if targets is None:
            return self.output(h)
        if isinstance(self.output.weight, DTensor):
            # A tensor-parallel head: through the module and its hooks, then torch's
            # cross-entropy (vocabulary-parallel when the caller runs it in loss_parallel).
            return cross_entropy_sum(self.output(h), targets)
        return kernels.linear_cross_entropy(h, self.output.weight, targets)


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy in fp32 over targets that are not -100."""
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
    )
