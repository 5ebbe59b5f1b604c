"""Device choice (npu, cuda, cpu), precision, and the peak FLOP/s that MFU is measured against."""

from __future__ import annotations

import importlib.util
import time

import torch

from pangu_cli.errors import UserError

# Dense bf16 peak FLOP/s of known accelerators (vendor datasheets, no sparsity).
KNOWN_PEAKS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "H20": 148e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "RTX 4090": 165e12,
    "Ascend910B1": 414e12,
    "Ascend910B2": 376e12,
    "Ascend910B3": 313e12,
    "Ascend910B4": 280e12,
}


def npu_available() -> bool:
    # torch_npu is optional and only imported when it is installed and asked about.
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        import torch_npu  # noqa: F401
    except Exception:
        return False
    return hasattr(torch, "npu") and torch.npu.is_available()


def pick_device(requested: str = "auto") -> torch.device:
    """`auto`: npu if torch_npu imports and an NPU is present, else cuda, else cpu."""
    if requested == "auto":
        if npu_available():
            return torch.device("npu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "npu" and not npu_available():
        raise UserError("device npu requested, but torch_npu is not installed or sees no NPU")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda requested, but no CUDA device is available")
    if requested not in ("cpu", "cuda", "npu"):
        raise UserError(f"device '{requested}': expected auto, cpu, cuda or npu")
    return torch.device(requested)


def distributed_backend(device: torch.device) -> str:
    return {"npu": "hccl", "cuda": "nccl"}.get(device.type, "gloo")


def autocast_dtype(device: torch.device, requested: str = "auto") -> torch.dtype | None:
    """bf16 autocast on GPU/NPU; fp32 on CPU, where bf16 matmuls are ~5x slower."""
    if requested == "fp32" or (requested == "auto" and device.type == "cpu"):
        return None
    if requested in ("auto", "bf16"):
        return torch.bfloat16
    raise UserError(f"dtype '{requested}': expected auto, fp32 or bf16")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "npu":
        return torch.npu.get_device_name(device)
    return f"cpu x{torch.get_num_threads()} threads"


def peak_flops(device: torch.device) -> tuple[float, str]:
    """(peak FLOP/s, where it came from): the known-device table, else a measured matmul."""
    name = device_name(device)
    for key, peak in KNOWN_PEAKS.items():
        if key.lower().replace(" ", "") in name.lower().replace(" ", ""):
            return peak, f"table:{key}"
    return measured_matmul_peak(device), "measured"


def measured_matmul_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a large matmul in the training dtype (fp32 on CPU, bf16 elsewhere),
    measured at start-up: under a second, and it sees the machine as the run will."""
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        (a @ b).sum().item()  # .item() waits for the device
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_cpu_allocator() -> bool:
    """Keep freed activation memory in the process between training steps (glibc only).

    By default glibc returns freed memory at the top of the heap to the OS and serves
    large blocks with fresh mmaps, so every step's activations are page-faulted and
    zeroed by the kernel again: 10-20% of a CPU step at our shapes. Raising the trim and
    mmap thresholds lets the heap keep those pages (tcmalloc or jemalloc via LD_PRELOAD do
    the same). Returns whether it applied; on other C libraries (macOS) it does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # glibc caps the mmap threshold at 32 MiB on 64-bit; larger blocks still get an mmap.
    settings = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)
