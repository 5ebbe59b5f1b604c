"""RMSNorm: y = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in fp32, returned in x.dtype."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels.dispatch import backend_for


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


def _rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # torch's fused rms_norm accumulates in fp32 for bf16/fp16 inputs; it needs weight in
    # x.dtype to take the fused kernel (a mixed pair falls back to the slow composite).
    return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)


def _rms_norm_npu(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch_npu  # lazy: see kernels/dispatch.py

    # npu_rms_norm(self, gamma, epsilon=1e-06) -> (y, rstd); rstd is kept for its backward.
    return torch_npu.npu_rms_norm(x, weight.to(x.dtype), epsilon=eps)[0]


def _impl_for(backend: str) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    return _rms_norm_npu if backend == "npu" else _rms_norm_torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return _impl_for(backend_for(x.device))(x, weight, eps)
