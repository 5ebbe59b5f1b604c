"""`pangu pretrain --phase general | reasoning | anneal` (Pangu Ultra, section 3).

Each phase trains on token shards with the report's recipe scaled to the run (see
pangu_cli.phases): the domain mixture, sequence length and RoPE base, the batch-size ramp
and the learning-rate shape. AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1), gradient
clipping at 1.0, packed sequences with document-masked attention; fp32 on CPU, bf16
autocast on GPU/NPU. A phase starts from the previous one's final checkpoint with --init
(weights only: a fresh optimiser and schedule) and records that lineage.

Launched under torchrun, the same code runs the `parallel` layout (FSDP2, TP + SP,
pipelining): every rank draws the same global batch; rank 0 writes metrics, checkpoint
metadata and the manifest. DCP checkpoints carry model, optimiser, data position and RNG,
so a killed run resumes with --resume to the same losses, at any world size.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rich.console import Console

from pangu_cli import phases
from pangu_cli import tokenizer as tok
from pangu_cli.artifacts import MANIFEST, read_manifest, write_manifest
from pangu_cli.callbacks import Checkpointer, MetricsLogger, ProgressBar, Validator
from pangu_cli.checkpoint import barrier, load_checkpoint, rank, read_latest
from pangu_cli.device import autocast_dtype, device_name, peak_flops, tune_cpu_allocator
from pangu_cli.errors import UserError
from pangu_cli.mixture import MixtureLoader
from pangu_cli.model import PanguModel
from pangu_cli.packing import load_token_corpus, split_heldout, validation_batches
from pangu_cli.parallel import ParallelConfig, build_mesh, check_batch, parallelize, validate
from pangu_cli.presets import PRESETS, count_parameters, model_config, training_flops_per_token
from pangu_cli.spikes import SpikeGuard, StabilitySection
from pangu_cli.trainer import Trainer
from stages.pretrain_setup import (  # noqa: F401  (build_optimizer: the tests import it here)
    build_optimizer,
    bundled_tokens,
    check_compatible,
    init_distributed,
    layout_name,
    lineage_entry,
    on_rank0,
    prepare_run_dir,
    read_metrics,
    resolve_init,
    trainer_state_of,
    truncate_metrics,
)


@dataclass
class ModelSection:
    """A preset, with any of its fields replaced."""

    preset: str = "tiny"
    n_layers: int | None = None
    d_model: int | None = None
    ffn_hidden: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    rope_base: float | None = None  # the general phase's; later phases scale it
    norm: Literal["pre_ln", "sandwich", "depth_scaled_sandwich"] | None = None
    init: Literal["baseline", "tiny"] | None = None


@dataclass
class OptimSection:
    lr: float = 3e-3  # the general phase's peak (the report's 1e-4)
    min_lr: float = 3e-4  # the general phase's floor (1e-5); reasoning/anneal scale it
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
    seq_len: int = 256  # the general phase's (4K); reasoning and anneal use 2x
    batch_size: int = 8  # full global batch in sequences (the report's 2048)
    batch_ramp: bool = True  # the general phase's 1024 -> 1536 -> 2048, scaled
    batch_multiple: int = 0  # ramp sizes round to this; 0: dp x micro-batches
    mixture: dict[str, float] | None = None  # share per corpus domain; None: the phase's
    val_fraction: float = 0.01  # held-out share of each domain's tokens
    val_rows_per_domain: int = 8
    reset_position_ids: bool = True  # position ids restart at each document
    document_mask: bool = True  # no attention across an end-of-document token


@dataclass
class TrainSection:
    steps: int = 100
    tokens: int | None = None  # token budget of the phase; when set, steps follow from it
    init: str | None = None  # previous phase's run dir or checkpoint (weights only)
    save_every: int = 50
    val_every: int = 50
    log_every: int = 1
    keep_last: int = 2  # complete checkpoints kept on disk
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "npu"] = "auto"
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile each block (same as parallel.compile)


@dataclass
class PretrainConfig:
    phase: Literal["general", "reasoning", "anneal"] = "general"
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    stability: StabilitySection = field(default_factory=StabilitySection)


def run(config: PretrainConfig, out: str | Path, resume: bool = False, force: bool = False) -> dict:
    device, world, own_group = init_distributed(config.train.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    try:
        return _run(config, Path(out), resume, force, device, world)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(
    config: PretrainConfig, out: Path, resume: bool, force: bool, device: torch.device, world: int
) -> dict:
    started = time.time()
    console = Console(stderr=False, quiet=rank() != 0)
    recipe = phases.RECIPES[config.phase]
    tokens_dir = Path(config.data.input) if config.data.input is not None else None
    if tokens_dir is None:
        tokens_dir = on_rank0(lambda: bundled_tokens(config.data.bundled_vocab_size))
    read_manifest(tokens_dir)  # refuses an incomplete tokenize output
    tokenizer_file = tokens_dir / "tokenizer.json"
    tokenizer = tok.load_tokenizer(tokenizer_file)
    tokenizer_fp = tok.tokenizer_fingerprint(tokenizer_file)
    eod = tok.eod_id(tokenizer)

    seq_len = config.data.seq_len * recipe.seq_len_mult
    overrides = {k: v for k, v in dataclasses.asdict(config.model).items() if k != "preset"}
    base_rope = (
        config.model.rope_base or PRESETS.get(config.model.preset, PRESETS["tiny"]).rope_base
    )
    overrides["rope_base"] = base_rope * recipe.rope_base_mult
    model_cfg = model_config(config.model.preset, **overrides, vocab_size=tok.vocab_size(tokenizer))
    corpus = load_token_corpus(tokens_dir)
    if int(corpus.tokens.max(initial=0)) >= model_cfg.vocab_size:
        raise UserError(f"{tokens_dir}: token ids exceed the vocabulary of its tokenizer.json")
    train_docs, val_docs = split_heldout(corpus, config.data.val_fraction)
    train_corpus = corpus.subset(train_docs)
    pcfg = dataclasses.replace(config.parallel)
    pcfg.compile = pcfg.compile or config.train.compile
    pcfg = validate(pcfg, world, model_cfg)

    def prepare() -> Path | None:
        found = prepare_run_dir(out, resume, force)
        (out / MANIFEST).unlink(missing_ok=True)  # the run is incomplete until it ends
        return found

    resume_from = on_rank0(prepare)
    init_from = resolve_init(config.train.init) if resume_from is None else None
    saved = trainer_state_of(resume_from)
    if resume_from is not None:
        check_compatible(saved["meta"], model_cfg, tokenizer_fp, resume_from)
    lineage = saved["meta"].get("lineage", []) if resume_from is not None else []
    if init_from is not None:
        check_compatible(init_from[1], model_cfg, tokenizer_fp, init_from[0], shape_only=True)
        lineage = [*init_from[1].get("lineage", []), lineage_entry(init_from)]

    lengths = np.bincount(train_corpus.domains, np.diff(train_corpus.offsets))
    domain_tokens = {n: int(lengths[i]) for i, n in enumerate(train_corpus.domain_names)}
    mixture, notes = phases.resolve_mixture(config.phase, domain_tokens, config.data.mixture)
    # Without the ramp, the phase's final batch throughout.
    ramp = recipe.batch_ramp if config.data.batch_ramp else ((0.0, recipe.batch_ramp[-1][1]),)
    total_steps = config.train.steps
    if config.train.tokens:
        full_steps = config.train.tokens / (config.data.batch_size * seq_len)
        total_steps = math.ceil(full_steps * phases.ramp_units(ramp))
    multiple = (
        saved["state"].get("batch_multiple")
        or config.data.batch_multiple
        or (pcfg.dp * (pcfg.microbatches if pcfg.pp > 1 else 1))
    )
    batch_at = phases.batch_schedule(ramp, total_steps, config.data.batch_size, multiple)
    for size in phases.batch_sizes(batch_at, total_steps):
        check_batch(pcfg, size)

    torch.manual_seed(config.train.seed)
    model = PanguModel(model_cfg).to(device)
    counts = count_parameters(model)
    mesh = build_mesh(pcfg, world, device.type) if world > 1 else None
    compute_dtype = autocast_dtype(device, config.train.dtype)
    pm = parallelize(model, mesh, pcfg, param_dtype=compute_dtype)
    module = pm.module  # PanguModel's parameter names under any layout
    optimizer = build_optimizer(module, config.optim)
    loader = MixtureLoader(
        train_corpus,
        mixture=mixture,
        seq_len=seq_len,
        batch_size=config.data.batch_size,
        eod_id=eod,
        seed=config.train.seed,
        curriculum=recipe.curriculum,
        reset_position_ids=config.data.reset_position_ids,
        document_mask=config.data.document_mask,
    )
    step, tokens = 0, 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, module, optimizer)
        loader.load_state_dict(state["loader"])
        step, tokens = state["step"], state["tokens"]
        console.print(f"resuming from {resume_from} (step {step})")
    elif init_from is not None:
        load_checkpoint(init_from[0], module, None)
        console.print(f"{config.phase}: initialised from {init_from[0]} (fresh optimiser)")
    # A fresh start (killed before its first checkpoint) drops every earlier line.
    on_rank0(lambda: truncate_metrics(out, step if resume_from is not None else -1))

    flops_per_token = training_flops_per_token(
        model_cfg, counts["total"], counts["embedding"], seq_len
    )
    peak, peak_source = peak_flops(device)
    meta = {
        "phase": config.phase,
        "model": dataclasses.asdict(model_cfg),
        "tokenizer_fingerprint": tokenizer_fp,
        "seq_len": seq_len,
        "world_size": world,
        "parallel": dataclasses.asdict(pcfg),
        "lineage": lineage,
    }
    metrics = MetricsLogger(
        out,
        log_every=config.train.log_every,
        flops_per_token=flops_per_token,
        peak_flops=peak,
        world_size=world,
    )
    val = validation_batches(
        corpus.subset(val_docs),
        seq_len=seq_len,
        batch_size=config.data.batch_size,
        eod_id=eod,
        max_rows_per_domain=config.data.val_rows_per_domain,
        reset_position_ids=config.data.reset_position_ids,
        document_mask=config.data.document_mask,
    )
    token_bytes = torch.from_numpy(tok.token_byte_lengths(tokenizer))
    validator = Validator(val, token_bytes, config.train.val_every, metrics)
    checkpointer = Checkpointer(out, config.train.save_every, config.train.keep_last, meta)
    guard = SpikeGuard(config.stability, metrics, checkpointer, console)
    checkpointer.extra_state = {"batch_multiple": multiple, "spikes": guard.state_dict}
    if resume_from is not None:
        guard.load_state_dict(state.get("spikes", {}))
    trainer = Trainer(
        module,
        optimizer,
        loader,
        lr_at=phases.lr_schedule(
            config.phase,
            config.optim.lr,
            config.optim.min_lr,
            config.optim.warmup_steps,
            total_steps,
        ),
        total_steps=total_steps,
        grad_clip=config.optim.grad_clip,
        device=device,
        autocast_dtype=compute_dtype,
        callbacks=[
            metrics,
            validator,
            guard,
            checkpointer,
            ProgressBar(metrics, validator, console),
        ],
        step=step,
        tokens=tokens,
        parallel=pm,
        batch_size_at=batch_at,
        guard=guard.check,
    )
    sizes = phases.batch_sizes(batch_at, total_steps)
    console.print(
        f"pretrain {config.phase}: {model_cfg.n_layers} layers, d={model_cfg.d_model}, "
        f"{counts['total'] / 1e6:.2f}M parameters, seq {seq_len}, RoPE base "
        f"{model_cfg.rope_base:g}, {total_steps} steps, batch {sizes}, "
        f"mixture {', '.join(f'{k} {100 * v:.1f}%' for k, v in mixture.items())}, "
        f"{world} rank(s) {layout_name(pcfg)}, {device_name(device)}, "
        f"peak {peak / 1e9:.0f} GFLOP/s per device ({peak_source})"
    )
    for note in notes:
        console.print(f"mixture: {note}")
    if step >= total_steps:
        console.print(f"already at step {step} of {total_steps}; nothing to train")
    else:
        trainer.fit()
    if checkpointer.last_saved != trainer.step and trainer.step > 0:
        checkpointer.save(trainer)

    def manifest() -> dict:
        validation = [r for r in read_metrics(out) if "val_loss" in r]
        seen = loader.tokens_per_domain
        total = max(1, sum(seen.values()))
        return write_manifest(
            out,
            stage="pretrain",
            config=dataclasses.asdict(config),
            inputs=[tokens_dir],
            outputs=sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
            counts={
                "steps": trainer.step,
                "tokens": trainer.tokens,
                "tokens_per_domain": seen,
                "train_documents": int(train_corpus.n_docs),
                "heldout_documents": len(val_docs),
                "parameters": counts["total"],
                "spikes": len(guard.events),
            },
            wall_time_s=time.time() - started,
            phase=config.phase,
            mixture={
                "target": mixture,
                "actual": {d: seen.get(d, 0) / total for d in mixture},
                "notes": notes,
            },
            schedule={
                "seq_len": seq_len,
                "rope_base": model_cfg.rope_base,
                "batch_sizes": phases.batch_sizes(batch_at, total_steps),
                "curriculum": recipe.curriculum,
            },
            lineage=lineage,
            world_size=world,
            parallel=dataclasses.asdict(pcfg),
            device=device_name(device),
            peak_flops=peak,
            peak_flops_source=peak_source,
            flops_per_token=flops_per_token,
            final_checkpoint=str(read_latest(out).relative_to(out)) if trainer.step else None,
            validation={"first": validation[0], "last": validation[-1]} if validation else {},
            spike_events=guard.events[-20:],
            final_train_metrics=metrics.last,
        )

    barrier()
    return manifest() if rank() == 0 else {}
