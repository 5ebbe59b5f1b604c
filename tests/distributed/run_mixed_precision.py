"""FSDP2 with bf16 mixed precision (parallelize's param_dtype) against one process under
bf16 autocast, same model and data. Rank 0 writes {"loss": [...], "shard_dtype": ...,
"compute_dtype": ...} as JSON to --out; run without torchrun it is the reference.

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

from pangu_cli.model import ModelConfig, PanguModel  # noqa: E402
from pangu_cli.packing import Batch  # noqa: E402
from pangu_cli.parallel import ParallelConfig, build_mesh, parallelize, train_step  # noqa: E402
from stages.pretrain import OptimSection  # noqa: E402
from stages.pretrain_setup import build_optimizer  # noqa: E402

STEPS, VOCAB = 6, 256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = PanguModel(
        ModelConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=VOCAB)
    )
    cfg = ParallelConfig(dp_shard=world)
    mesh = build_mesh(cfg, world, "cpu") if world > 1 else None
    pm = parallelize(model, mesh, cfg, param_dtype=torch.bfloat16 if world > 1 else None)
    seen: list[torch.dtype] = []  # the final norm's weight dtype inside the forward
    pm.module.norm.register_forward_pre_hook(lambda m, a: seen.append(m.weight.dtype))
    optimizer = build_optimizer(pm.module, OptimSection(lr=3e-3))
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        tokens = torch.randint(0, VOCAB, (4, 33), generator=data)
        batch = Batch(tokens[:, :-1], tokens[:, 1:], None, None, {})
        losses.append(train_step(pm, batch, optimizer, 1.0, torch.bfloat16)[0])
    shard_dtype = next(pm.module.parameters()).dtype
    if int(os.environ.get("RANK", "0")) == 0:
        out = {"loss": losses, "shard_dtype": str(shard_dtype), "compute_dtype": str(seen[-1])}
        args.out.write_text(json.dumps(out))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
