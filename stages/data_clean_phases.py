"""The three phases of `pangu data-clean` (stages/data_clean.py runs them):

1. clean: each unit's documents, one at a time (normalise, language, rules, PII,
   features, difficulty, MinHash signature, model bits per byte), to a work file;
2. global merge: every unit's band keys -> duplicate clusters, and the per-domain
   calibration of the model score; a pure function of the work files;
3. write: each unit's kept and removed shards, and its counts and report examples.

Phases 1 and 3 run in worker processes; their per-process state (MinHash permutations,
the quality model) is set up once by init_process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pangu_cli.artifacts import atomic_write_text
from pangu_cli.cleaning import dedup, difficulty, filters, inputs, langid, normalize, pii, quality
from pangu_cli.cleaning.words import STOP_WORDS, is_cjk, words_of
from pangu_cli.shards import DOCUMENT_SCHEMA, REMOVED_DIR, write_shard

if TYPE_CHECKING:  # a type only: stages.data_clean imports this module
    from stages.data_clean import DataCleanConfig

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


# ------------------------------------------------------------------ phase 1: clean

_state: dict[str, Any] = {}


def init_process(cfg: DataCleanConfig) -> None:
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
    cjk = is_cjk(out["lang"])
    text, reason = filters.apply_filters(text, domain, out["lang"], cfg.filters)
    if reason:
        return {**out, "reason": reason, "text": text}
    if cfg.pii.enabled and domain not in cfg.pii.skip_domains:
        text, stats["pii"] = pii.scrub(text, cfg.pii)
    words = words_of(text, cjk)
    stop = STOP_WORDS.get(out["lang"], STOP_WORDS["zh" if cjk else "en"])
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


def write_unit_in_worker(index: int, work: str, out: str, merged: dict[str, Any]) -> dict:
    """write_unit in a pool process, with the config init_process left there."""
    return write_unit(index, work, out, merged, _state["cfg"])
