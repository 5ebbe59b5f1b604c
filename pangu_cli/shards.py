"""Arrow shard formats shared by the stages (DESIGN.md section 4).

Document shards: id, text, source, domain (data-clean adds lang, quality, difficulty).
Token shards: one row per document, tokens list<uint32> plus domain, quality, difficulty.
Both are Arrow IPC files with zstd-compressed buffers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pangu_cli.artifacts import fsync_dir
from pangu_cli.errors import UserError

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.large_string()),
        ("source", pa.string()),
        ("domain", pa.string()),
    ]
)

REMOVED_DIR = "removed"  # data-clean's removed documents, beside the kept shards

TOKEN_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("tokens", pa.list_(pa.uint32())),
        ("domain", pa.string()),
        ("quality", pa.float32()),
        ("difficulty", pa.float32()),
        ("n_bytes", pa.int64()),
    ]
)

# Columns a reader needs, by shard kind, and the Arrow types it accepts for each.
REQUIRED = {
    "document": {
        "id": (pa.string(), pa.large_string()),
        "text": (pa.string(), pa.large_string()),
        "domain": (pa.string(), pa.large_string()),
    },
    "token": {
        "tokens": (pa.list_(pa.uint32()), pa.large_list(pa.uint32())),
        "domain": (pa.string(), pa.large_string()),
    },
}


def write_shard(path: str | Path, table: pa.Table) -> None:
    """Write an Arrow IPC file (zstd) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(tmp), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=4096)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def list_shards(path: str | Path, pattern: str = "*.arrow") -> list[Path]:
    """The shard files at `path`: the file itself, or a directory's `pattern` files (recursive).

    A `removed/` folder is skipped: data-clean keeps the documents it removed there, so its
    output directory reads as the kept documents only.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob(pattern)
        if p.is_file()
        and not p.name.startswith(".")
        and REMOVED_DIR not in p.relative_to(path).parts[:-1]
    )
    if not files:
        raise UserError(f"{path}: no {pattern} shards found")
    return files


def read_shard(path: str | Path, kind: str) -> pa.Table:
    """Read a whole shard, checking it is Arrow IPC and has the columns `kind` requires."""
    path = Path(path)
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise UserError(f"{path}: not a readable Arrow IPC shard ({_first_line(e)})") from None
    check_schema(table.schema, kind, path)
    return table


def iter_shard_batches(path: str | Path, kind: str) -> Iterator[pa.RecordBatch]:
    """Stream a shard's record batches after checking its schema."""
    path = Path(path)
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise UserError(f"{path}: not a readable Arrow IPC shard ({_first_line(e)})") from None
    check_schema(reader.schema, kind, path)
    for i in range(reader.num_record_batches):
        try:
            yield reader.get_batch(i)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path}: record batch {i} is corrupt ({_first_line(e)})") from None


def check_schema(schema: pa.Schema, kind: str, path: str | Path) -> None:
    for name, types in REQUIRED[kind].items():
        index = schema.get_field_index(name)
        if index < 0:
            raise UserError(f"{path}: not a {kind} shard: missing column '{name}'")
        if schema.field(index).type not in types:
            wanted = " or ".join(str(t) for t in types)
            raise UserError(
                f"{path}: column '{name}' has type {schema.field(index).type}, expected {wanted}"
            )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
