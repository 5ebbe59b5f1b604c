"""data-clean's inputs: Arrow or Parquet document shards, .txt files (one document per
file, or split on a separator) and JSON lines (.jsonl, .jsonl.gz, .jsonl.zst).

The work is cut into units before any worker starts: a unit is a row range of one
file (at most `docs_per_unit` documents and `bytes_per_unit` bytes of text), or a whole
text/JSON-lines file. Units depend only on the input, never on the number of
processes, which is what makes every worker and node count give the same output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pangu_cli.corpus import document_inputs
from pangu_cli.errors import UserError
from pangu_cli.shards import REMOVED_DIR

SUFFIXES = (".arrow", ".parquet", ".txt", ".jsonl", ".jsonl.gz", ".jsonl.zst")
STRING_TYPES = (pa.string(), pa.large_string())


@dataclass
class InputConfig:
    text_field: str = "text"
    id_field: str = "id"
    domain_field: str = "domain"
    default_domain: str = "web"  # for inputs without a domain column or field
    txt_separator: str | None = None  # split .txt files on this line (e.g. "%"); None: 1 doc
    docs_per_unit: int = 1024
    bytes_per_unit: int = 4 << 20


@dataclass
class Unit:
    path: str
    kind: str  # arrow | parquet | txt | jsonl
    batches: list[tuple[int, int, int]] | None = None  # (batch or row group, start, end)


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix.split(".")[1]
    return None


def input_files(input: str | None) -> list[Path]:
    """Files to clean: the bundled corpus, one file, or a directory's supported files."""
    if input is None or str(input) == "":
        return document_inputs(None)
    path = Path(input)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        if kind_of(path) is None:
            raise UserError(f"{path}: unsupported input (expected {', '.join(SUFFIXES)})")
        return [path]
    # removed/: a data-clean output's removed documents, never input (as list_shards)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and kind_of(p)
        and REMOVED_DIR not in p.relative_to(path).parts[:-1]
    )
    if not files:
        raise UserError(f"{path}: no input files ({', '.join(SUFFIXES)})")
    return files


def _check_columns(schema: pa.Schema, path: Path, cfg: InputConfig) -> None:
    i = schema.get_field_index(cfg.text_field)
    if i < 0:
        raise UserError(f"{path}: missing column '{cfg.text_field}' (set text_field)")
    if schema.field(i).type not in STRING_TYPES:
        raise UserError(
            f"{path}: column '{cfg.text_field}' has type {schema.field(i).type}, expected string"
        )


def _cut(path: Path, kind: str, parts: list[tuple[int, pa.Array]], cfg: InputConfig) -> list[Unit]:
    """Row ranges of at most docs_per_unit documents and bytes_per_unit bytes."""
    units: list[Unit] = []
    current: list[tuple[int, int, int]] = []
    docs = nbytes = 0
    for b, text in parts:
        lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False).tolist()
        start = 0
        for row, size in enumerate(lengths):
            if docs and (docs >= cfg.docs_per_unit or nbytes + size > cfg.bytes_per_unit):
                if row > start:
                    current.append((b, start, row))
                units.append(Unit(str(path), kind, current))
                current, docs, nbytes, start = [], 0, 0, row
            docs, nbytes = docs + 1, nbytes + size
        if start < len(lengths):
            current.append((b, start, len(lengths)))
    if current:
        units.append(Unit(str(path), kind, current))
    return units


def plan_units(files: list[Path], cfg: InputConfig) -> list[Unit]:
    """Check every input and cut it into units (main process, before any worker)."""
    if cfg.docs_per_unit < 1 or cfg.bytes_per_unit < 1:
        raise UserError("config: docs_per_unit and bytes_per_unit must be >= 1")
    units: list[Unit] = []
    for path in files:
        kind = kind_of(path)
        if kind == "arrow":
            reader = _open_arrow(path)
            _check_columns(reader.schema, path, cfg)
            parts = [
                (b, reader.get_batch(b).column(cfg.text_field))
                for b in range(reader.num_record_batches)
            ]
            units += _cut(path, kind, parts, cfg)
        elif kind == "parquet":
            pf = _open_parquet(path)
            _check_columns(pf.schema_arrow, path, cfg)
            parts = [
                (g, pf.read_row_group(g, columns=[cfg.text_field]).column(0).combine_chunks())
                for g in range(pf.num_row_groups)
            ]
            units += _cut(path, kind, parts, cfg)
        else:
            units.append(Unit(str(path), kind))
    return units


def _open_arrow(path: Path) -> pa.ipc.RecordBatchFileReader:
    try:
        return pa.ipc.open_file(pa.memory_map(str(path), "r"))
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Arrow IPC file ({_first(e)})") from None


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({_first(e)})") from None


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _column(table: pa.Table | pa.RecordBatch, name: str, default: list[str]) -> list[str]:
    i = table.schema.get_field_index(name)
    if i < 0:
        return default
    values = table.column(i).cast(pa.string()).to_pylist()
    return [v if v is not None else d for v, d in zip(values, default, strict=True)]


def read_unit(unit: Unit, cfg: InputConfig) -> dict[str, list[str]]:
    """The unit's documents as columns id, text, source, domain."""
    path = Path(unit.path)
    if unit.kind in ("arrow", "parquet"):
        cols: dict[str, list[str]] = {"id": [], "text": [], "source": [], "domain": []}
        if unit.kind == "arrow":
            reader = _open_arrow(path)
        else:
            pf = _open_parquet(path)
        for b, start, end in unit.batches or []:
            try:
                part = reader.get_batch(b) if unit.kind == "arrow" else pf.read_row_group(b)
            except (pa.ArrowInvalid, OSError) as e:
                raise UserError(f"{path}: part {b} is unreadable ({_first(e)})") from None
            part = part.slice(start, end - start)
            n = part.num_rows
            rows = [f"{path.name}:{b}:{start + r}" for r in range(n)]
            cols["id"] += _column(part, cfg.id_field, rows)
            cols["text"] += [t or "" for t in part.column(cfg.text_field).to_pylist()]
            cols["source"] += _column(part, "source", [path.name] * n)
            cols["domain"] += _column(part, cfg.domain_field, [cfg.default_domain] * n)
        return cols
    if unit.kind == "txt":
        return _read_txt(path, cfg)
    return _read_jsonl(path, cfg)


def _read_txt(path: Path, cfg: InputConfig) -> dict[str, list[str]]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    if cfg.txt_separator:
        lines = text.split("\n")
        docs, current = [], []
        for line in lines:
            if line.strip() == cfg.txt_separator:
                docs.append("\n".join(current))
                current = []
            else:
                current.append(line)
        docs.append("\n".join(current))
        docs = [d for d in docs if d.strip()]
    else:
        docs = [text]
    n = len(docs)
    ids = [path.name if n == 1 and not cfg.txt_separator else f"{path.name}#{i}" for i in range(n)]
    return {"id": ids, "text": docs, "source": [path.name] * n, "domain": [cfg.default_domain] * n}


def _read_jsonl(path: Path, cfg: InputConfig) -> dict[str, list[str]]:
    cols: dict[str, list[str]] = {"id": [], "text": [], "source": [], "domain": []}
    try:
        stream = pa.input_stream(str(path), compression="detect")
        data = stream.read()
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: cannot read ({_first(e)})") from None
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: line {n}: not valid JSON ({_first(e)})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}: line {n}: expected a JSON object")
        text = record.get(cfg.text_field)
        if not isinstance(text, str):
            raise UserError(f"{path}: line {n}: field '{cfg.text_field}' missing or not a string")
        cols["id"].append(str(record.get(cfg.id_field, f"{path.name}:{n}")))
        cols["text"].append(text)
        cols["source"].append(str(record.get("source", path.name)))
        cols["domain"].append(str(record.get(cfg.domain_field) or cfg.default_domain))
    return cols


def validate_text_inputs(units: list[Unit], cfg: InputConfig) -> None:
    """Parse the JSON-lines files up front so a bad line fails before any output exists."""
    for unit in units:
        if unit.kind == "jsonl":
            _read_jsonl(Path(unit.path), cfg)
