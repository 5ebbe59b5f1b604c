"""Fused ops for pangu, each with a plain-torch reference, dispatched on the device type.

NPU: torch_npu fused kernels (imported lazily, never at import time of this package).
CUDA / CPU: torch built-ins (F.rms_norm, SDPA) or plain expressions that torch.compile fuses.
The fused output projection + cross-entropy is plain torch and runs on every device.
"""

from kernels.attention import (
    DocumentMask,
    document_attention,
    document_attention_reference,
    prepare_document_mask,
)
from kernels.cross_entropy import linear_cross_entropy, linear_cross_entropy_reference
from kernels.dispatch import backend_for
from kernels.glu import swiglu, swiglu_reference
from kernels.norm import rms_norm, rms_norm_reference
from kernels.rope import apply_rope, apply_rope_reference, rope_cos_sin

__all__ = [
    "DocumentMask",
    "apply_rope",
    "apply_rope_reference",
    "backend_for",
    "document_attention",
    "document_attention_reference",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "prepare_document_mask",
    "rms_norm",
    "rms_norm_reference",
    "rope_cos_sin",
    "swiglu",
    "swiglu_reference",
]
