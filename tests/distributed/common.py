"""The model, data and single-process reference run shared by the parallel-layout tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pangu_cli.checkpoint import load_checkpoint, save_checkpoint
from pangu_cli.mixture import MixtureLoader
from pangu_cli.model import ModelConfig, PanguModel
from pangu_cli.packing import TokenCorpus
from pangu_cli.trainer import Trainer
from stages.pretrain import OptimSection, build_optimizer

SEED, LR, GRAD_CLIP = 0, 3e-3, 0.5  # a clip that bites
EOD = 0
MODEL = ModelConfig(n_layers=4, d_model=64, ffn_hidden=176, n_heads=4, n_kv_heads=2, vocab_size=256)


def make_model() -> PanguModel:
    torch.manual_seed(SEED)
    return PanguModel(MODEL)


def make_corpus(n_docs: int = 300) -> TokenCorpus:
    """Documents of uneven length (packed rows hold several), each a learnable pattern
    (a random start and stride modulo the vocabulary) so the loss falls and updates matter."""
    rng = np.random.default_rng(1234)
    lengths = rng.integers(3, 80, n_docs)
    docs = [
        (rng.integers(0, 255) + rng.integers(1, 8) * np.arange(n)) % (MODEL.vocab_size - 1) + 1
        for n in lengths
    ]
    tokens = np.concatenate(docs).astype(np.uint32)
    return TokenCorpus(
        tokens=tokens,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        domains=np.zeros(n_docs, np.int32),
        domain_names=["random"],
        ids=[f"d{i}" for i in range(n_docs)],
        n_bytes=lengths.astype(np.int64),
    )


def make_loader(seq_len: int = 32, batch_size: int = 8) -> MixtureLoader:
    """The one-domain packed stream; it yields the global batch, so every layout (and the
    single process) sees the same rows."""
    return MixtureLoader(
        make_corpus(),
        mixture={"random": 1.0},
        seq_len=seq_len,
        batch_size=batch_size,
        eod_id=EOD,
        seed=SEED,
    )


def make_optimizer(module: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(module, OptimSection(lr=LR))


def reference_run(
    steps: int, save_at: int = 0, ckpt: Path | None = None, load: Path | None = None
) -> dict[str, list[float]]:
    """The single-process run: the existing Trainer step on the unsplit model."""
    model = make_model()
    optimizer = make_optimizer(model)
    loader = make_loader()
    if load is not None:
        loader.load_state_dict(load_checkpoint(load, model, optimizer)["loader"])
    trainer = Trainer(
        model, optimizer, loader, lr_at=lambda s: LR, total_steps=steps, grad_clip=GRAD_CLIP,
        device=torch.device("cpu"), autocast_dtype=None,
    )  # fmt: skip
    out: dict[str, list[float]] = {"loss": [], "grad_norm": []}
    for step in range(1, steps + 1):
        loss, norm = trainer.train_step(loader.next_batch())
        trainer.step += 1
        out["loss"].append(loss)
        out["grad_norm"].append(norm)
        if step == save_at and ckpt is not None:
            state = {"loader": loader.state_dict(), "step": step, "tokens": 0}
            save_checkpoint(ckpt, step, model, optimizer, state, {"test": True})
    return out
