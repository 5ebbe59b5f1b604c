"""SwiGLU gate of the FFN: silu(gate) * up."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels.dispatch import backend_for


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def _swiglu_npu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    import torch_npu  # lazy: see kernels/dispatch.py

    # npu_swiglu(input, dim=-1) splits input in halves A|B along dim and returns silu(A) * B,
    # so it wants gate and up side by side in one contiguous tensor.
    return torch_npu.npu_swiglu(torch.cat((gate, up), dim=-1), dim=-1)


def _impl_for(backend: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    # CUDA and CPU: two eager elementwise ops; torch.compile of the whole model fuses them.
    return _swiglu_npu if backend == "npu" else swiglu_reference


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return _impl_for(backend_for(gate.device))(gate, up)
