"""parallelize(): apply TP + SP, activation checkpointing, torch.compile and FSDP2 (and
pipeline stages) to a built PanguModel, from outside the model code (torchtitan's
parallelize.py pattern). The order matters: TP first (it turns weights into DTensors on
the tp mesh), then activation checkpointing and compile around each block, then FSDP2,
which shards those DTensors again over the data-parallel dims (2-D: dp_shard x tp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from pangu_cli.model import PanguModel
from pangu_cli.parallel.config import ParallelConfig, validate
from pangu_cli.parallel.pipeline import StageHolder, build_schedule, split_model


@dataclass
class ParallelModel:
    """A model with a parallel layout applied.

    `module` has PanguModel's parameter names whatever the layout: build the optimiser
    from it and pass it to save_checkpoint / load_checkpoint. `parts` are this rank's
    stage modules (just [module] without pipelining); `schedule` is None without it."""

    module: nn.Module
    parts: list[nn.Module]
    mesh: DeviceMesh | None
    cfg: ParallelConfig
    device: torch.device
    stage_ids: list[int] = field(default_factory=lambda: [0])
    stages: list = field(default_factory=list)
    schedule: object | None = None
    schedule_rows: int | None = None  # local rows the schedule's shapes were built for

    @property
    def has_first_stage(self) -> bool:
        return 0 in self.stage_ids

    @property
    def has_last_stage(self) -> bool:
        return self.cfg.n_stages - 1 in self.stage_ids

    def local_rank(self, dim: str) -> int:
        return self.mesh.get_local_rank(dim) if self.mesh is not None else 0

    @property
    def dp_rank(self) -> int:
        return self.local_rank("dp_replicate") * self.cfg.dp_shard + self.local_rank("dp_shard")


def apply_tp(model: PanguModel, tp_mesh: DeviceMesh, loss_parallel: bool = True) -> None:
    """Megatron-style TP with sequence parallelism. Between the parallel regions the
    residual stream is a plain tensor holding this rank's slice of the sequence
    [B, T/tp, d]; every norm (pre-norms, DSSN post-norms, final norm) runs on that slice
    with a replicated gamma, so norm activations are not duplicated across TP ranks.

    `loss_parallel`: the head's logits stay split over the vocabulary (a DTensor) and the
    cross-entropy runs on the shards (torch's loss_parallel: the callers in step.py and
    evaluate.py enter it), so no rank holds the full [tokens, vocab] logits. Pipeline
    stages exchange plain tensors, so under pp > 1 the last stage gathers the logits."""
    top = {}
    if model.tok_embeddings is not None:
        top["tok_embeddings"] = RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1))
    if model.norm is not None:
        top["norm"] = SequenceParallel()
    if model.output is not None:
        top["output"] = ColwiseParallel(
            input_layouts=Shard(1),
            output_layouts=Shard(-1) if loss_parallel else Replicate(),
            use_local_output=not loss_parallel,
        )
    if top:
        parallelize_module(model, tp_mesh, top)
    for block in model.layers.values():
        plan = {
            "attn_norm": SequenceParallel(),
            # Attention.forward(x, rope, mask): gather x's sequence; rope and mask are plain.
            "attn": PrepareModuleInput(
                input_layouts=(Shard(1), None, None),
                desired_input_layouts=(Replicate(), None, None),
            ),
            "attn.wq": ColwiseParallel(),
            "attn.wk": ColwiseParallel(),
            "attn.wv": ColwiseParallel(),
            "attn.wo": RowwiseParallel(output_layouts=Shard(1)),
            "mlp_norm": SequenceParallel(),
            "mlp": PrepareModuleInput(
                input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)
            ),
            "mlp.w_gate": ColwiseParallel(),
            "mlp.w_up": ColwiseParallel(),
            "mlp.w_down": RowwiseParallel(output_layouts=Shard(1)),
        }
        if block.attn_post_norm is not None:
            # DSSN post-norms sit on the row-parallel outputs (already sequence-sharded);
            # a local output keeps `h + a` a plain-tensor add.
            plan["attn_post_norm"] = SequenceParallel(use_local_output=True)
            plan["mlp_post_norm"] = SequenceParallel(use_local_output=True)
        parallelize_module(block, tp_mesh, plan)


# Selective checkpointing keeps the outputs of the expensive ops (matmuls, attention) and
# recomputes the cheap memory-bound ones (norms, RoPE, SwiGLU) in backward.
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
}


def _selective_policy(ctx: object, op: object, *args: object, **kwargs: object) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_ac(model: PanguModel, mode: str) -> None:
    for key, block in list(model.layers.items()):
        if mode == "block":
            model.layers[key] = checkpoint_wrapper(block, preserve_rng_state=False)
        elif mode == "selective":
            context_fn = partial(create_selective_checkpoint_contexts, _selective_policy)
            model.layers[key] = checkpoint_wrapper(
                block, preserve_rng_state=False, context_fn=context_fn
            )


def apply_fsdp(
    model: nn.Module,
    dp_mesh: DeviceMesh,
    reshard_after_forward: bool,
    param_dtype: torch.dtype | None = None,
) -> None:
    """fully_shard each block, then the root (embedding, final norm, head). A 2-D dp_mesh
    (dp_replicate, dp_shard) gives HSDP: sharded within a group, replicated across.

    With `param_dtype` (bf16 training) the weights are all-gathered in that dtype, half
    the traffic of fp32, and gradients are reduced in fp32; the sharded master weights and
    the optimiser state stay fp32."""
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.layers.values():
        fully_shard(block, mesh=dp_mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    fully_shard(model, mesh=dp_mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    # Sum, not average, the gradients over data-parallel ranks: train_step's loss is
    # already divided by the global target count, as the single-process mean is.
    # A plain SUM (no PREMUL_SUM(1.0), which gloo lacks) with nothing divided after.
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)


def parallelize(
    model: PanguModel,
    mesh: DeviceMesh | None,
    cfg: ParallelConfig,
    device: torch.device | None = None,
    param_dtype: torch.dtype | None = None,
) -> ParallelModel:
    """Apply the layout `cfg` to `model`; mesh None: one process, no parallelism.
    `param_dtype`: the compute dtype FSDP gathers weights in (None: as stored, fp32).

    `model` is either built on this rank's device, identical on every rank (each rank then
    keeps its shards of the same weights), or on the meta device with `device` given: then
    each rank allocates only its own shards after sharding and runs init_weights on them
    (how a model too big for one device is built; the draws differ from a dense init)."""
    world = mesh.size() if mesh is not None else 1
    cfg = validate(cfg, world, model.cfg)
    on_meta = next(model.parameters()).device.type == "meta"
    device = device if device is not None else next(model.parameters()).device
    if device.type == "meta":
        raise ValueError("parallelize: a meta-device model needs the `device` to materialise on")
    if cfg.pp > 1:
        parts, stage_ids = split_model(model, mesh.get_local_rank("pp"), cfg)
    else:
        parts, stage_ids = [model], [0]
    for part in parts:
        if cfg.tp > 1:
            apply_tp(part, mesh["tp"], loss_parallel=cfg.pp == 1)
        if cfg.activation_checkpoint != "none":
            apply_ac(part, cfg.activation_checkpoint)
        if cfg.compile:
            for block in part.layers.values():
                block.compile()  # in place: parameter names do not change
        if cfg.dp > 1:
            dp_mesh = mesh["dp_replicate", "dp_shard"] if cfg.dp_replicate > 1 else mesh["dp_shard"]
            apply_fsdp(part, dp_mesh, cfg.zero == "3", param_dtype)
        if on_meta:
            part.to_empty(device=device)
            part.init_weights()  # on DTensor shards: each rank draws its own slice
    pm = ParallelModel(
        module=parts[0] if len(parts) == 1 and cfg.pp == 1 else StageHolder(parts),
        parts=parts,
        mesh=mesh,
        cfg=cfg,
        device=device,
        stage_ids=stage_ids,
    )
    if cfg.pp > 1:
        pm.stages, pm.schedule = build_schedule(parts, stage_ids, mesh["pp"], cfg, device)
    return pm
