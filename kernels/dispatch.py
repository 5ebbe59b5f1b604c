"""Pick the kernel family for a tensor's device.

Every fused op in this package has three implementations: torch_npu fused ops on Ascend,
and plain torch / SDPA on CUDA and CPU. The choice is made per call from the input's device
type, so one model file runs everywhere. torch_npu is never imported here: on a machine
without Ascend CANN, importing it breaks `import torch` (DESIGN.md section 5), so each NPU
implementation imports it inside its own body.
"""

import torch

BACKENDS = ("npu", "cuda", "cpu")


def backend_for(device: torch.device | str) -> str:
    """ "npu" | "cuda" | "cpu" from a device or device string ("npu:3", "cuda", ...).

    Any other device type (meta, mps, ...) gets the plain-torch "cpu" family, which runs on
    any device. Strings are parsed by hand: torch.device("npu") fails unless torch_npu is
    loaded, and this function must not need it.
    """
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    return kind if kind in ("npu", "cuda") else "cpu"
