"""Shared fixtures: a small tokenized corpus cut from the bundled one, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pangu_cli.corpus import document_inputs
from pangu_cli.shards import read_shard, write_shard

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pangu(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run the `pangu` command in a fresh process, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "pangu_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        **kw,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"pangu {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def wait_for_logged_steps(proc: subprocess.Popen, run: Path, lines: int, timeout_s: float) -> None:
    """Return once `run`'s metrics.jsonl holds `lines` training lines (or the process ends)."""
    deadline = time.time() + timeout_s
    path = run / "metrics.jsonl"
    while proc.poll() is None and time.time() < deadline:
        if path.exists() and sum('"loss"' in x for x in path.read_text().splitlines()) >= lines:
            return
        time.sleep(0.005)


@pytest.fixture(scope="session")
def small_documents(tmp_path_factory) -> Path:
    """A few hundred KB of the bundled corpus, every domain, as one document shard."""
    out = tmp_path_factory.mktemp("docs") / "docs.arrow"
    tables = []
    for shard in document_inputs(None):
        table = read_shard(shard, "document").select(["id", "text", "source", "domain"])
        table = table.slice(0, 40)
        texts = [t[:6000] for t in table.column("text").to_pylist()]
        tables.append(table.set_column(1, "text", pa.array(texts, pa.large_string())))
    write_shard(out, pa.concat_tables(tables))
    return out


@pytest.fixture(scope="session")
def tiny_tokens(tmp_path_factory, small_documents) -> Path:
    """tokenizer-build (vocab 512) + tokenize of `small_documents`."""
    root = tmp_path_factory.mktemp("tiny")
    pangu("tokenizer-build", "--input", small_documents, "--out", root / "tok", "--vocab-size", 512)
    pangu(
        "tokenize",
        "--input",
        small_documents,
        "--tokenizer",
        root / "tok",
        "--out",
        root / "tokens",
        "--workers",
        1,
    )
    return root / "tokens"


def pytest_collection_modifyitems(config, items):
    """PANGU_FAST=1 skips the slow (multi-process) tests for a quick local loop; CI runs all."""
    if os.environ.get("PANGU_FAST") != "1":
        return
    skip = pytest.mark.skip(reason="PANGU_FAST=1: slow tests skipped")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
