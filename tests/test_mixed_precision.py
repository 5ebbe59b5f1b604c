"""FSDP2 bf16 mixed precision: weights gathered in bf16, fp32 master shards, and losses
that follow a single-process bf16 autocast run of the same model and data."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "distributed" / "run_mixed_precision.py"


def run(tmp_path: Path, nproc: int) -> dict:
    out = tmp_path / f"{nproc}.json"
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT), "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", str(SCRIPT), "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return json.loads(out.read_text())


def test_fsdp_bf16_params_follow_single_process_autocast(tmp_path):
    single, sharded = run(tmp_path, 1), run(tmp_path, 2)
    assert single["compute_dtype"] == "torch.float32"  # one process: autocast, fp32 weights
    assert sharded["compute_dtype"] == "torch.bfloat16"  # gathered in bf16 for the forward
    assert sharded["shard_dtype"] == "torch.float32"  # the optimiser's master weights
    for a, b in zip(sharded["loss"], single["loss"], strict=True):
        assert abs(a - b) / b < 2e-3
    assert sharded["loss"][-1] < sharded["loss"][0]
