"""`pangu tokenize`: document shards -> token shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import stages.tokenize as tokenize_stage
from pangu_cli import tokenizer as tk
from pangu_cli.corpus import document_inputs
from pangu_cli.errors import UserError
from pangu_cli.shards import DOCUMENT_SCHEMA, TOKEN_SCHEMA, read_shard, write_shard
from stages.tokenize import TokenizeConfig, run
from stages.tokenizer_build import TokenizerBuildConfig
from stages.tokenizer_build import run as build_tokenizer


def documents(rows: list[dict], schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small mixed corpus from the bundled shards: two plain shards and one that
    carries data-clean's quality and difficulty columns, plus an empty document."""
    root = tmp_path_factory.mktemp("corpus")
    docs = {p.stem.split("-")[0]: read_shard(p, "document") for p in document_inputs(None)}
    en = docs["en"].slice(0, 2).to_pylist()
    for d in en:
        d["text"] = d["text"][:30000]
    plain = en + docs["zh"].slice(0, 40).to_pylist() + docs["code"].slice(0, 3).to_pylist()
    plain.append({"id": "empty-1", "text": "", "source": "test", "domain": "en"})
    write_shard(root / "a.arrow", documents(plain))
    scored = docs["math"].slice(0, 150).to_pylist()
    for i, d in enumerate(scored):
        d["quality"], d["difficulty"] = 0.5 + i / 1000, (i % 10) / 10
    schema = DOCUMENT_SCHEMA.append(pa.field("quality", pa.float32()))
    schema = schema.append(pa.field("difficulty", pa.float32()))
    write_shard(root / "sub" / "b.arrow", documents(scored, schema))
    return root


@pytest.fixture(scope="module")
def tokenizer(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    build_tokenizer(TokenizerBuildConfig(input=str(corpus), vocab_size=600), out)
    return out


def config(corpus: Path, tokenizer: Path, **kw: object) -> TokenizeConfig:
    # Small shards so that the corpus is cut into several units of work.
    base = {"input": str(corpus), "tokenizer": str(tokenizer), "max_bytes_per_shard": 20000}
    return TokenizeConfig(**{**base, **kw})


def test_one_worker_and_two_workers_write_identical_shards(
    corpus: Path, tokenizer: Path, tmp_path: Path
) -> None:
    one = run(config(corpus, tokenizer, workers=1), tmp_path / "one")
    two = run(config(corpus, tokenizer, workers=2), tmp_path / "two")
    assert one["throughput"]["workers"] == 1 and two["throughput"]["workers"] == 2
    assert one["outputs"] == two["outputs"]
    shards = [n for n in one["outputs"] if n.endswith(".arrow")]
    assert len(shards) >= 3 and shards[0] == "shard-00000.arrow"
    for name in one["outputs"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one["counts"] == two["counts"] and one["domains"] == two["domains"]


def test_tokens_match_direct_encoding(corpus: Path, tokenizer: Path, tmp_path: Path) -> None:
    manifest = run(config(corpus, tokenizer, max_docs_per_shard=50, workers=1), tmp_path / "t")
    out = tmp_path / "t"
    table = pa.concat_tables(read_shard(p, "token") for p in sorted(out.glob("shard-*.arrow")))
    assert table.schema.equals(TOKEN_SCHEMA)
    docs = pa.concat_tables(
        read_shard(p, "document").select(["id", "text", "domain"]) for p in document_inputs(corpus)
    ).to_pylist()
    docs = [d for d in docs if d["text"]]  # empty documents are dropped
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [d["id"] for d in docs]  # input order kept
    tok = tk.load_tokenizer(tokenizer, plain_text=True)
    for row, doc in zip(rows, docs, strict=True):
        assert row["tokens"] == tok.encode(doc["text"], add_special_tokens=False).ids
        assert row["n_bytes"] == len(doc["text"].encode("utf-8"))
        assert row["domain"] == doc["domain"]
        assert tk.EOD_ID not in row["tokens"]
        if row["domain"] == "math":  # copied from the document shard
            assert 0.5 <= row["quality"] < 0.7 and 0.0 <= row["difficulty"] <= 0.9
        else:
            assert (row["quality"], row["difficulty"]) == (1.0, 0.0)
    for p in out.glob("shard-*.arrow"):  # max_docs_per_shard respected
        assert read_shard(p, "token").num_rows <= 50

    counts = manifest["counts"]
    assert counts["documents"] == len(rows) and counts["skipped_empty"] == 1
    assert counts["tokens"] == sum(len(r["tokens"]) for r in rows)
    assert counts["bytes"] == sum(r["n_bytes"] for r in rows)
    for domain, stats in manifest["domains"].items():
        mine = [r for r in rows if r["domain"] == domain]
        assert stats["documents"] == len(mine)
        assert stats["tokens"] == sum(len(r["tokens"]) for r in mine)
    assert set(manifest["domains"]) == {"en", "zh", "code", "math"}
    assert (out / "tokenizer.json").read_bytes() == (tokenizer / "tokenizer.json").read_bytes()
    assert manifest["tokenizer_fingerprint"] == tk.tokenizer_fingerprint(tokenizer)
    assert manifest["eod_id"] == tk.EOD_ID and manifest["throughput"]["tokens_per_s"] > 0
    assert json.loads((out / "manifest.json").read_text())["stage"] == "tokenize"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "pangu_cli.main", "tokenize", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_cli_bad_inputs_exit_2_with_one_line(tokenizer: Path, tmp_path: Path) -> None:
    tok, out = str(tokenizer), str(tmp_path / "out")
    result = cli("--input", str(tmp_path / "missing"), "--tokenizer", tok, "--out", out)
    assert_one_line_error(result, "missing: no such file")

    (tmp_path / "none").mkdir()
    write_shard(tmp_path / "none" / "a.arrow", documents([]))
    result = cli("--input", str(tmp_path / "none"), "--tokenizer", tok, "--out", out)
    assert_one_line_error(result, "nothing to tokenize")

    (tmp_path / "empty").mkdir()
    write_shard(
        tmp_path / "empty" / "a.arrow", documents([{"id": "1", "text": "", "domain": "en"}])
    )
    result = cli("--input", str(tmp_path / "empty"), "--tokenizer", tok, "--out", out)
    assert_one_line_error(result, "all 1 documents are empty")

    (tmp_path / "corrupt").mkdir()
    bad = tmp_path / "corrupt" / "bad.arrow"
    bad.write_bytes(os.urandom(4096))
    result = cli("--input", str(tmp_path / "corrupt"), "--tokenizer", tok, "--out", out)
    assert_one_line_error(result, str(bad), "not a readable Arrow IPC shard")

    wrong = tmp_path / "wrong.arrow"
    write_shard(wrong, pa.table({"id": ["a"], "body": ["no text column"], "domain": ["en"]}))
    result = cli("--input", str(wrong), "--tokenizer", tok, "--out", out, "--workers", "2")
    assert_one_line_error(result, str(wrong), "missing column 'text'")

    result = cli("--input", str(wrong), "--tokenizer", str(tmp_path / "nope"), "--out", out)
    assert_one_line_error(result, "no such tokenizer file")
    result = cli("--input", str(wrong), "--out", out)
    assert_one_line_error(result, "--tokenizer")
    result = cli("--tokenizer", tok, "--out", out, "no_such_key=1")
    assert_one_line_error(result, "unknown key 'no_such_key'")
    assert not (tmp_path / "out").exists()


def test_worker_errors_reach_the_main_process_as_user_errors(
    tokenizer: Path, tmp_path: Path
) -> None:
    units = [[(str(tmp_path / f"gone-{i}.arrow"), 0, 0, 1)] for i in range(2)]
    totals = {"bytes": 1, "nonempty": 1}
    with pytest.raises(UserError, match="gone-.\\.arrow: record batch 0 is unreadable"):
        tokenize_stage._run_units(
            None, tk.tokenizer_file(tokenizer), units, tmp_path, TokenizeConfig(), 2, totals
        )


def test_cli_success_and_refusal_to_overwrite(
    corpus: Path, tokenizer: Path, tmp_path: Path
) -> None:
    args = ["--input", str(corpus), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "o")]
    result = cli(*args, "--workers", "1", "max_docs_per_shard=100")
    assert result.returncode == 0, result.stderr
    assert "bytes/token" in result.stdout and "tokens/s" in result.stdout
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["config"]["workers"] == 1
    assert_one_line_error(cli(*args), "--force")
    assert cli(*args, "--force", "--workers", "1").returncode == 0


def test_interrupted_run_leaves_no_partial_output(
    corpus: Path, tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tokenize_stage, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        run(config(corpus, tokenizer, workers=1), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the output nor a staging directory

    monkeypatch.undo()
    first = run(config(corpus, tokenizer, workers=1), tmp_path / "out")
    monkeypatch.setattr(tokenize_stage, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        run(config(corpus, tokenizer, workers=1), tmp_path / "out", force=True)
    # The previous complete output is still there, whole.
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == first["counts"]
