"""data-clean's input paths (Parquet, .jsonl.zst, .txt split on a separator), Slurm
ranks, and the chain data-clean -> tokenizer-build -> tokenize -> packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pangu_cli.cleaning import normalize
from pangu_cli.corpus import bundled_corpus_dir
from pangu_cli.errors import UserError
from pangu_cli.packing import load_token_corpus
from pangu_cli.shards import DOCUMENT_SCHEMA, list_shards, read_shard, write_shard
from stages import tokenize, tokenizer_build
from stages.data_clean import DataCleanConfig, launcher_rank, run


def bundled(domain: str, n: int) -> pa.Table:
    table = read_shard(bundled_corpus_dir() / f"{domain}-00000.arrow", "document")
    return table.slice(0, n).select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)


def kept_rows(out: Path) -> list[dict]:
    return [
        r for p in sorted(out.glob("shard-*.arrow")) for r in read_shard(p, "document").to_pylist()
    ]


def accounting(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["in"] == counts["kept"] + counts["removed"]
    assert counts["kept"] == len(kept_rows(out))
    return manifest


def test_parquet_matches_arrow(tmp_path: Path) -> None:
    table = pa.concat_tables([bundled("zh", 60), bundled("math", 60)])
    write_shard(tmp_path / "a" / "docs.arrow", table)
    (tmp_path / "p").mkdir()
    pq.write_table(table, tmp_path / "p" / "docs.parquet", row_group_size=25)  # 5 row groups
    cfg = {"workers": 1}
    run(DataCleanConfig(input=str(tmp_path / "a"), **cfg), tmp_path / "out-a")
    run(DataCleanConfig(input=str(tmp_path / "p"), **cfg), tmp_path / "out-p")
    a, p = accounting(tmp_path / "out-a"), accounting(tmp_path / "out-p")
    assert a["counts"] == p["counts"] and p["counts"]["in"] == 120
    key = lambda r: (r["id"], r["text"], r["domain"], r["quality"])  # noqa: E731
    assert sorted(map(key, kept_rows(tmp_path / "out-a"))) == sorted(
        map(key, kept_rows(tmp_path / "out-p"))
    )


def test_jsonl_zst(tmp_path: Path) -> None:
    rows = bundled("math", 40).to_pylist() + bundled("zh", 20).to_pylist()
    path = tmp_path / "docs.jsonl.zst"
    with pa.CompressedOutputStream(str(path), "zstd") as f:
        for r in rows:
            record = {"content": r["text"], "uid": r["id"], "domain": r["domain"]}
            f.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
    assert path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # really zstd
    overrides = {"text_field": "content", "id_field": "uid"}
    cfg = DataCleanConfig(input=str(path), workers=1)
    cfg.inputs.text_field, cfg.inputs.id_field = overrides["text_field"], overrides["id_field"]
    manifest = run(cfg, tmp_path / "out")
    accounting(tmp_path / "out")
    assert manifest["domains"]["math"]["in"] == 40 and manifest["domains"]["zh"]["in"] == 20
    kept = {r["id"]: r for r in kept_rows(tmp_path / "out")}
    original = {r["id"]: r for r in rows}
    assert kept and set(kept) <= set(original)  # ids from the uid field
    for doc_id, r in kept.items():
        assert r["domain"] == original[doc_id]["domain"]


def test_txt_split_on_separator(tmp_path: Path) -> None:
    """The fortunes-zh format: records between `%` lines, ANSI colour codes around titles."""
    poems = [r["text"] for r in bundled("zh", 50).to_pylist()]
    body = "".join(
        p.rstrip("\n") + ("\n%\n" if k % 7 else "\n%    \n") for k, p in enumerate(poems)
    )
    path = tmp_path / "tang.txt"
    path.write_text(body)
    cfg = DataCleanConfig(input=str(path), workers=1)
    cfg.inputs.txt_separator, cfg.inputs.default_domain = "%", "zh"
    manifest = run(cfg, tmp_path / "out")
    accounting(tmp_path / "out")
    assert manifest["counts"]["in"] == 50 and manifest["domains"]["zh"]["kept"] == 50
    lines = lambda t: [s.strip() for s in t.splitlines() if s.strip()]  # noqa: E731
    kept = {r["id"]: r["text"] for r in kept_rows(tmp_path / "out")}
    for k, poem in enumerate(poems):
        text = kept[f"tang.txt#{k}"]
        assert "\x1b" not in text and "%" not in text
        assert lines(text) == lines(normalize.strip_escapes(poem))
    # without a separator the file is one document
    run(DataCleanConfig(input=str(path), workers=1), tmp_path / "one")
    assert json.loads((tmp_path / "one" / "manifest.json").read_text())["counts"]["in"] == 1


def test_slurm_and_torchrun_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert launcher_rank() == (0, 1)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert launcher_rank() == (3, 4)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launcher_rank() == (1, 2)  # torchrun's variables win inside a Slurm job
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(UserError, match="outside"):
        launcher_rank()


def test_clean_then_tokenize_then_pack(tmp_path: Path) -> None:
    table = pa.concat_tables([bundled("zh", 80), bundled("math", 150), bundled("code", 4)])
    copies = bundled("math", 10)  # exact duplicates under new ids: dedup removes them
    copies = copies.set_column(0, "id", pa.array([f"copy-{i}" for i in range(10)]))
    write_shard(tmp_path / "raw" / "docs.arrow", pa.concat_tables([table, copies]))
    clean = tmp_path / "clean"
    manifest = run(DataCleanConfig(input=str(tmp_path / "raw"), workers=1), clean)
    assert manifest["counts"]["removed"] > 0 and list((clean / "removed").glob("*.arrow"))
    # removed/ holds ordinary shards, skipped when the directory is read as input
    assert all("removed" not in p.parts for p in list_shards(clean))
    tok_cfg = tokenizer_build.TokenizerBuildConfig(
        input=str(clean), vocab_size=600, mode="domain_merged", compare=False
    )
    tok_manifest = tokenizer_build.run(tok_cfg, tmp_path / "tok")
    assert tok_manifest["counts"]["documents"] == manifest["counts"]["kept"]
    tokens = tmp_path / "tokens"
    tokenize.run(
        tokenize.TokenizeConfig(input=str(clean), tokenizer=str(tmp_path / "tok"), workers=1),
        tokens,
    )
    corpus = load_token_corpus(tokens)
    kept = {r["id"]: r for r in kept_rows(clean)}
    assert sorted(corpus.ids) == sorted(kept)
    assert set(corpus.domain_names) == {"zh", "math", "code"}
    # quality and difficulty travel from data-clean into the token shards
    rows = [
        r for p in sorted(tokens.glob("shard-*.arrow")) for r in read_shard(p, "token").to_pylist()
    ]
    for r in rows:
        assert r["quality"] == pytest.approx(kept[r["id"]]["quality"])
        assert r["difficulty"] == pytest.approx(kept[r["id"]]["difficulty"])
        assert r["n_bytes"] == len(kept[r["id"]]["text"].encode())
    assert int(np.diff(corpus.offsets).sum()) == len(corpus.tokens) > 0
