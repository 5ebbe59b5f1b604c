"""Held-out evaluation under any layout.

Every data-parallel rank evaluates the whole (small) held-out batch, so no rows need
padding to split evenly; FSDP gathers the weights as in training. Under TP the logits are
split over the vocabulary and the per-token losses come from torch's loss_parallel,
replicated, so each rank holds the full sums. Under pipelining, a forward-only pass walks
the stages in order with point-to-point sends of the hidden states (the training schedule
caches micro-batch shapes, and held-out batches vary in rows); the last stage's sums are
then shared over the pipeline group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from pangu_cli.packing import Batch
from pangu_cli.parallel.apply import ParallelModel
from pangu_cli.parallel.step import autocast_context, loss_context


def _pipelined_logits(pm: ParallelModel, batch: Batch) -> torch.Tensor | None:
    """Forward-only through the pipeline; the logits on the last stage's ranks, else None."""
    cfg, group = pm.cfg, pm.mesh["pp"].get_group()
    inputs = batch.inputs.to(pm.device)
    kwargs = {"position_ids": batch.position_ids.to(pm.device)}
    if batch.doc_ids is not None:
        kwargs["doc_ids"] = batch.doc_ids.to(pm.device)
    rows, seq = inputs.shape
    # Between stages the residual stream is this rank's sequence slice under TP + SP.
    hidden_shape = (rows, seq // cfg.tp, pm.module.cfg.d_model)
    parts = dict(zip(pm.stage_ids, pm.parts, strict=True))
    h: torch.Tensor | None = None
    for s in range(cfg.n_stages):
        owner = s % cfg.pp
        if s not in parts:
            continue
        if s > 0:
            h = torch.empty(hidden_shape, device=pm.device)
            dist.recv(h, group=group, group_src=(s - 1) % cfg.pp)
        out = parts[s](inputs if s == 0 else h, **kwargs)
        if s == cfg.n_stages - 1:
            return out
        assert owner == pm.local_rank("pp")
        dist.send(out.float().contiguous(), group=group, group_dst=(s + 1) % cfg.pp)
    return None


def evaluate_batches(
    pm: ParallelModel | None,
    batches: Sequence[tuple[str, Batch]],
    token_bytes: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
    model: torch.nn.Module | None = None,
) -> dict[str, list[float]]:
    """Per domain: [nats, target tokens, nats of targets that decode to bytes, bytes]."""
    device = pm.device if pm is not None else next(model.parameters()).device
    if pm is not None:
        for part in pm.parts:
            part.eval()
    token_bytes = token_bytes.to(device)
    sums: dict[str, list[float]] = {}
    for domain, batch in batches:
        with torch.no_grad(), autocast_context(device, autocast_dtype):
            if pm is not None and pm.cfg.pp > 1:
                logits = _pipelined_logits(pm, batch)
            else:
                net = pm.module if pm is not None else model
                logits = net(
                    batch.inputs.to(device),
                    batch.position_ids.to(device),  # explicit: TP ranks see a sequence slice
                    None if batch.doc_ids is None else batch.doc_ids.to(device),
                )
        acc = sums.setdefault(domain, [0.0, 0.0, 0.0, 0.0])
        if logits is None:
            continue
        targets = batch.targets.to(device).flatten()
        with torch.no_grad(), loss_context(pm) if pm is not None else contextlib.nullcontext():
            nats = F.cross_entropy(
                logits.float().flatten(0, 1), targets, ignore_index=-100, reduction="none"
            )
        if isinstance(nats, DTensor):
            nats = nats.full_tensor()
        valid = targets != -100
        nbytes = token_bytes[targets.clamp(min=0)] * valid
        acc[0] += float(nats[valid].sum())
        acc[1] += float(valid.sum())
        acc[2] += float(nats[nbytes > 0].sum())
        acc[3] += float(nbytes.sum())
    if pm is not None and pm.cfg.pp > 1:
        # Only the last stage computed sums; the others add zeros.
        names = list(sums)
        flat = torch.tensor([sums[n][i] for n in names for i in range(4)], dtype=torch.float64)
        dist.all_reduce(flat, group=pm.mesh["pp"].get_group())
        sums = {n: flat[4 * k : 4 * k + 4].tolist() for k, n in enumerate(names)}
    return sums
