"""The `parallel` config section, its validation, and the device mesh built from it.

Mesh dimensions, outermost first (torchtitan's order): pp, dp_replicate, dp_shard, tp.
Tensor parallelism is innermost so its ranks are neighbours (one node, the fastest links);
pipeline parallelism is outermost, across nodes, as in the report (TP 8 in a node, PP 8
across nodes, DP over the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from pangu_cli.errors import UserError
from pangu_cli.model import ModelConfig

MESH_DIMS = ("pp", "dp_replicate", "dp_shard", "tp")
SCHEDULES = ("gpipe", "1f1b", "interleaved_1f1b")


@dataclass
class ParallelConfig:
    dp_replicate: int = 1  # replicas (HSDP across them when dp_shard > 1)
    dp_shard: int = -1  # FSDP2 shard group size; -1: whatever the other sizes leave
    tp: int = 1  # tensor parallel, with sequence parallelism on norms and residuals
    pp: int = 1  # pipeline stages (ranks)
    pp_schedule: Literal["gpipe", "1f1b", "interleaved_1f1b"] = "1f1b"
    virtual_stages: int = 1  # model chunks per pipeline rank (interleaved_1f1b needs >= 2)
    microbatches: int = 0  # 0: pp (GPipe/1F1B) or pp * virtual_stages (interleaved)
    cp: int = 1  # context parallel: not supported, see validate()
    # FSDP2 offers ZeRO-3 (reshard_after_forward=True: params re-gathered in backward) and
    # ZeRO-2 (False: gathered params kept from forward to backward; grads and optimiser
    # state stay sharded). It has no ZeRO-1: gradients are always reduce-scattered.
    zero: Literal["2", "3"] = "3"
    activation_checkpoint: Literal["none", "block", "selective"] = "none"
    compile: bool = False  # torch.compile each block

    def resolved(self, world_size: int) -> ParallelConfig:
        """A copy with dp_shard and microbatches filled in."""
        out = ParallelConfig(**self.__dict__)
        for name in ("dp_replicate", "tp", "pp", "virtual_stages", "cp"):
            if getattr(out, name) < 1:
                raise UserError(f"parallel.{name}={getattr(out, name)}: must be >= 1")
        others = out.dp_replicate * out.tp * out.pp * out.cp
        if out.dp_shard == -1:
            if world_size % others:
                raise UserError(
                    f"parallel: world size {world_size} is not divisible by dp_replicate x tp x "
                    f"pp x cp = {others}, so dp_shard=-1 cannot fill the rest"
                )
            out.dp_shard = world_size // others
        if out.dp_shard < 1:
            raise UserError(f"parallel.dp_shard={out.dp_shard}: must be >= 1 or -1")
        if out.microbatches == 0:
            out.microbatches = out.pp * out.virtual_stages if out.pp > 1 else 1
        return out

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard

    @property
    def n_stages(self) -> int:
        return self.pp * self.virtual_stages


def validate(cfg: ParallelConfig, world_size: int, model: ModelConfig) -> ParallelConfig:
    """Resolve and check `cfg` against the world size and the model; UserError if unfit."""
    cfg = cfg.resolved(world_size)
    if cfg.cp > 1:
        # torch's context parallelism (ring attention) dispatches only the CUDA SDPA kernels
        # (flash / efficient / cuDNN) and FlexAttention, without an attention mask; our
        # document-masked attention passes a mask, and FlexAttention has no CPU backward.
        raise UserError(
            f"parallel.cp={cfg.cp}: context parallelism is not supported: torch's ring "
            "attention takes no per-document mask and has no CPU/gloo kernels; use cp=1"
        )
    product = cfg.pp * cfg.dp_replicate * cfg.dp_shard * cfg.tp * cfg.cp
    if product != world_size:
        raise UserError(
            f"parallel: pp x dp_replicate x dp_shard x tp x cp = {cfg.pp} x {cfg.dp_replicate}"
            f" x {cfg.dp_shard} x {cfg.tp} x {cfg.cp} = {product}, but the world size is "
            f"{world_size}"
        )
    for name, value in (("n_heads", model.n_heads), ("n_kv_heads", model.n_kv_heads)):
        if value % cfg.tp:
            raise UserError(f"parallel.tp={cfg.tp}: model {name}={value} is not divisible by it")
    if model.ffn_hidden % cfg.tp or model.vocab_size % cfg.tp:
        raise UserError(
            f"parallel.tp={cfg.tp}: model ffn_hidden={model.ffn_hidden} and vocab_size="
            f"{model.vocab_size} must both be divisible by it"
        )
    if cfg.pp_schedule not in SCHEDULES:
        raise UserError(
            f"parallel.pp_schedule='{cfg.pp_schedule}': expected one of {', '.join(SCHEDULES)}"
        )
    if cfg.pp_schedule == "interleaved_1f1b" and cfg.pp > 1 and cfg.virtual_stages < 2:
        raise UserError("parallel.pp_schedule=interleaved_1f1b needs virtual_stages >= 2")
    if cfg.pp_schedule != "interleaved_1f1b" and cfg.virtual_stages != 1:
        raise UserError(
            f"parallel.virtual_stages={cfg.virtual_stages}: only interleaved_1f1b runs more "
            f"than one stage per rank ({cfg.pp_schedule} runs one)"
        )
    if cfg.pp == 1 and cfg.virtual_stages != 1:
        raise UserError("parallel.virtual_stages > 1 needs pp > 1")
    if model.n_layers < cfg.n_stages:
        raise UserError(
            f"parallel: {model.n_layers} layers cannot fill pp x virtual_stages = "
            f"{cfg.pp} x {cfg.virtual_stages} = {cfg.n_stages} stages (one layer at least each)"
        )
    if cfg.microbatches < 1:
        raise UserError(f"parallel.microbatches={cfg.microbatches}: must be >= 1")
    if cfg.pp > 1 and cfg.microbatches < cfg.pp:
        raise UserError(
            f"parallel.microbatches={cfg.microbatches}: a {cfg.pp}-stage pipeline needs at "
            f"least {cfg.pp} micro-batches to keep every stage busy"
        )
    if cfg.pp_schedule == "interleaved_1f1b" and cfg.pp > 1:
        rounds = max(1, cfg.microbatches // cfg.pp)
        if cfg.microbatches % rounds:
            raise UserError(
                f"parallel.microbatches={cfg.microbatches}: interleaved_1f1b needs a multiple "
                f"of pp={cfg.pp} (or fewer than 2 x pp)"
            )
    if cfg.zero not in ("2", "3"):
        raise UserError(
            f"parallel.zero='{cfg.zero}': FSDP2 offers ZeRO-3 ('3', reshard after forward) "
            "and ZeRO-2 ('2', keep gathered params until backward), not ZeRO-1"
        )
    if cfg.activation_checkpoint not in ("none", "block", "selective"):
        raise UserError(
            f"parallel.activation_checkpoint='{cfg.activation_checkpoint}': expected none, "
            "block or selective"
        )
    return cfg


def check_batch(cfg: ParallelConfig, batch_size: int) -> None:
    """The global batch must split evenly over data-parallel ranks and micro-batches."""
    if batch_size % cfg.dp:
        raise UserError(
            f"data.batch_size={batch_size} is not divisible by the data-parallel degree "
            f"dp_replicate x dp_shard = {cfg.dp}"
        )
    if cfg.pp > 1 and (batch_size // cfg.dp) % cfg.microbatches:
        raise UserError(
            f"data.batch_size={batch_size}: each data-parallel rank's {batch_size // cfg.dp} "
            f"sequences do not split into parallel.microbatches={cfg.microbatches}"
        )


def build_mesh(cfg: ParallelConfig, world_size: int, device_type: str) -> DeviceMesh:
    """One DeviceMesh with every dimension named (size-1 dimensions included), built once.
    `cfg` must be resolved (see validate)."""
    sizes = (cfg.pp, cfg.dp_replicate, cfg.dp_shard, cfg.tp)
    if cfg.pp * cfg.dp * cfg.tp != world_size:
        raise UserError(f"parallel: mesh {dict(zip(MESH_DIMS, sizes, strict=True))} does not "
                        f"cover the world size {world_size}")  # fmt: skip
    return init_device_mesh(device_type, sizes, mesh_dim_names=MESH_DIMS)
