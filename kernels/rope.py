"""Rotary position embedding, rotate-half (Llama / Hugging Face) layout."""

from collections.abc import Callable

import torch

from kernels.dispatch import backend_for


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [B, T, head_dim] for position ids [B, T].

    Angles are computed in fp32 whatever `dtype` is: fp32 holds integer positions exactly up
    to 2^24, far beyond any context length here, and bf16 angles would be badly wrong.
    """
    device = position_ids.device
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    inv_freq = 1.0 / (base**exponent)
    freqs = position_ids.float()[..., None] * inv_freq  # [B, T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, T, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos, sin [B, T, D], broadcast over heads."""
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def _apply_rope_npu(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    import torch_npu  # lazy: see kernels/dispatch.py

    # npu_rotary_mul(input, r1, r2, rotary_mode="half") computes r1 * x + r2 * rotate_half(x);
    # x in BNSD layout takes r1/r2 as B1SD.
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    return torch_npu.npu_rotary_mul(x, cos, sin)


def _impl_for(backend: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    # CUDA and CPU: a few eager elementwise ops; the trainer torch.compile's the whole model,
    # which fuses them, so a hand-written kernel would buy nothing.
    return _apply_rope_npu if backend == "npu" else apply_rope_reference


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _impl_for(backend_for(x.device))(x, cos, sin)
