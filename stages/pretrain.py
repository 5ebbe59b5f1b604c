"""`pangu pretrain`: the general pretraining phase (Pangu Ultra, section 3).

Reads token shards (the output of `pangu tokenize`), builds the Pangu model with
depth-scaled sandwich norm and TinyInit, and trains it with AdamW (0.9, 0.95,
eps 1e-8, weight decay 0.1), linear warmup + cosine decay and gradient clipping at
1.0, on packed sequences with document-masked attention. fp32 on CPU, bf16 autocast
on GPU/NPU. Checkpoints (DCP) carry model, optimiser, data position and RNG, so a
run killed at any moment resumes, with --resume, to exactly the same losses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console

from pangu_cli import tokenizer as tok
from pangu_cli.artifacts import MANIFEST, atomic_write_text, read_manifest, write_manifest
from pangu_cli.callbacks import Checkpointer, MetricsLogger, ProgressBar, Validator
from pangu_cli.checkpoint import load_checkpoint, read_latest, read_meta
from pangu_cli.device import autocast_dtype, device_name, peak_flops, pick_device
from pangu_cli.errors import UserError
from pangu_cli.model import ModelConfig, PanguModel
from pangu_cli.packing import PackedLoader, load_token_corpus, split_heldout, validation_batches
from pangu_cli.presets import count_parameters, model_config, training_flops_per_token
from pangu_cli.trainer import Trainer, warmup_cosine


@dataclass
class ModelSection:
    """A preset, with any of its fields replaced."""

    preset: str = "tiny"
    n_layers: int | None = None
    d_model: int | None = None
    ffn_hidden: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    rope_base: float | None = None
    norm: Literal["pre_ln", "sandwich", "depth_scaled_sandwich"] | None = None
    init: Literal["baseline", "tiny"] | None = None


@dataclass
class OptimSection:
    lr: float = 3e-3  # peak learning rate
    min_lr: float = 3e-4  # end of the cosine decay
    warmup_steps: int = 20
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0


@dataclass
class DataSection:
    input: str | None = None  # a `pangu tokenize` output dir; None: the bundled corpus
    bundled_vocab_size: int = 8192  # tokenizer size when training on the bundled corpus
    seq_len: int = 256
    batch_size: int = 8  # sequences per optimiser step (global)
    val_fraction: float = 0.01  # held-out share of each domain's tokens
    val_rows_per_domain: int = 8
    reset_position_ids: bool = True  # position ids restart at each document
    document_mask: bool = True  # no attention across an end-of-document token


@dataclass
class TrainSection:
    steps: int = 100
    save_every: int = 50
    val_every: int = 50
    log_every: int = 1
    keep_last: int = 2  # complete checkpoints kept on disk
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "npu"] = "auto"
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile each block


@dataclass
class PretrainConfig:
    phase: Literal["general"] = "general"
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)


def bundled_tokens(vocab_size: int) -> Path:
    """Without --input: tokenizer-build and tokenize the bundled corpus once, into the
    user's cache ($PANGU_CACHE, default ~/.cache/pangu), and reuse it after."""
    from pangu_cli import __version__
    from stages import tokenize, tokenizer_build

    root = Path(os.environ.get("PANGU_CACHE", Path.home() / ".cache" / "pangu"))
    cache = root / f"bundled-v{__version__}-vocab{vocab_size}"
    tokenizer_dir, tokens_dir = cache / "tokenizer", cache / "tokens"
    if not (tokenizer_dir / MANIFEST).exists():
        tokenizer_build.run(
            tokenizer_build.TokenizerBuildConfig(vocab_size=vocab_size), tokenizer_dir, force=True
        )
    if not (tokens_dir / MANIFEST).exists():
        tokenize.run(tokenize.TokenizeConfig(tokenizer=str(tokenizer_dir)), tokens_dir, force=True)
    return tokens_dir


def prepare_run_dir(out: Path, resume: bool, force: bool) -> Path | None:
    """Check the run directory; return the checkpoint to resume from, if any."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if force and out.exists():
        shutil.rmtree(out)
    has_content = out.exists() and any(out.iterdir())
    if has_content and not resume:
        raise UserError(f"{out}: holds a previous run; pass --resume to continue it or --force")
    out.mkdir(parents=True, exist_ok=True)
    return read_latest(out) if resume else None


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint we resume from: they will be logged again."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            break  # a line cut by a kill mid-write ends the valid part
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def build_optimizer(model: torch.nn.Module, cfg: OptimSection) -> torch.optim.AdamW:
    # Weight decay on matrices only: norm gammas (the DSSN scales among them) keep theirs.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
    )


def check_compatible(meta: dict, model_cfg: ModelConfig, tokenizer_fp: str, path: Path) -> None:
    """A checkpoint must match this run's tokenizer and model shape."""
    if meta.get("tokenizer_fingerprint") != tokenizer_fp:
        raise UserError(
            f"{path}: checkpoint was trained with another tokenizer "
            f"(vocabulary {meta.get('model', {}).get('vocab_size')} vs {model_cfg.vocab_size}, "
            "fingerprints differ); use the token shards it was trained on"
        )
    if meta.get("model") != dataclasses.asdict(model_cfg):
        raise UserError(f"{path}: checkpoint model config differs from this run's model config")


def run(config: PretrainConfig, out: str | Path, resume: bool = False, force: bool = False) -> dict:
    started = time.time()
    out = Path(out)
    console = Console(stderr=False)
    tokens_dir = (
        Path(config.data.input)
        if config.data.input is not None
        else bundled_tokens(config.data.bundled_vocab_size)
    )
    read_manifest(tokens_dir)  # refuses an incomplete tokenize output
    tokenizer_file = tokens_dir / "tokenizer.json"
    tokenizer = tok.load_tokenizer(tokenizer_file)
    tokenizer_fp = tok.tokenizer_fingerprint(tokenizer_file)

    model_overrides = {k: v for k, v in dataclasses.asdict(config.model).items() if k != "preset"}
    model_cfg = model_config(
        config.model.preset, **model_overrides, vocab_size=tok.vocab_size(tokenizer)
    )
    corpus = load_token_corpus(tokens_dir)
    if int(corpus.tokens.max(initial=0)) >= model_cfg.vocab_size:
        raise UserError(f"{tokens_dir}: token ids exceed the vocabulary of its tokenizer.json")
    train_docs, val_docs = split_heldout(corpus, config.data.val_fraction)

    resume_from = prepare_run_dir(out, resume, force)
    (out / MANIFEST).unlink(missing_ok=True)  # the run is incomplete until it ends
    if resume_from is not None:
        check_compatible(read_meta(resume_from), model_cfg, tokenizer_fp, resume_from)

    device = pick_device(config.train.device)
    torch.manual_seed(config.train.seed)
    model = PanguModel(model_cfg).to(device)
    optimizer = build_optimizer(model, config.optim)
    loader = PackedLoader(
        corpus.subset(train_docs),
        seq_len=config.data.seq_len,
        batch_size=config.data.batch_size,
        eod_id=tok.eod_id(tokenizer),
        seed=config.train.seed,
        reset_position_ids=config.data.reset_position_ids,
        document_mask=config.data.document_mask,
    )
    step, tokens = 0, 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer)
        loader.load_state_dict(state["loader"])
        step, tokens = state["step"], state["tokens"]
        console.print(f"resuming from {resume_from} (step {step})")
    truncate_metrics(out, step)
    if config.train.compile:
        for block in model.layers.values():
            block.compile()

    counts = count_parameters(model)
    flops_per_token = training_flops_per_token(
        model_cfg, counts["total"], counts["embedding"], config.data.seq_len
    )
    peak, peak_source = peak_flops(device)
    meta = {
        "phase": config.phase,
        "model": dataclasses.asdict(model_cfg),
        "tokenizer_fingerprint": tokenizer_fp,
        "seq_len": config.data.seq_len,
    }
    metrics = MetricsLogger(
        out, log_every=config.train.log_every, flops_per_token=flops_per_token, peak_flops=peak
    )
    val = validation_batches(
        corpus.subset(val_docs),
        seq_len=config.data.seq_len,
        batch_size=config.data.batch_size,
        eod_id=tok.eod_id(tokenizer),
        max_rows_per_domain=config.data.val_rows_per_domain,
        reset_position_ids=config.data.reset_position_ids,
        document_mask=config.data.document_mask,
    )
    token_bytes = torch.from_numpy(tok.token_byte_lengths(tokenizer))
    validator = Validator(val, token_bytes, config.train.val_every, metrics)
    checkpointer = Checkpointer(out, config.train.save_every, config.train.keep_last, meta)
    trainer = Trainer(
        model,
        optimizer,
        loader,
        lr_at=warmup_cosine(
            config.optim.lr, config.optim.min_lr, config.optim.warmup_steps, config.train.steps
        ),
        total_steps=config.train.steps,
        grad_clip=config.optim.grad_clip,
        device=device,
        autocast_dtype=autocast_dtype(device, config.train.dtype),
        callbacks=[metrics, validator, checkpointer, ProgressBar(metrics, validator, console)],
        step=step,
        tokens=tokens,
    )
    console.print(
        f"pretrain {config.phase}: {model_cfg.n_layers} layers, d={model_cfg.d_model}, "
        f"{counts['total'] / 1e6:.2f}M parameters, {loader.corpus.n_docs} train / "
        f"{len(val_docs)} held-out documents, {device_name(device)}, "
        f"peak {peak / 1e9:.0f} GFLOP/s ({peak_source})"
    )
    if step >= config.train.steps:
        console.print(f"already at step {step} of {config.train.steps}; nothing to train")
    else:
        trainer.fit()
    if checkpointer.last_saved != trainer.step and trainer.step > 0:
        checkpointer.save(trainer)

    validation = [r for r in read_metrics(out) if "val_loss" in r]
    return write_manifest(
        out,
        stage="pretrain",
        config=dataclasses.asdict(config),
        inputs=[tokens_dir],
        outputs=sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
        counts={
            "steps": trainer.step,
            "tokens": trainer.tokens,
            "tokens_per_domain": loader.tokens_per_domain,
            "train_documents": int(loader.corpus.n_docs),
            "heldout_documents": len(val_docs),
            "parameters": counts["total"],
        },
        wall_time_s=time.time() - started,
        phase=config.phase,
        device=device_name(device),
        peak_flops=peak,
        peak_flops_source=peak_source,
        flops_per_token=flops_per_token,
        final_checkpoint=str(read_latest(out).relative_to(out)) if trainer.step else None,
        validation={"first": validation[0], "last": validation[-1]} if validation else {},
        final_train_metrics=metrics.last,
    )
