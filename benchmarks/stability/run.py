"""The report's Figures 7 and 8 at small scale: a deep, narrow model trained on identical
data with an aggressive learning rate, four arms of norm x init:

    pre_ln + baseline, sandwich + baseline, depth_scaled_sandwich + baseline,
    depth_scaled_sandwich + tiny

Per arm: loss spikes and grad-norm spikes (pangu's spike detector, policy warn, so every
update is applied and the arms see the same batches), the largest grad norm (before
clipping), the final held-out loss; the curves go to a PNG.

    .venv/bin/python benchmarks/stability/run.py            # defaults: ~8 min on a busy 2-core box
    .venv/bin/python benchmarks/stability/run.py --layers 94 --steps 600 --lr 2e-2

Needs matplotlib (`pip install -e '.[bench]'`). Prints a table and writes results.json
and curves.png under --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from pangu_cli import tokenizer as tok  # noqa: E402
from pangu_cli.mixture import MixtureLoader  # noqa: E402
from pangu_cli.model import ModelConfig, PanguModel  # noqa: E402
from pangu_cli.packing import load_token_corpus, split_heldout, validation_batches  # noqa: E402
from pangu_cli.spikes import SpikeGuard, StabilitySection  # noqa: E402
from pangu_cli.trainer import Callback, Trainer  # noqa: E402
from stages.pretrain import OptimSection  # noqa: E402
from stages.pretrain_setup import build_optimizer, bundled_tokens  # noqa: E402

ARMS = [
    ("pre_ln", "baseline"),
    ("sandwich", "baseline"),
    ("depth_scaled_sandwich", "baseline"),
    ("depth_scaled_sandwich", "tiny"),
]


class Curves(Callback):
    def __init__(self) -> None:
        self.loss: list[float] = []
        self.grad_norm: list[float] = []

    def on_step_end(self, trainer: Trainer, result) -> None:
        self.loss.append(result.loss)
        self.grad_norm.append(result.grad_norm)


class NullMetrics:
    def log(self, record: dict) -> None: ...


def run_arm(args, norm: str, init: str, corpus, val, token_bytes, eod: int) -> dict:
    cfg = ModelConfig(
        n_layers=args.layers, d_model=args.d_model, ffn_hidden=args.d_model * 11 // 4,
        n_heads=4, n_kv_heads=2, vocab_size=args.vocab, norm=norm, init=init,
    )  # fmt: skip
    torch.manual_seed(args.seed)  # same seed, so arms differ only by norm and init
    model = PanguModel(cfg)
    optimizer = build_optimizer(model, OptimSection(lr=args.lr))
    # Each domain at its share of the corpus's tokens: the corpus as it is, no phase recipe.
    lengths = np.bincount(corpus.domains, np.diff(corpus.offsets), len(corpus.domain_names))
    shares = lengths / lengths.sum()
    mixture = {name: float(shares[i]) for i, name in enumerate(corpus.domain_names)}
    loader = MixtureLoader(
        corpus,
        mixture=mixture,
        seq_len=args.seq_len,
        batch_size=args.batch,
        eod_id=eod,
        seed=args.seed,
    )
    # Judged against a window of 20 steps; policy warn: count, never intervene.
    guard = SpikeGuard(
        StabilitySection(policy="warn", window=20), NullMetrics(), None, Console(quiet=True)
    )
    curves = Curves()
    warmup = args.warmup
    trainer = Trainer(
        model, optimizer, loader,
        lr_at=lambda s: args.lr * min(1.0, (s + 1) / warmup),
        total_steps=args.steps, grad_clip=1.0, device=torch.device("cpu"),
        autocast_dtype=None, callbacks=[curves], guard=guard.check,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit()
    val_loss = trainer.evaluate(val, token_bytes)["val_loss"]
    return {
        "arm": f"{norm}+{init}",
        "loss_spikes": sum("loss" in e["spike"].split("+") for e in guard.events),
        "grad_norm_spikes": sum("grad_norm" in e["spike"] for e in guard.events),
        "max_grad_norm": max(x for x in curves.grad_norm if math.isfinite(x)),
        # the first steps of a baseline init are large in every arm: look past the warmup too
        "max_grad_norm_after_warmup": max(
            (x for x in curves.grad_norm[warmup:] if math.isfinite(x)), default=float("nan")
        ),
        "final_train_loss": sum(curves.loss[-10:]) / len(curves.loss[-10:]),
        "final_val_loss": val_loss,
        "seconds": time.perf_counter() - start,
        "loss": curves.loss,
        "grad_norm": curves.grad_norm,
    }


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_norm) = plt.subplots(1, 2, figsize=(13, 4.5))
    for r in results:
        ax_loss.plot(r["loss"], label=r["arm"], linewidth=0.9)
        ax_norm.plot(r["grad_norm"], label=r["arm"], linewidth=0.9)
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_norm.set(xlabel="step", ylabel="grad norm (before clipping)", yscale="log")
    ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-2, help="aggressive: ~5x the tiny preset's")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--vocab", type=int, default=8192, help="bundled tokenizer size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="1 on a busy shared box")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-stability"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    tokens = bundled_tokens(args.vocab)
    tokenizer = tok.load_tokenizer(tokens / "tokenizer.json")
    eod = tok.eod_id(tokenizer)
    corpus = load_token_corpus(tokens)
    train_docs, val_docs = split_heldout(corpus, 0.01)
    val = validation_batches(
        corpus.subset(val_docs), seq_len=args.seq_len, batch_size=args.batch, eod_id=eod,
        max_rows_per_domain=4,
    )  # fmt: skip
    token_bytes = torch.from_numpy(tok.token_byte_lengths(tokenizer))
    results = []
    for norm, init in ARMS:
        r = run_arm(args, norm, init, corpus.subset(train_docs), val, token_bytes, eod)
        results.append(r)
        print(f"{r['arm']:<32} {r['seconds']:.0f} s", flush=True)
    title = (
        f"{args.layers} layers, d={args.d_model}, lr {args.lr:g}, {args.steps} steps, "
        f"batch {args.batch}x{args.seq_len}"
    )
    plot(results, args.out / "curves.png", title)
    (args.out / "results.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                                       "arms": results}))  # fmt: skip
    print(f"\n{title}")
    print(
        f"{'arm':<32} {'loss spikes':>11} {'gnorm spikes':>12} {'max gnorm':>10} "
        f"{'(after warmup)':>14} {'val loss':>9}"
    )
    for r in results:
        print(
            f"{r['arm']:<32} {r['loss_spikes']:>11} {r['grad_norm_spikes']:>12} "
            f"{r['max_grad_norm']:>10.3g} {r['max_grad_norm_after_warmup']:>14.3g} "
            f"{r['final_val_loss']:>9.4f}"
        )
    print(f"curves: {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
