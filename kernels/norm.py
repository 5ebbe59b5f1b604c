"""RMSNorm: y = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in fp32, returned in x.dtype."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from kernels.dispatch import backend_for


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


class _RMSNormCPU(torch.autograd.Function):
    """torch's fused rms_norm forward with a hand-written backward.

    On CPU torch has a fused forward (aten._fused_rms_norm, which also returns rstd) but
    no fused backward: autograd decomposes it into about ten elementwise passes over the
    activations. This backward takes five, reusing the forward's rstd:
        xhat = x * rstd,  gw = g * weight
        dweight = sum over tokens of g * xhat
        dx = rstd * (gw - xhat * mean(gw * xhat, -1))
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, weight, rstd = ctx.saved_tensors
        compute = torch.promote_types(x.dtype, torch.float32)  # fp32 for bf16/fp16 inputs
        rstd = rstd.to(compute)
        xhat = x.to(compute) * rstd
        grad = grad.to(compute)
        dweight = torch.linalg.vecdot(grad.flatten(0, -2).T, xhat.flatten(0, -2).T)
        gw = grad * weight.to(compute)
        mean_dot = torch.linalg.vecdot(gw, xhat).unsqueeze(-1).div_(x.shape[-1])
        dx = gw.sub_(xhat.mul_(mean_dot)).mul_(rstd)
        return dx.to(x.dtype), dweight.to(weight.dtype), None


def _rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # torch's fused rms_norm accumulates in fp32 for bf16/fp16 inputs; it needs weight in
    # x.dtype to take the fused kernel (a mixed pair falls back to the slow composite).
    weight = weight.to(x.dtype)
    if x.device.type == "cpu" and not isinstance(x, DTensor) and not isinstance(weight, DTensor):
        return _RMSNormCPU.apply(x, weight, eps)
    # CUDA has a fused backward; DTensors (sequence parallel) need torch's sharding rules.
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rms_norm_npu(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch_npu  # lazy: see kernels/dispatch.py

    # npu_rms_norm(self, gamma, epsilon=1e-06) -> (y, rstd); rstd is kept for its backward.
    return torch_npu.npu_rms_norm(x, weight.to(x.dtype), epsilon=eps)[0]


def _impl_for(backend: str) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    return _rms_norm_npu if backend == "npu" else _rms_norm_torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return _impl_for(backend_for(x.device))(x, weight, eps)
