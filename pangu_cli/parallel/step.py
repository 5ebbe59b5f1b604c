"""One training step under any layout, with the single-process definitions of the loss
(mean next-token cross-entropy over the global batch) and of the gradient norm (over
every parameter of the whole model)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import loss_parallel

from pangu_cli.packing import Batch
from pangu_cli.parallel.apply import ParallelModel
from pangu_cli.parallel.config import check_batch
from pangu_cli.parallel.pipeline import build_schedule


def local_batch(pm: ParallelModel, batch: Batch) -> dict[str, torch.Tensor | None]:
    """This data-parallel rank's rows of the global batch, on the model's device."""
    check_batch(pm.cfg, batch.inputs.shape[0])
    rows = batch.inputs.shape[0] // pm.cfg.dp
    sl = slice(pm.dp_rank * rows, (pm.dp_rank + 1) * rows)
    position_ids = batch.position_ids
    if position_ids is None:  # under TP a stage sees only T/tp of the sequence: be explicit
        position_ids = torch.arange(batch.inputs.shape[1]).expand_as(batch.inputs)
    to = lambda t: None if t is None else t[sl].to(pm.device, non_blocking=True)  # noqa: E731
    return {
        "inputs": to(batch.inputs),
        "targets": to(batch.targets),
        "position_ids": to(position_ids),
        "doc_ids": to(batch.doc_ids),
    }


def autocast_context(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def loss_context(pm: ParallelModel) -> contextlib.AbstractContextManager:
    """torch's loss_parallel where the head's logits are vocabulary-sharded DTensors
    (tensor parallel without pipelining, see apply_tp); forward and backward run in it."""
    return loss_parallel() if pm.cfg.tp > 1 and pm.cfg.pp == 1 else contextlib.nullcontext()


def _ensure_schedule(pm: ParallelModel, rows: int) -> None:
    """A pipeline schedule caches the micro-batch shapes of its first step; when the batch
    size changes (the batch-size ramp), build the stages and schedule afresh."""
    if pm.schedule_rows is not None and pm.schedule_rows != rows:
        pm.stages, pm.schedule = build_schedule(
            pm.parts, pm.stage_ids, pm.mesh["pp"], pm.cfg, pm.device
        )
    pm.schedule_rows = rows


def forward_backward(
    pm: ParallelModel, batch: Batch, autocast_dtype: torch.dtype | None = None
) -> float:
    """Forward and backward of the global batch; returns the global mean loss."""
    local = local_batch(pm, batch)
    n_tokens = float((batch.targets != -100).sum())  # global count, as the mean's divisor
    kwargs = {"position_ids": local["position_ids"]}
    if local["doc_ids"] is not None:
        kwargs["doc_ids"] = local["doc_ids"]
    with autocast_context(pm.device, autocast_dtype):
        if pm.schedule is None:
            with loss_context(pm):
                loss = pm.module(local["inputs"], targets=local["targets"], **kwargs) / n_tokens
                loss.backward()
            mine = loss.detach()
            if isinstance(mine, DTensor):  # replicated over the TP ranks
                mine = mine.full_tensor()
        else:
            _ensure_schedule(pm, local["inputs"].shape[0])
            losses: list[torch.Tensor] = []
            args = (local["inputs"],) if pm.has_first_stage else ()
            pm.schedule.step(
                *args,
                target=local["targets"] if pm.has_last_stage else None,
                losses=losses,
                return_outputs=False,
                loss_kwargs={"n_tokens": n_tokens},
                **kwargs,
            )
            mine = torch.stack(losses).sum() if losses else torch.zeros((), device=pm.device)
    if pm.mesh is None:
        return float(mine)
    # Every TP rank holds the same partial sum: count it once; other pipeline ranks add 0.
    owner = pm.has_last_stage and pm.local_rank("tp") == 0
    total = mine.detach().float().reshape(()) if owner else torch.zeros((), device=pm.device)
    dist.all_reduce(total)
    return float(total)


def _grads(params: Iterable[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def grad_norm(pm: ParallelModel) -> torch.Tensor:
    """L2 norm of the gradient of the whole model (all stages, all shards)."""
    groups: dict[object, list[torch.Tensor]] = {}
    for g in _grads(pm.module.parameters()):
        groups.setdefault(g.device_mesh if isinstance(g, DTensor) else None, []).append(g)
    square = torch.zeros((), device=pm.device)
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        if isinstance(norm, DTensor):  # partial over shards: reduce over the mesh
            norm = norm.full_tensor()
        square = square + norm.float() ** 2
    if pm.cfg.pp > 1:  # each pipeline rank holds only its stages' gradients
        dist.all_reduce(square, group=pm.mesh["pp"].get_group())
    return square.sqrt()


def clip_grad_norm_(pm: ParallelModel, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_'s rule, with the norm of the whole model."""
    total = grad_norm(pm)
    coef = float(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    if coef < 1.0:
        for g in _grads(pm.module.parameters()):
            g.mul_(coef)
    return float(total)


def train_step(
    pm: ParallelModel,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, float]:
    """Forward, backward, clip and optimiser step on the global batch `batch` (every rank
    passes the same one); returns (loss, grad_norm) as Trainer.train_step does."""
    for part in pm.parts:
        part.train()
    loss = forward_backward(pm, batch, autocast_dtype)
    norm = clip_grad_norm_(pm, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, norm
