"""The bundled corpus: small document shards shipped in the package (en, zh, code, math).

Stages that read documents take `--input`; without it they read these shards, so the
whole pipeline runs on a fresh install with no downloads. See data/corpus/README.md
for sources and licences; scripts/build_corpus.py rebuilds them.
"""

from __future__ import annotations

from pathlib import Path

from pangu_cli.errors import UserError
from pangu_cli.shards import list_shards

DOMAINS = ("en", "zh", "code", "math")


def bundled_corpus_dir() -> Path:
    """The directory of the shipped document shards."""
    return Path(__file__).parent / "data" / "corpus"


def document_inputs(input: str | Path | None) -> list[Path]:
    """Document shard files to read: `input` (a shard or a directory of them), or the bundle."""
    if input is None or str(input) == "":
        directory = bundled_corpus_dir()
        shards = sorted(directory.glob("*.arrow"))
        if not shards:
            raise UserError(
                f"{directory}: the bundled corpus is missing from this installation; "
                "pass --input with document shards"
            )
        return shards
    return list_shards(input)
