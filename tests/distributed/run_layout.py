"""Train the test model under one or more parallel layouts in one torchrun launch (process
start-up costs more than the tiny runs); rank 0 writes {name: {loss, grad_norm}} as JSON.

    torchrun --standalone --nproc-per-node 4 tests/distributed/run_layout.py --out r.json \
        --plan '[{"name": "dp2tp2", "dp_shard": 2, "tp": 2, "save_at": 10, "ckpt": "ck"}]'

Plan entries: ParallelConfig fields, plus steps (20), save_at / ckpt (a DCP checkpoint of
run dir `ckpt` after that step) and load (a checkpoint to start from).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from pangu_cli.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pangu_cli.parallel import (  # noqa: E402
    ParallelConfig,
    build_mesh,
    parallelize,
    train_step,
    validate,
)
from tests.distributed.common import GRAD_CLIP, make_loader, make_model, make_optimizer  # noqa: E402

RUN_KEYS = ("name", "steps", "save_at", "ckpt", "load")


def run(entry: dict, world: int) -> dict[str, list]:
    cfg = ParallelConfig(**{k: v for k, v in entry.items() if k not in RUN_KEYS})
    model = make_model()
    cfg = validate(cfg, world, model.cfg)
    pm = parallelize(model, build_mesh(cfg, world, "cpu"), cfg)
    optimizer = make_optimizer(pm.module)
    loader = make_loader()
    if entry.get("load"):
        loader.load_state_dict(load_checkpoint(entry["load"], pm.module, optimizer)["loader"])
    out: dict[str, list] = {"loss": [], "grad_norm": [], "head_output": []}
    head = getattr(pm.module, "output", None) if cfg.pp == 1 else None
    if head is not None:  # how the logits leave the head: vocabulary-sharded under TP
        head.register_forward_hook(
            lambda m, a, o: out["head_output"].append(
                str(o.placements) if isinstance(o, DTensor) else "plain"
            )
        )
    for step in range(1, entry.get("steps", 20) + 1):
        loss, norm = train_step(pm, loader.next_batch(), optimizer, GRAD_CLIP)
        out["loss"].append(loss)
        out["grad_norm"].append(norm)
        if step == entry.get("save_at"):
            state = {"loader": loader.state_dict(), "step": step, "tokens": 0}
            save_checkpoint(entry["ckpt"], step, pm.module, optimizer, state, {"test": True})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", required=True, help="JSON list of layouts to run in turn")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)  # several ranks share 2 cores
    dist.init_process_group("gloo")
    results = {}
    for entry in json.loads(args.plan):
        results[entry["name"]] = run(entry, dist.get_world_size())
        gc.collect()
    if dist.get_rank() == 0:
        args.out.write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
