"""FSDP2 with bf16 mixed precision (parallelize's param_dtype) against one process under
bf16 autocast, with the parallel tests' model and data (tests/distributed/common.py).
Rank 0 writes {"loss": [...], "shard_dtype": ..., "compute_dtype": ...} as JSON to
--out; run without torchrun it is the reference.

    torchrun --standalone --nproc-per-node 2 tests/distributed/run_mixed_precision.py --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from pangu_cli.parallel import ParallelConfig, build_mesh, parallelize, train_step  # noqa: E402
from tests.distributed.common import GRAD_CLIP, make_loader, make_model, make_optimizer  # noqa: E402

STEPS = 6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    cfg = ParallelConfig(dp_shard=world)
    mesh = build_mesh(cfg, world, "cpu") if world > 1 else None
    pm = parallelize(make_model(), mesh, cfg, param_dtype=torch.bfloat16 if world > 1 else None)
    seen: list[torch.dtype] = []  # the final norm's weight dtype inside the forward
    pm.module.norm.register_forward_pre_hook(lambda m, a: seen.append(m.weight.dtype))
    optimizer, loader = make_optimizer(pm.module), make_loader()
    losses = [
        train_step(pm, loader.next_batch(), optimizer, GRAD_CLIP, torch.bfloat16)[0]
        for _ in range(STEPS)
    ]
    shard_dtype = next(pm.module.parameters()).dtype
    if int(os.environ.get("RANK", "0")) == 0:
        out = {"loss": losses, "shard_dtype": str(shard_dtype), "compute_dtype": str(seen[-1])}
        args.out.write_text(json.dumps(out))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
