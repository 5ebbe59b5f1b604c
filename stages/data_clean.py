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
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pangu_cli.artifacts import StagedOutput, atomic_write_text, write_manifest
from pangu_cli.cleaning import dedup, difficulty, filters, inputs, langid, normalize, pii, quality
from pangu_cli.cleaning.report import render
from pangu_cli.errors import UserError
from pangu_cli.shards import DOCUMENT_SCHEMA, REMOVED_DIR, write_shard

KEPT_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)
    + [
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("quality", pa.float32()),
        ("difficulty", pa.float32()),
        ("quality_rule", pa.float32()),
        ("quality_model", pa.float32()),  # null without quality.model
        ("features", pa.string()),  # JSON: the rule-based features and what cleaning did
    ]
)
REMOVED_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)  # text: the document as it came in
    + [
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),  # id of the kept document, for dedup reasons
    ]
)


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


# ------------------------------------------------------------------ phase 1: clean

_state: dict[str, Any] = {}


def _init(cfg: DataCleanConfig) -> None:
    """Per process: the MinHash permutations and (optionally) the quality model."""
    _state["cfg"] = cfg
    _state["minhash"] = dedup.MinHasher(cfg.dedup)
    _state["scorer"] = quality.ModelScorer(cfg.quality) if cfg.quality.model else None


def clean_document(text: str, domain: str, cfg: DataCleanConfig, minhash: dedup.MinHasher) -> dict:
    """Everything data-clean does to one document that needs no other document."""
    out: dict[str, Any] = {"lang": "und", "lang_score": 0.0, "reason": None}
    text, stats = normalize.normalize(text or "", domain, cfg.normalize)
    if not text.strip():
        return {**out, "reason": "empty", "text": text}
    if cfg.langid.enabled:
        out["lang"], out["lang_score"] = langid.identify(text, cfg.langid.max_chars)
        if not langid.kept(domain, out["lang"], out["lang_score"], cfg.langid):
            return {**out, "reason": "lang", "text": text}
    cjk = filters.is_cjk(out["lang"])
    text, reason = filters.apply_filters(text, domain, out["lang"], cfg.filters)
    if reason:
        return {**out, "reason": reason, "text": text}
    if cfg.pii.enabled and domain not in cfg.pii.skip_domains:
        text, stats["pii"] = pii.scrub(text, cfg.pii)
    words = filters.words_of(text, cjk)
    stop = filters.STOP_WORDS.get(out["lang"], filters.STOP_WORDS["zh" if cjk else "en"])
    stop_set = set(stop)
    stop_count = sum(1 for w in words[:5000] if w.lower() in stop_set)
    features = quality.rule_features(text, words[:5000], stop_count, cjk)
    label, raw = difficulty.difficulty(text, domain, cjk, cfg.difficulty)
    features["difficulty_raw"] = round(raw, 3)
    features.update({k: v for k, v in stats.items() if v})
    shingles = dedup.shingle_hashes(text, cjk, cfg.dedup.ngram, cfg.dedup.cjk_ngram)
    sig = minhash.signature(shingles)
    return {
        **out,
        "text": text,
        "quality_rule": quality.rule_score(features, cjk),
        "difficulty": round(label, 4),
        "features": quality.features_json(features),
        "exact": dedup.exact_hash(text),
        "sig": sig,
        "bands": minhash.band_keys(sig),
    }


def clean_unit(index: int, unit: inputs.Unit, work: str) -> int:
    """Phase 1 for one unit: write work/unit-NNNNN.arrow, return its document count."""
    cfg: DataCleanConfig = _state["cfg"]
    docs = inputs.read_unit(unit, cfg.inputs)
    n = len(docs["text"])
    k = cfg.dedup.bands * cfg.dedup.rows
    rows = [
        clean_document(t, d, cfg, _state["minhash"])
        for t, d in zip(docs["text"], docs["domain"], strict=True)
    ]
    sigs = np.zeros((n, k), np.uint32)
    bands = np.zeros((n, cfg.dedup.bands), np.uint64)
    for i, r in enumerate(rows):
        if r["reason"] is None:
            sigs[i], bands[i] = r["sig"], r["bands"]
    bpb: list[float | None] = [None] * n
    if _state["scorer"] is not None:
        alive = [i for i, r in enumerate(rows) if r["reason"] is None]
        for i, v in zip(
            alive, _state["scorer"].bits_per_byte([rows[i]["text"] for i in alive]), strict=True
        ):
            bpb[i] = None if v != v else v
            if bpb[i] is not None:  # the raw figure beside the calibrated score
                rows[i]["features"] = quality.add_feature(rows[i]["features"], "model_bpb", v)
    get = lambda key, default=None: [r.get(key, default) for r in rows]  # noqa: E731
    table = pa.table(
        {
            "id": pa.array(docs["id"], pa.string()),
            "text": pa.array(get("text"), pa.large_string()),
            "original": pa.array(docs["text"], pa.large_string()),
            "source": pa.array(docs["source"], pa.string()),
            "domain": pa.array(docs["domain"], pa.string()),
            "lang": pa.array(get("lang"), pa.string()),
            "lang_score": pa.array(get("lang_score"), pa.float32()),
            "reason": pa.array(get("reason"), pa.string()),
            "quality_rule": pa.array(get("quality_rule", 0.0), pa.float32()),
            "difficulty": pa.array(get("difficulty", 0.0), pa.float32()),
            "features": pa.array(get("features", "{}"), pa.string()),
            "bpb": pa.array(bpb, pa.float64()),
            "exact": pa.array([r.get("exact", 0) for r in rows], pa.uint64()),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel()), k),
            "bands": pa.FixedSizeListArray.from_arrays(pa.array(bands.ravel()), cfg.dedup.bands),
        }
    )
    write_shard(Path(work) / f"unit-{index:05d}.arrow", table)
    return n


# ------------------------------------------------------------- phase 2: global merge


def _read_work(work: Path, index: int, columns: list[str]) -> pa.Table:
    with pa.memory_map(str(work / f"unit-{index:05d}.arrow"), "r") as source:
        return pa.ipc.open_file(source).read_all().select(columns)


def global_merge(work: Path, n_units: int, cfg: DataCleanConfig) -> dict[str, Any]:
    """Every unit's band keys -> clusters -> which documents are duplicates; and the
    per-domain calibration of the model score. Pure function of the work files."""
    offsets, ids, domains, parts = [0], [], [], []
    for u in range(n_units):
        t = _read_work(work, u, ["id", "domain", "reason", "exact", "sig", "bands", "bpb"])
        ids += t.column("id").to_pylist()
        domains += t.column("domain").to_pylist()
        parts.append(t)
        offsets.append(offsets[-1] + t.num_rows)
    table = pa.concat_tables(parts) if parts else None
    if table is None or table.num_rows == 0:
        return {"offsets": offsets, "removed": {}, "calibration": {}}
    alive = np.asarray(table.column("reason").is_null())
    index = np.flatnonzero(alive)
    k = cfg.dedup.bands * cfg.dedup.rows
    sig = table.column("sig").combine_chunks().flatten().to_numpy().reshape(-1, k)[alive]
    bands = (
        table.column("bands")
        .combine_chunks()
        .flatten()
        .to_numpy()
        .reshape(-1, cfg.dedup.bands)[alive]
    )
    exact = table.column("exact").to_numpy()[alive]
    removed = dedup.find_duplicates(index, exact, bands, sig, cfg.dedup)
    calibration = {}
    bpb = table.column("bpb").to_numpy(zero_copy_only=False)
    domain_arr = np.asarray(domains, dtype=object)
    if cfg.quality.model:
        survivors = alive.copy()
        survivors[list(removed)] = False
        for d in sorted(set(domains)):
            values = bpb[survivors & (domain_arr == d)]
            values = values[~np.isnan(values.astype(float))].astype(float)
            calibration[d] = quality.calibrate(values)
    return {
        "offsets": offsets,
        "removed": {i: (reason, ids[j]) for i, (reason, j) in removed.items()},
        "calibration": calibration,
    }


# ------------------------------------------------------------------ phase 3: write


def write_unit(
    index: int, work: str, out: str, merged: dict[str, Any], cfg: DataCleanConfig
) -> dict:
    """Kept and removed shards for one unit; its counts and report examples."""
    t = _read_work(
        Path(work),
        index,
        [
            "id",
            "text",
            "original",
            "source",
            "domain",
            "lang",
            "lang_score",
            "reason",
            "quality_rule",
            "difficulty",
            "features",
            "bpb",
        ],
    )
    rows = t.to_pylist()
    base = merged["offsets"][index]
    kept, removed = [], []
    for i, r in enumerate(rows):
        dup = merged["removed"].get(base + i)
        if dup is not None:
            r["reason"], r["duplicate_of"] = dup
        if r["reason"] is None:
            cal = merged["calibration"].get(r["domain"])
            if cal is not None and r["bpb"] is not None:
                r["quality_model"] = quality.model_score(r["bpb"], *cal)
                w = cfg.quality.model_weight
                r["quality"] = round(w * r["quality_model"] + (1 - w) * r["quality_rule"], 4)
            else:
                r["quality_model"], r["quality"] = None, r["quality_rule"]
            kept.append(r)
        else:
            removed.append({**r, "text": r["original"], "duplicate_of": r.get("duplicate_of")})
    stats: dict[str, Any] = {"domains": {}, "examples": {}, "kept_bytes": 0}
    for r in kept:
        s = stats["domains"].setdefault(r["domain"], {"in": 0, "kept": 0, "removed": {}})
        s["in"] += 1
        s["kept"] += 1
        stats["kept_bytes"] += len(r["text"].encode("utf-8"))
    for r in removed:
        s = stats["domains"].setdefault(r["domain"], {"in": 0, "kept": 0, "removed": {}})
        s["in"] += 1
        s["removed"][r["reason"]] = s["removed"].get(r["reason"], 0) + 1
        ex = stats["examples"].setdefault(r["reason"], [])
        if len(ex) < cfg.report_examples:
            text = r["text"] or ""
            ex.append(
                {
                    "id": r["id"],
                    "domain": r["domain"],
                    "duplicate_of": r.get("duplicate_of"),
                    "text": text[:600] + ("…" if len(text) > 600 else ""),
                }
            )
    if kept:
        cols = {name: [r[name] for r in kept] for name in KEPT_SCHEMA.names}
        write_shard(Path(out) / f"shard-{index:05d}.arrow", pa.table(cols, schema=KEPT_SCHEMA))
    if removed:
        cols = {name: [r.get(name) for r in removed] for name in REMOVED_SCHEMA.names}
        path = Path(out) / REMOVED_DIR / f"removed-{index:05d}.arrow"
        write_shard(path, pa.table(cols, schema=REMOVED_SCHEMA))
    atomic_write_text(Path(work) / f"stats-{index:05d}.json", json.dumps(stats))
    return stats


def _write_unit_worker(index: int, work: str, out: str, merged: dict[str, Any]) -> dict:
    return write_unit(index, work, out, merged, _state["cfg"])


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
                workers, mp.get_context("spawn"), initializer=_init, initargs=(config,)
            )
        _init(config)
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
                _write_unit_worker
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
        manifest = _finish(config, files, units, staging, work, merged, started, workers, world)
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


def _finish(config, files, units, staging, work, merged, started, workers, world) -> dict:
    """Sum the units' counts, check the accounting, write report.html and the manifest."""
    domains: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict]] = {}
    kept_bytes = 0
    for u in range(len(units)):
        stats = json.loads((work / f"stats-{u:05d}.json").read_text())
        kept_bytes += stats["kept_bytes"]
        for d, s in stats["domains"].items():
            acc = domains.setdefault(d, {"in": 0, "kept": 0, "removed": 0, "removed_by_reason": {}})
            acc["in"] += s["in"]
            acc["kept"] += s["kept"]
            for reason, n in s["removed"].items():
                acc["removed"] += n
                acc["removed_by_reason"][reason] = acc["removed_by_reason"].get(reason, 0) + n
        for reason, items in stats["examples"].items():
            room = config.report_examples - len(examples.setdefault(reason, []))
            examples[reason] += items[: max(room, 0)]
    by_reason: dict[str, int] = {}
    for s in domains.values():
        s["removed_by_reason"] = dict(sorted(s["removed_by_reason"].items()))
        for reason, n in s["removed_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    n_in = merged["offsets"][-1]
    counts = {
        "in": n_in,
        "kept": sum(s["kept"] for s in domains.values()),
        "removed": sum(by_reason.values()),
        "removed_by_reason": dict(sorted(by_reason.items())),
        "kept_bytes": kept_bytes,
    }
    if counts["in"] != counts["kept"] + counts["removed"]:  # a bug, not a user error
        raise AssertionError(
            f"accounting: {counts['in']} in != {counts['kept']} + {counts['removed']}"
        )
    shutil.rmtree(work)
    atomic_write_text(staging / "report.html", render(counts, domains, examples))
    outputs = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    seconds = time.perf_counter() - started
    return write_manifest(
        staging,
        stage="data-clean",
        config=dataclasses.asdict(config),
        inputs=[Path(config.input)] if config.input else files,
        outputs=outputs,
        counts=counts,
        wall_time_s=seconds,
        domains=dict(sorted(domains.items())),
        throughput={
            "docs_per_s": round(n_in / seconds, 1),
            "workers": workers,
            "world_size": world,
        },
        quality_calibration=merged["calibration"],
    )
