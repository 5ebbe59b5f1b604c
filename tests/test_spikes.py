"""The spike guard: a degenerate batch injected into a real training run is caught, logged
with its step and documents, and each policy does what it says."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from pangu_cli.callbacks import Checkpointer, MetricsLogger
from pangu_cli.checkpoint import load_checkpoint
from pangu_cli.mixture import MixtureLoader
from pangu_cli.spikes import SpikeGuard, StabilitySection, _is_spike
from pangu_cli.trainer import Callback, Trainer
from tests.distributed.common import EOD, make_corpus, make_model, make_optimizer

BAD_STEP, STEPS, SAVE_EVERY = 10, 12, 4


def loader() -> MixtureLoader:
    return MixtureLoader(
        make_corpus(), mixture={"random": 1.0}, seq_len=32, batch_size=8, eod_id=EOD, seed=0
    )


class Injecting:
    """The loader, with one batch replaced by garbage: random inputs, every target the
    same token (a corrupted shard); its gradient is several times the usual norm."""

    def __init__(self, inner: MixtureLoader, bad: int) -> None:
        self.inner, self.bad, self.served = inner, bad, 0

    def next_batch(self, batch_size: int | None = None):
        batch = self.inner.next_batch(batch_size)
        self.served += 1
        if self.served == self.bad:
            g = torch.Generator().manual_seed(0)
            batch.inputs = torch.randint(1, 256, batch.inputs.shape, generator=g)
            batch.targets = torch.full_like(batch.targets, 7)
        return batch

    def state_dict(self) -> dict:
        return self.inner.state_dict()


class Snapshots(Callback):
    def __init__(self) -> None:
        self.params: dict[int, list[torch.Tensor]] = {}
        self.batches: dict[int, list] = {}

    def on_step_end(self, trainer, result) -> None:
        self.params[result.step] = [p.detach().clone() for p in trainer.model.parameters()]
        self.batches[result.step] = result.batch.documents


def train(policy: str, run_dir) -> tuple[SpikeGuard, Snapshots, Injecting]:
    torch.manual_seed(0)
    model = make_model()
    optimizer = make_optimizer(model)
    data = Injecting(loader(), BAD_STEP)
    console = Console(quiet=True)
    metrics = MetricsLogger(run_dir, log_every=1, flops_per_token=1.0, peak_flops=1.0)
    checkpointer = Checkpointer(run_dir, SAVE_EVERY, 3, {"test": True})
    guard = SpikeGuard(StabilitySection(policy=policy), metrics, checkpointer, console)
    snaps = Snapshots()
    trainer = Trainer(
        model, optimizer, data, lr_at=lambda s: 3e-3, total_steps=STEPS, grad_clip=1.0,
        device=torch.device("cpu"), autocast_dtype=None,
        callbacks=[metrics, guard, checkpointer, snaps], guard=guard.check,
    )  # fmt: skip
    trainer.fit()
    return guard, snaps, data


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("policy", ["warn", "skip_batch", "rollback"])
def test_injected_bad_batch_is_caught_and_handled(policy, tmp_path):
    guard, snaps, data = train(policy, tmp_path)
    assert [e["step"] for e in guard.events] == [BAD_STEP]  # that batch, and nothing else
    event = guard.events[0]
    assert "grad_norm" in event["spike"]
    assert event["spike_grad_norm"] > 2 * event["window_median_grad_norm"]
    assert event["domains"] == {"random": 8 * 32} and event["n_documents"] > 8
    assert event["documents"][0].startswith("d")  # the ids of the documents it came from
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r.get("event") == "spike"] == [BAD_STEP]
    before, after = snaps.params[BAD_STEP - 1], snaps.params[BAD_STEP]
    if policy == "warn":  # logged, update applied
        assert not same(before, after)
    elif policy == "skip_batch":  # update dropped: weights unchanged, training continues
        assert same(before, after) and not same(after, snaps.params[STEPS])
    else:  # weights of the last checkpoint (step 8), and the data window 9..10 skipped
        assert event["rollback"] == "step_0000008" and event["skipped_window"] == [9, 10]
        assert same(snaps.params[8], after) and not same(before, after)
        fresh = loader()
        stream = [fresh.next_batch().documents for _ in range(STEPS)]
        assert snaps.batches[BAD_STEP + 1] == stream[BAD_STEP]  # batch 11, not 9 again
        # Checkpointed right after the rollback: a crash now resumes past the bad window.
        model = make_model()
        ckpt = tmp_path / "checkpoints" / f"step_{BAD_STEP:07d}"
        state = load_checkpoint(ckpt, model, make_optimizer(model))
        assert same(list(model.parameters()), snaps.params[8])
        resumed = loader()
        resumed.load_state_dict(state["loader"])
        assert resumed.next_batch().documents == stream[BAD_STEP]
    assert data.served == STEPS


def test_detector_needs_history_and_ignores_quiet_noise():
    from collections import deque

    window = deque([1.0, 1.01, 0.99, 1.0, 1.0, 1.02, 0.98, 1.0], maxlen=32)
    assert not _is_spike(1.03, window, 6.0, 0.05, 8)  # many MADs, but within the margin
    assert _is_spike(1.5, window, 6.0, 0.05, 8)
    assert _is_spike(float("nan"), deque(), 6.0, 0.05, 8)  # non-finite: always
    assert not _is_spike(9.0, deque([1.0] * 3), 6.0, 0.05, 8)  # too little history
