"""`pangu data-clean`: raw documents -> cleaned, scored, labelled document shards.

The report's data pipeline is rule-based plus model-based cleaning, with quality
scores that drive sampling and difficulty labels that drive the curriculum. Per
document, in order:

1. normalise: Unicode repair + NFC, ANSI escapes and control characters out, HTML to
   text, whitespace, boilerplate lines (menus, banners, spam) dropped;
2. language ID (lang, lang_score) and the domain's keep-list;
3. rule filters: Gopher quality and repetition, C4, FineWeb, CJK-aware;
4. PII placeholders; rule-based quality features; difficulty label;
5. MinHash signature and exact hash; model bits per byte (optional).

Then dedup as signature -> global bucket merge -> filter: every rank reads every
unit's band keys and computes the same clusters, then writes its own units. Work is
cut into units by the input alone and ranks take units round-robin, so `--workers N`,
torchrun (RANK / WORLD_SIZE) or Slurm (SLURM_PROCID / SLURM_NTASKS) all give the same
bytes. Documents in = kept + removed, per reason and per domain, always.

This module holds the config and run(), which spreads the work over ranks and worker
processes; the phases themselves are in data_clean_phases.py, the totals, report.html
and manifest in data_clean_report.py, and the per-document pieces in pangu_cli/cleaning/.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pangu_cli.artifacts import StagedOutput, atomic_write_text
from pangu_cli.cleaning import dedup, difficulty, filters, inputs, langid, normalize, pii, quality
from pangu_cli.errors import UserError
from stages.data_clean_phases import (
    clean_unit,
    global_merge,
    init_process,
    write_unit,
    write_unit_in_worker,
)
from stages.data_clean_report import finish


@dataclass
class DataCleanConfig:
    input: str | None = None  # files or a directory; None: the bundled corpus
    workers: int | None = None  # processes on this machine; None: CPU count
    inputs: inputs.InputConfig = field(default_factory=inputs.InputConfig)
    normalize: normalize.NormalizeConfig = field(default_factory=normalize.NormalizeConfig)
    langid: langid.LangIdConfig = field(default_factory=langid.LangIdConfig)
    filters: filters.FiltersConfig = field(default_factory=filters.FiltersConfig)
    pii: pii.PIIConfig = field(default_factory=pii.PIIConfig)
    dedup: dedup.DedupConfig = field(default_factory=dedup.DedupConfig)
    quality: quality.QualityConfig = field(default_factory=quality.QualityConfig)
    difficulty: difficulty.DifficultyConfig = field(default_factory=difficulty.DifficultyConfig)
    report_examples: int = 5  # examples per removal reason in report.html
    dist_timeout_s: float = 3600.0  # how long a rank waits for the others


RULE_SETS = set(filters.RULE_CONFIGS)


def check_config(cfg: DataCleanConfig) -> None:
    for domain, names in cfg.filters.rules.items():
        unknown = set(names) - RULE_SETS
        if unknown:
            raise UserError(
                f"config filters.rules.{domain}: unknown rule set {sorted(unknown)[0]!r} "
                f"(known: {', '.join(sorted(RULE_SETS))})"
            )
    problem = filters.check_thresholds(cfg.filters)
    if problem:
        raise UserError(f"config {problem}")
    if cfg.dedup.bands < 1 or cfg.dedup.rows < 1 or cfg.dedup.ngram < 1 or cfg.dedup.cjk_ngram < 1:
        raise UserError("config dedup: bands, rows, ngram and cjk_ngram must be >= 1")
    if not 0.0 <= cfg.quality.model_weight <= 1.0:
        raise UserError("config quality.model_weight: must be in [0, 1]")


def launcher_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun or Slurm; (0, 1) when run directly."""
    for rank_var, world_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if world_var in os.environ:
            try:
                rank, world = int(os.environ.get(rank_var, "0")), int(os.environ[world_var])
            except ValueError:
                raise UserError(f"${rank_var} / ${world_var}: not integers") from None
            if not 0 <= rank < world:
                raise UserError(f"${rank_var}={rank} is outside ${world_var}={world}")
            return rank, world
    return 0, 1


# --------------------------------------------------------------------------- run


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _run_phase(name, fn, jobs, sizes, pool, progress, unit="") -> list[Any]:
    """Run fn(*job) for each job, in the pool or here, advancing a bar by each size."""
    task = progress.add_task(name, total=sum(sizes) or 1, unit=unit)
    results: dict[int, Any] = {}
    if pool is None:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            progress.advance(task, sizes[i])
    else:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()  # re-raises a worker's UserError
            progress.advance(task, sizes[i])
    return [results[i] for i in range(len(jobs))]


def _wait_for(work: Path, pattern: str, world: int, timeout: float) -> None:
    """Block until every rank has left `pattern` marker; fail if one left a failure."""
    deadline = time.time() + timeout
    while True:
        failed = sorted(work.glob("failed-rank-*"))
        if failed:
            raise UserError(f"{failed[0].name}: {failed[0].read_text().strip()}")
        if all((work / pattern.format(rank=r)).exists() for r in range(world)):
            return
        if time.time() > deadline:
            raise UserError(f"{work}: gave up waiting for the other ranks ({pattern})")
        time.sleep(0.2)


def run(config: DataCleanConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Clean `config.input` into `out`; returns the manifest (rank 0) or a rank summary."""
    started = time.perf_counter()
    out = Path(out)
    check_config(config)
    rank, world = launcher_rank()
    files = inputs.input_files(config.input)
    units = inputs.plan_units(files, config.inputs)
    inputs.validate_text_inputs(units, config.inputs)
    staged = StagedOutput(out, force) if rank == 0 else None  # refuses a complete output
    if world > 1:  # every rank writes into one staging directory on the shared filesystem
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID") or "dist"
        staging = out.with_name(f".{out.name}.staging-{job}")
        staging.mkdir(parents=True, exist_ok=True)
    else:
        staging = staged.path
        staged.__enter__()
    work = staging / ".work"
    work.mkdir(parents=True, exist_ok=True)
    mine = [u for u in range(len(units)) if u % world == rank]
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(mine) or 1))
    pool = None
    try:
        if workers > 1:
            import multiprocessing as mp

            # spawn: torch and tokenizers threads do not survive fork
            pool = ProcessPoolExecutor(
                workers, mp.get_context("spawn"), initializer=init_process, initargs=(config,)
            )
        init_process(config)
        with _progress() as progress:
            sizes = [_unit_size(units[u]) for u in mine]
            _run_phase(
                "clean",
                clean_unit,
                [(u, units[u], str(work)) for u in mine],
                sizes,
                pool,
                progress,
                "docs",
            )
            if world > 1:
                (work / f"cleaned-rank-{rank}").touch()
                _wait_for(work, "cleaned-rank-{rank}", world, config.dist_timeout_s)
            task = progress.add_task("dedup", total=1, unit="global merge")
            merged = global_merge(work, len(units), config)
            progress.advance(task)
            fn = (
                write_unit_in_worker
                if pool is not None
                else (lambda i, w, o, m: write_unit(i, w, o, m, config))
            )
            jobs = [(u, str(work), str(staging), merged) for u in mine]
            _run_phase("write", fn, jobs, [1] * len(mine), pool, progress, "units")
        if world > 1:
            (work / f"written-rank-{rank}").touch()
            if rank != 0:
                return {"rank": rank, "units": len(mine)}
            _wait_for(work, "written-rank-{rank}", world, config.dist_timeout_s)
        manifest = finish(config, files, units, staging, work, merged, started, workers, world)
        if world > 1:
            staged.path = staging  # commit the shared staging directory
        staged.commit()
        return manifest
    except BaseException as e:
        if world > 1:
            atomic_write_text(work / f"failed-rank-{rank}", str(e) or type(e).__name__)
        if rank == 0 and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _unit_size(unit: inputs.Unit) -> int:
    return sum(end - start for _, start, end in unit.batches) if unit.batches else 1
