"""Loss-spike and grad-norm-spike guard (what the report's DSSN removes, watched anyway).

After backward and before the optimiser step, the step's loss and gradient norm are
compared with a running window of recent accepted steps: a spike is a value above the
window's median by more than `k` robust standard deviations (1.4826 x MAD) *and* by more
than a relative margin (so a flat, quiet window does not turn noise into spikes), or a
non-finite value. Each spike is logged (metrics.jsonl `spike` record and the console)
with the step and the data it came from (domains and document ids), and the policy acts:

- warn: apply the update anyway;
- skip_batch: drop the update (the batch is consumed, the weights and optimiser unchanged);
- rollback: drop it, restore model and optimiser from the last checkpoint, and keep the
  loader where it is, so the data window between that checkpoint and the spike is skipped;
  then checkpoint at once, so a crash before the next regular save cannot resume from
  the old checkpoint and replay the skipped window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rich.console import Console

from pangu_cli.checkpoint import load_checkpoint, read_latest
from pangu_cli.packing import Batch
from pangu_cli.trainer import Callback, StepResult, Trainer


@dataclass
class StabilitySection:
    policy: Literal["none", "warn", "skip_batch", "rollback"] = "warn"
    window: int = 32  # accepted steps the median and MAD are taken over
    min_history: int = 8  # steps in the window before anything is judged
    loss_k: float = 6.0  # robust standard deviations above the median
    loss_margin: float = 0.05  # ... and at least this fraction above it
    grad_k: float = 6.0
    grad_margin: float = 1.0  # a grad-norm spike is at least 2x the median


def _is_spike(value: float, history: deque, k: float, margin: float, min_history: int) -> bool:
    if not math.isfinite(value):
        return True
    if len(history) < min_history:
        return False
    arr = np.asarray(history)
    median = float(np.median(arr))
    sigma = 1.4826 * float(np.median(np.abs(arr - median)))
    return value - median > k * sigma and value > median * (1 + margin)


class SpikeGuard(Callback):
    """`check` is the Trainer's guard; `on_step_end` performs a pending rollback."""

    def __init__(
        self, cfg: StabilitySection, metrics: Any, checkpointer: Any, console: Console
    ) -> None:
        self.cfg, self.metrics, self.checkpointer, self.console = (
            cfg,
            metrics,
            checkpointer,
            console,
        )
        self.losses: deque = deque(maxlen=cfg.window)
        self.norms: deque = deque(maxlen=cfg.window)
        self.events: list[dict[str, Any]] = []
        self.rollback_pending = False

    def check(self, trainer: Trainer, batch: Batch, loss: float, grad_norm: float) -> bool:
        cfg = self.cfg
        if cfg.policy == "none":
            return True
        kinds = []
        if _is_spike(loss, self.losses, cfg.loss_k, cfg.loss_margin, cfg.min_history):
            kinds.append("loss")
        if _is_spike(grad_norm, self.norms, cfg.grad_k, cfg.grad_margin, cfg.min_history):
            kinds.append("grad_norm")
        if not kinds:
            self.losses.append(loss)
            self.norms.append(grad_norm)
            return True
        docs = sorted({d for row in (batch.documents or []) for d in row})
        event = {
            "step": trainer.step + 1,
            "spike": "+".join(kinds),
            "spike_loss": loss,  # not `loss`: readers of training-loss lines skip events
            "spike_grad_norm": grad_norm,
            "window_median_loss": float(np.median(self.losses)) if self.losses else None,
            "window_median_grad_norm": float(np.median(self.norms)) if self.norms else None,
            "policy": cfg.policy,
            "domains": dict(batch.domain_tokens),
            "documents": docs[:32],
            "n_documents": len(docs),
        }
        self.events.append(event)
        self.console.print(
            f"[yellow]spike[/] step {event['step']}: {event['spike']} (loss {loss:.4f}, grad "
            f"norm {grad_norm:.3g}); policy {cfg.policy}; data {event['domains']}"
        )
        if cfg.policy == "rollback":
            self.rollback_pending = True  # after the step's callbacks: see on_step_end
        else:
            self.metrics.log({"event": "spike", **event})
        return cfg.policy == "warn"

    def on_step_end(self, trainer: Trainer, result: StepResult) -> None:
        if not self.rollback_pending:
            return
        self.rollback_pending = False
        event = self.events[-1]
        ckpt = read_latest(self.checkpointer.run_dir)
        if ckpt is None:
            event["rollback"] = "no checkpoint yet: batch skipped only"
        else:
            load_checkpoint(ckpt, trainer.model, trainer.optimizer)  # loader stays put
            event["rollback"] = ckpt.name
            event["skipped_window"] = [int(ckpt.name.split("_")[-1]) + 1, result.step]
            self.checkpointer.save(trainer)
        self.metrics.log({"event": "spike", **event})
        self.console.print(f"rolled back to {event['rollback']}")

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "norms": list(self.norms), "n": len(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.extend(state.get("losses", []))
        self.norms.extend(state.get("norms", []))
