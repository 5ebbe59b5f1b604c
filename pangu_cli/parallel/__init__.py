"""Parallelism for pangu on torch.distributed: DeviceMesh, FSDP2, DTensor TP + SP,
pipelining and (through pangu_cli.checkpoint) DCP. The model code holds none of it.

    cfg = validate(ParallelConfig(dp_shard=2, tp=2), world_size, model.cfg)
    mesh = build_mesh(cfg, world_size, device.type)
    pm = parallelize(model, mesh, cfg)
    optimizer = build_optimizer(pm.module, ...)
    loss, grad_norm = train_step(pm, loader.next_batch(), optimizer, grad_clip=1.0)
"""

from pangu_cli.parallel.apply import ParallelModel, apply_ac, apply_fsdp, apply_tp, parallelize
from pangu_cli.parallel.config import (
    MESH_DIMS,
    ParallelConfig,
    build_mesh,
    check_batch,
    validate,
)
from pangu_cli.parallel.pipeline import split_layers, stage_ids_for_rank
from pangu_cli.parallel.step import clip_grad_norm_, forward_backward, grad_norm, train_step

__all__ = [
    "MESH_DIMS",
    "ParallelConfig",
    "ParallelModel",
    "apply_ac",
    "apply_fsdp",
    "apply_tp",
    "build_mesh",
    "check_batch",
    "clip_grad_norm_",
    "forward_backward",
    "grad_norm",
    "parallelize",
    "split_layers",
    "stage_ids_for_rank",
    "train_step",
    "validate",
]
