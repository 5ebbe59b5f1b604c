"""Pipeline parallelism: split the layer stack into stages and build the schedule.

Each stage is a pruned copy of PanguModel: its own slice of `layers` (keys stay the global
layer indices, so parameter names match the unsplit model and checkpoints reshard), the
embedding on the first stage, the final norm and head on the last. Position ids and
document ids reach every stage as keyword arguments: torch.distributed.pipelining chunks
kwargs per micro-batch and hands them to every stage (only positional args travel from
stage to stage), so each stage rebuilds its RoPE tables and document mask locally.
"""

from __future__ import annotations

import copy
import heapq

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import (
    PipelineScheduleMulti,
    PipelineScheduleSingle,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
)

from pangu_cli.model import PanguModel, cross_entropy_sum
from pangu_cli.parallel.config import ParallelConfig

# Cost of the embedding and of the final norm + output head, in transformer layers. The
# embedding is a lookup (cheap in FLOPs, but its [vocab, d] table and gradient cost memory);
# the head is a [d, vocab] matmul plus the cross-entropy, about a layer's worth at the
# report's shape (vocab 153K x d 12288 ~ 1.9B weights vs ~1.4B per layer). Counting each as
# one layer, as torchtitan and Megatron's account-for-embedding/loss options do, gives the
# report's 94 layers on 8 x 6 = 48 stages exactly two units per stage.
EMBED_COST = 1.0
HEAD_COST = 1.0


def split_layers(
    n_layers: int, n_stages: int, embed_cost: float = EMBED_COST, head_cost: float = HEAD_COST
) -> list[list[int]]:
    """Contiguous layer indices per stage, at least one each, minimising the largest stage
    cost (layers + embed_cost on the first stage + head_cost on the last)."""
    if not 1 <= n_stages <= n_layers:
        raise ValueError(f"cannot split {n_layers} layers into {n_stages} stages")
    counts = [1] * n_stages
    extra = [0.0] * n_stages
    extra[0] += embed_cost
    extra[-1] += head_cost
    # Water-filling: each further layer goes to the currently cheapest stage (ties: earliest).
    heap = [(counts[s] + extra[s], s) for s in range(n_stages)]
    heapq.heapify(heap)
    for _ in range(n_layers - n_stages):
        cost, s = heapq.heappop(heap)
        counts[s] += 1
        heapq.heappush(heap, (cost + 1, s))
    out, start = [], 0
    for c in counts:
        out.append(list(range(start, start + c)))
        start += c
    return out


def stage_ids_for_rank(pp_rank: int, cfg: ParallelConfig) -> list[int]:
    """Looped assignment: rank r holds stages r, r + pp, r + 2 pp, ... (what the interleaved
    schedule expects)."""
    return [pp_rank + v * cfg.pp for v in range(cfg.virtual_stages)]


def stage_module(model: PanguModel, layer_ids: list[int], first: bool, last: bool) -> PanguModel:
    """A copy of `model` keeping only `layer_ids` (and the embedding / head if first / last)."""
    part = copy.deepcopy(model)
    keep = {str(i) for i in layer_ids}
    for key in list(part.layers.keys()):
        if key not in keep:
            del part.layers[key]
    if not first:
        part.tok_embeddings = None
    if not last:
        part.norm = None
        part.output = None
    return part


def split_model(model: PanguModel, pp_rank: int, cfg: ParallelConfig) -> tuple[list, list[int]]:
    """This rank's stage modules and their stage indices."""
    layers = split_layers(model.cfg.n_layers, cfg.n_stages)
    ids = stage_ids_for_rank(pp_rank, cfg)
    parts = [stage_module(model, layers[s], s == 0, s == cfg.n_stages - 1) for s in ids]
    return parts, ids


class StageHolder(nn.Module):
    """Registers the modules of all of a rank's stages under PanguModel's names, so the
    optimiser and checkpoint code (get_state_dict, DCP) see one model whose parameter
    names match the unsplit model. Never called: the stages run the forward."""

    def __init__(self, parts: list[PanguModel]) -> None:
        super().__init__()
        self.tok_embeddings = next(
            (p.tok_embeddings for p in parts if p.tok_embeddings is not None), None
        )
        self.layers = nn.ModuleDict({k: b for p in parts for k, b in p.layers.items()})
        self.norm = next((p.norm for p in parts if p.norm is not None), None)
        self.output = next((p.output for p in parts if p.output is not None), None)
        self.cfg = parts[0].cfg

    def forward(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a pipelined model runs through its schedule: use parallel.train_step")


def pipeline_loss(logits: torch.Tensor, targets: torch.Tensor, n_tokens: float) -> torch.Tensor:
    """Summed cross-entropy of one micro-batch over the global count of targets, so the
    micro-batch losses add up to the single-process mean over the global batch."""
    return cross_entropy_sum(logits, targets) / n_tokens


def build_schedule(
    parts: list[nn.Module],
    stage_ids: list[int],
    pp_mesh: DeviceMesh,
    cfg: ParallelConfig,
    device: torch.device,
) -> tuple[list[PipelineStage], PipelineScheduleSingle | PipelineScheduleMulti]:
    group = pp_mesh.get_group()
    stages = [
        PipelineStage(part, s, cfg.n_stages, device, group=group)
        for part, s in zip(parts, stage_ids, strict=True)
    ]
    # scale_grads=False: pipeline_loss already divides by the global target count.
    if cfg.pp_schedule == "interleaved_1f1b":
        schedule = ScheduleInterleaved1F1B(
            stages, cfg.microbatches, loss_fn=pipeline_loss, scale_grads=False
        )
    else:
        cls = ScheduleGPipe if cfg.pp_schedule == "gpipe" else Schedule1F1B
        schedule = cls(stages[0], cfg.microbatches, loss_fn=pipeline_loss, scale_grads=False)
    return stages, schedule
