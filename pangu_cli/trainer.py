"""A small training loop with callbacks (OLMo-core style): the loop does forward,
backward, clip and step; logging, validation, checkpoints, the spike guard and the
progress bar are callbacks that watch it.

With `parallel` (a ParallelModel from pangu_cli.parallel) the same loop runs under any
layout: every rank draws the same global batch and the parallel step takes its slice."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from pangu_cli.packing import Batch
from pangu_cli.parallel.apply import ParallelModel
from pangu_cli.parallel.evaluate import evaluate_batches
from pangu_cli.parallel.step import clip_grad_norm_, forward_backward


@dataclass
class StepResult:
    step: int  # 1-based: the number of optimiser steps taken so far
    loss: float
    grad_norm: float
    lr: float
    tokens: int  # tokens trained on so far
    step_tokens: int
    step_time_s: float
    domain_tokens: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # the spike guard dropped this batch's update
    batch: Batch | None = None  # for callbacks that report where a step's data came from


class Callback:
    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, result: StepResult) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


# A guard sees (trainer, batch, loss, grad_norm) after backward and before the optimiser
# step, and returns True to apply the update or False to drop it.
Guard = Callable[["Trainer", Batch, float, float], bool]


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: object,
        *,
        lr_at: Callable[[int], float],
        total_steps: int,
        grad_clip: float,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        callbacks: Sequence[Callback] = (),
        step: int = 0,
        tokens: int = 0,
        parallel: ParallelModel | None = None,
        batch_size_at: Callable[[int], int] | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.lr_at, self.total_steps, self.grad_clip = lr_at, total_steps, grad_clip
        self.device, self.autocast_dtype = device, autocast_dtype
        self.callbacks = list(callbacks)
        self.step, self.tokens = step, tokens
        self.parallel = parallel
        self.batch_size_at, self.guard = batch_size_at, guard
        self.last_skipped = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def forward_loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the batch's targets (the model fuses head and loss)."""
        to = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        targets = to(batch.targets)
        with self.autocast():
            total = self.model(
                to(batch.inputs), to(batch.position_ids), to(batch.doc_ids), targets=targets
            )
        return total / (targets != -100).sum().clamp_min(1)

    def _forward_backward(self, batch: Batch) -> tuple[float, float]:
        if self.parallel is not None:
            for part in self.parallel.parts:
                part.train()
            loss = forward_backward(self.parallel, batch, self.autocast_dtype)
            return loss, clip_grad_norm_(self.parallel, self.grad_clip)
        self.model.train()
        loss = self.forward_loss(batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        return loss.item(), float(grad_norm)

    def train_step(self, batch: Batch) -> tuple[float, float]:
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm = self._forward_backward(batch)
        # Every rank holds the same loss and norm, so every rank's guard decides alike.
        self.last_skipped = self.guard is not None and not self.guard(self, batch, loss, grad_norm)
        if not self.last_skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm

    @torch.no_grad()
    def evaluate(
        self, batches: Sequence[tuple[str, Batch]], token_bytes: torch.Tensor
    ) -> dict[str, float]:
        """Held-out loss (nats per token) and bits per byte, overall and per domain.
        Bits per byte counts only targets that decode to bytes (special tokens do not)."""
        if self.parallel is not None:
            sums = evaluate_batches(self.parallel, batches, token_bytes, self.autocast_dtype)
        else:
            self.model.eval()
            sums = evaluate_batches(None, batches, token_bytes, self.autocast_dtype, self.model)
        total = [sum(v[i] for v in sums.values()) for i in range(4)]
        out = {"val_loss": total[0] / max(total[1], 1)}
        out["val_bpb"] = total[2] / math.log(2) / max(total[3], 1)
        for domain, v in sums.items():
            out[f"val_loss/{domain}"] = v[0] / max(v[1], 1)
            out[f"val_bpb/{domain}"] = v[2] / math.log(2) / max(v[3], 1)
        return out

    def next_batch(self) -> Batch:
        if self.batch_size_at is None:
            return self.loader.next_batch()
        return self.loader.next_batch(self.batch_size_at(self.step))

    def fit(self) -> None:
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.step < self.total_steps:
            start = time.perf_counter()
            batch = self.next_batch()
            lr = self.lr_at(self.step)
            loss, grad_norm = self.train_step(batch)
            step_tokens = batch.inputs.numel()
            self.step += 1
            self.tokens += step_tokens
            result = StepResult(
                step=self.step,
                loss=loss,
                grad_norm=grad_norm,
                lr=lr,
                tokens=self.tokens,
                step_tokens=step_tokens,
                step_time_s=time.perf_counter() - start,
                domain_tokens=batch.domain_tokens,
                skipped=self.last_skipped,
                batch=batch,
            )
            for cb in self.callbacks:
                cb.on_step_end(self, result)
        for cb in self.callbacks:
            cb.on_train_end(self)
