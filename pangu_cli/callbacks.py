"""Trainer callbacks: metrics (metrics.jsonl + TensorBoard), validation, checkpoints,
and a rich progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pangu_cli.checkpoint import rank, save_checkpoint
from pangu_cli.packing import Batch
from pangu_cli.trainer import Callback, StepResult, Trainer


class MetricsLogger(Callback):
    """One JSON object per logged step in RUN/metrics.jsonl, the same scalars to TensorBoard.
    Throughput and MFU are averaged over the steps since the last log line."""

    def __init__(
        self,
        run_dir: Path,
        *,
        log_every: int,
        flops_per_token: float,
        peak_flops: float,
        world_size: int = 1,
    ) -> None:
        self.run_dir, self.log_every, self.world_size = run_dir, log_every, world_size
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.window_tokens, self.window_time = 0, 0.0
        self.last: dict[str, Any] = {}
        self.file = None
        self.tb = None

    def on_train_start(self, trainer: Trainer) -> None:
        if rank() != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.file = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115
        # purge_step drops TensorBoard events after the resumed step, like metrics.jsonl.
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=trainer.step + 1)

    def log(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()  # a killed run keeps every line it wrote
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.tb.add_scalar(key, value, record["step"])

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        self.window_tokens += result.step_tokens
        self.window_time += result.step_time_s
        if result.step % self.log_every and result.step != trainer.total_steps:
            return
        tokens_per_s = self.window_tokens / max(self.window_time, 1e-9)
        per_device = tokens_per_s / self.world_size  # MFU is per device against its peak
        self.last = {
            "step": result.step,
            "tokens": result.tokens,
            "loss": result.loss,
            "lr": result.lr,
            "grad_norm": result.grad_norm,
            "tokens_per_s": round(tokens_per_s, 2),
            "tokens_per_s_per_device": round(per_device, 2),
            "mfu": round(per_device * self.flops_per_token / self.peak_flops, 5),
        }
        if result.skipped:
            self.last["skipped"] = True
        self.log(self.last)
        self.window_tokens, self.window_time = 0, 0.0

    def on_train_end(self, trainer: Trainer) -> None:
        if self.file is not None:
            self.file.close()
            self.tb.close()


class Validator(Callback):
    """Held-out loss and bits per byte at step 0, every `every` steps and at the end."""

    def __init__(
        self,
        batches: list[tuple[str, Batch]],
        token_bytes: torch.Tensor,
        every: int,
        metrics: MetricsLogger,
    ) -> None:
        self.batches, self.token_bytes, self.every, self.metrics = (
            batches,
            token_bytes,
            every,
            metrics,
        )
        self.history: list[dict[str, Any]] = []

    def run(self, trainer: Trainer) -> None:
        record = {"step": trainer.step, "tokens": trainer.tokens}
        record.update(trainer.evaluate(self.batches, self.token_bytes.to(trainer.device)))
        self.history.append(record)
        self.metrics.log(record)

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.step == 0 and self.batches:
            self.run(trainer)

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        if self.batches and (result.step % self.every == 0 or result.step == trainer.total_steps):
            self.run(trainer)


class Checkpointer(Callback):
    """Saves every `every` steps and at the end, after that step's metrics are written.
    `extra_state` goes into trainer_state.json (callables are called at save time)."""

    def __init__(
        self,
        run_dir: Path,
        every: int,
        keep_last: int,
        meta: dict[str, Any],
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir, self.every, self.keep_last, self.meta = run_dir, every, keep_last, meta
        self.extra_state = extra_state or {}
        self.last_saved = -1

    def save(self, trainer: Trainer) -> None:
        state = {
            "step": trainer.step,
            "tokens": trainer.tokens,
            "loader": trainer.loader.state_dict(),
        }
        for key, value in self.extra_state.items():
            state[key] = value() if callable(value) else value
        meta = {**self.meta, "step": trainer.step, "tokens": trainer.tokens}
        save_checkpoint(
            self.run_dir,
            trainer.step,
            trainer.model,
            trainer.optimizer,
            state,
            meta,
            self.keep_last,
        )
        self.last_saved = trainer.step

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        if self.last_saved == trainer.step:  # already saved this step (after a rollback)
            return
        if result.step % self.every == 0 or result.step == trainer.total_steps:
            self.save(trainer)


class ProgressBar(Callback):
    """A live bar with loss, tokens/s, MFU and ETA; plain lines when not on a terminal."""

    def __init__(self, metrics: MetricsLogger, validator: Validator | None, console: Console):
        self.metrics, self.validator, self.console = metrics, validator, console
        self.progress: Progress | None = None
        self.task = None
        self.seen_val = 0

    def on_train_start(self, trainer: Trainer) -> None:
        if rank() != 0:
            return
        self.progress = Progress(
            TextColumn("[bold]pretrain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "", total=trainer.total_steps, completed=trainer.step, stats=""
        )
        self.print_every = max(1, trainer.total_steps // 20)
        self._print_new_validation()

    def _print_new_validation(self) -> None:
        if self.validator is None:
            return
        for record in self.validator.history[self.seen_val :]:
            self.console.print(
                f"step {record['step']:>6}  val_loss {record['val_loss']:.4f}  "
                f"val_bpb {record['val_bpb']:.4f}"
            )
        self.seen_val = len(self.validator.history)

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        if self.progress is None:
            return
        last = self.metrics.last
        stats = f"loss {result.loss:.4f}"
        if "tokens_per_s" in last:  # nothing measured before the first logged step
            stats += f"  {last['tokens_per_s']:,.0f} tok/s  MFU {100 * last['mfu']:.1f}%"
        self.progress.update(self.task, completed=result.step, stats=stats)
        if not self.console.is_terminal and (
            result.step % self.print_every == 0 or result.step == trainer.total_steps
        ):
            self.console.print(f"step {result.step:>6}/{trainer.total_steps}  {stats}")
        self._print_new_validation()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
