"""`pangu tokenize`: document shards -> token shards, the input of every training stage.

One row per document: its tokens (no end-of-document token; the loader appends one
when it packs sequences, so one tokenized corpus serves 4K, 8K and 32K phases), its
domain, quality and difficulty (sampling weights and curriculum order) and its UTF-8
byte count (for bits per byte). Work is cut into units before any worker starts, one
unit per output shard, so the output is the same bytes whatever the worker count.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from pangu_cli import tokenizer as tk
from pangu_cli.artifacts import StagedOutput, write_manifest
from pangu_cli.corpus import document_inputs
from pangu_cli.errors import UserError
from pangu_cli.shards import TOKEN_SCHEMA, iter_shard_batches, write_shard


@dataclass
class TokenizeConfig:
    input: str | None = None  # document shards (file or directory); None = bundled corpus
    tokenizer: str | None = None  # a tokenizer-build output directory or a tokenizer.json
    workers: int | None = None  # worker processes; None = os.cpu_count()
    max_docs_per_shard: int = 65536  # documents per output shard
    max_bytes_per_shard: int = 16 << 20  # text bytes per output shard (bounds its tokens too)
    encode_batch: int = 256  # documents per encode call (and per progress update)


# A unit: (shard file, record batch, first row, end row) segments, one output shard.
Segment = tuple[str, int, int, int]


def plan_units(shards: list[Path], config: TokenizeConfig) -> tuple[list[list[Segment]], dict]:
    """Cut the documents, in order, into units of at most max_docs / max_bytes each.

    This pass also checks every shard's schema and readability, in the main process,
    before any worker starts.
    """
    units: list[list[Segment]] = []
    current: list[Segment] = []
    docs = nbytes = nonempty = total_docs = total_bytes = 0
    for shard in shards:
        for b, batch in enumerate(iter_shard_batches(shard, "document")):
            lengths = pc.fill_null(pc.binary_length(batch.column("text")), 0).to_numpy()
            start = 0
            for row, size in enumerate(lengths.tolist()):
                full = docs >= config.max_docs_per_shard
                if docs and (full or nbytes + size > config.max_bytes_per_shard):
                    if row > start:
                        current.append((str(shard), b, start, row))
                    units.append(current)
                    current, docs, nbytes, start = [], 0, 0, row
                docs, nbytes = docs + 1, nbytes + size
                nonempty += size > 0
            total_docs += len(lengths)
            total_bytes += int(lengths.sum())
            if start < len(lengths):
                current.append((str(shard), b, start, len(lengths)))
    if current:
        units.append(current)
    return units, {"documents": total_docs, "nonempty": nonempty, "bytes": total_bytes}


_tok = None  # the worker process's tokenizer, loaded once from file
_queue = None  # progress reports to the main process: (documents, bytes)


def _init_worker(tokenizer_path: str, queue: Any) -> None:
    global _tok, _queue
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _tok, _queue = tk.load_tokenizer(tokenizer_path, plain_text=True), queue


def _worker_unit(index: int, segments: list[Segment], out_dir: str, encode_batch: int) -> dict:
    return tokenize_unit(_tok, index, segments, out_dir, encode_batch, _queue.put)


def tokenize_unit(
    tok: Any,
    index: int,
    segments: list[Segment],
    out_dir: str,
    encode_batch: int,
    report: Callable[[tuple[int, int]], None],
) -> dict[str, Any]:
    """Tokenize one unit and write it as `part-<index>.arrow`; return per-domain counts."""
    columns: dict[str, list] = {name: [] for name in TOKEN_SCHEMA.names}
    readers: dict[str, pa.ipc.RecordBatchFileReader] = {}
    skipped = 0
    for path, b, start, end in segments:
        try:  # the planning pass read every batch already; this guards against changes since
            if path not in readers:
                readers[path] = pa.ipc.open_file(pa.memory_map(path, "r"))
            batch = readers[path].get_batch(b).slice(start, end - start)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path}: record batch {b} is unreadable ({e})") from None
        text = pc.fill_null(batch.column("text"), "")
        n_bytes = pc.binary_length(text).cast(pa.int64())
        keep = pc.greater(n_bytes, 0)  # empty documents would only add a lone EOD
        skipped += len(text) - (pc.sum(keep).as_py() or 0)
        for name, default in (("quality", 1.0), ("difficulty", 0.0)):
            index_of = batch.schema.get_field_index(name)
            if index_of >= 0:
                try:
                    col = pc.fill_null(batch.column(index_of).cast(pa.float32()), default)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    kind = batch.schema.field(index_of).type
                    raise UserError(
                        f"{path}: column '{name}' has type {kind}, expected a number"
                    ) from None
            else:
                col = pa.array(np.full(len(text), default, np.float32))
            columns[name].append(pc.filter(col, keep))
        for name in ("id", "domain", "n_bytes"):
            col = n_bytes if name == "n_bytes" else batch.column(name)
            columns[name].append(pc.filter(col, keep).cast(TOKEN_SCHEMA.field(name).type))
        texts = pc.filter(text, keep).to_pylist()
        for i in range(0, len(texts), encode_batch):
            chunk = texts[i : i + encode_batch]
            columns["tokens"].append(_encode(tok, chunk))
            report((len(chunk), sum(len(t.encode("utf-8")) for t in chunk)))
    table = pa.table(
        {k: pa.chunked_array(v, TOKEN_SCHEMA.field(k).type) for k, v in columns.items()},
        schema=TOKEN_SCHEMA,
    )
    stats: dict[str, Any] = {"rows": table.num_rows, "skipped_empty": skipped, "domains": {}}
    if table.num_rows:
        table = table.combine_chunks()
        write_shard(Path(out_dir) / f"part-{index:05d}.arrow", table)
        lengths = pc.list_value_length(table.column("tokens")).to_numpy()
        domains = table.column("domain").to_numpy(zero_copy_only=False)
        sizes = table.column("n_bytes").to_numpy()
        for d in sorted(set(domains.tolist())):
            mask = domains == d
            stats["domains"][d] = {
                "documents": int(mask.sum()),
                "tokens": int(lengths[mask].sum()),
                "bytes": int(sizes[mask].sum()),
            }
    return stats


def _encode(tok: Any, texts: list[str]) -> pa.ListArray:
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: no offsets
    ids = [e.ids for e in encode(texts, add_special_tokens=False)]
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum([len(x) for x in ids], out=offsets[1:])
    values = np.fromiter((t for x in ids for t in x), dtype=np.uint32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32()))


def run(config: TokenizeConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Tokenize `config.input` with `config.tokenizer` into token shards under `out`."""
    start = time.perf_counter()
    if not config.tokenizer:
        raise UserError("no tokenizer: pass --tokenizer DIR (a `pangu tokenizer-build` output)")
    if config.max_docs_per_shard < 1 or config.max_bytes_per_shard < 1 or config.encode_batch < 1:
        raise UserError(
            "config: max_docs_per_shard, max_bytes_per_shard and encode_batch must be >= 1"
        )
    staged = StagedOutput(out, force)  # refuses a complete output before any work
    tok_file = tk.tokenizer_file(config.tokenizer)
    tok = tk.load_tokenizer(tok_file, plain_text=True)  # checks it before workers start
    shards = document_inputs(config.input)
    units, totals = plan_units(shards, config)
    where = config.input or "bundled corpus"
    if totals["nonempty"] == 0:
        n = totals["documents"]
        why = f"all {n} documents are empty" if n else "the shards hold no documents"
        raise UserError(f"{where}: nothing to tokenize: {why}")
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(units)))

    with staged as staging:
        results = _run_units(tok, tok_file, units, staging.path, config, workers, totals)
        parts = sorted(staging.path.glob("part-*.arrow"))
        outputs = []
        for k, part in enumerate(parts):  # contiguous names whatever units were empty
            name = f"shard-{k:05d}.arrow"
            os.replace(part, staging.path / name)
            outputs.append(name)
        shutil.copyfile(tok_file, staging.path / tk.TOKENIZER_FILE)
        outputs.append(tk.TOKENIZER_FILE)
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            if (tok_file.parent / extra).is_file():  # lets transformers load the output dir
                shutil.copyfile(tok_file.parent / extra, staging.path / extra)
                outputs.append(extra)
        domains: dict[str, dict[str, int]] = {}
        for r in results:
            for d, s in r["domains"].items():
                acc = domains.setdefault(d, {"documents": 0, "tokens": 0, "bytes": 0})
                for key in acc:
                    acc[key] += s[key]
        for s in domains.values():
            s["bytes_per_token"] = round(s["bytes"] / max(s["tokens"], 1), 4)
        tokens = sum(s["tokens"] for s in domains.values())
        nbytes = sum(s["bytes"] for s in domains.values())
        seconds = time.perf_counter() - start
        manifest = write_manifest(
            staging.path,
            stage="tokenize",
            config=dataclasses.asdict(config),
            inputs=[*([Path(config.input)] if config.input else shards), tok_file],
            outputs=outputs,
            counts={
                "documents": sum(r["rows"] for r in results),
                "skipped_empty": sum(r["skipped_empty"] for r in results),
                "tokens": tokens,
                "bytes": nbytes,
                "shards": len(parts),
            },
            wall_time_s=seconds,
            tokenizer_fingerprint=tk.tokenizer_fingerprint(tok_file),
            vocab_size=tk.vocab_size(tok),
            eod_id=tk.eod_id(tok),
            domains=dict(sorted(domains.items())),
            throughput={
                "tokens_per_s": round(tokens / seconds, 1),
                "mb_per_s": round(nbytes / seconds / 1e6, 3),
                "workers": workers,
                "seconds": round(seconds, 3),
            },
        )
        staging.commit()
    return manifest


def _run_units(tok, tok_file, units, out_dir, config, workers, totals) -> list[dict]:
    """Tokenize every unit, in this process or in `workers` spawned processes."""
    console = Console(stderr=True)
    columns = [
        TextColumn("tokenize"),
        BarColumn(),
        TextColumn("{task.fields[docs]}/{task.fields[total_docs]} docs"),
        DownloadColumn(),
        TransferSpeedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(
            "tokenize", total=totals["bytes"], docs=0, total_docs=totals["nonempty"]
        )

        def report(item: tuple[int, int]) -> None:
            docs = progress.tasks[0].fields["docs"] + item[0]
            progress.update(task, advance=item[1], docs=docs)

        args = [(i, unit, str(out_dir), config.encode_batch) for i, unit in enumerate(units)]
        if workers == 1:
            return [tokenize_unit(tok, *a, report) for a in args]
        # spawn: a fresh interpreter per worker; tokenizers' threads do not survive fork.
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        results: dict[int, dict] = {}
        pool = ProcessPoolExecutor(
            workers, ctx, initializer=_init_worker, initargs=(str(tok_file), queue)
        )
        try:
            pending = {pool.submit(_worker_unit, *a): a[0] for a in args}
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(queue, report)
                for future in done:
                    results[pending.pop(future)] = future.result()  # re-raises a worker's UserError
            _drain(queue, report)
        except BaseException:
            # A failed unit or Ctrl-C: stop the work in flight now rather than wait for it.
            processes = getattr(pool, "_processes", None) or {}
            for process in list(processes.values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [results[i] for i in range(len(units))]


def _drain(queue: Any, report: Callable[[tuple[int, int]], None]) -> None:
    while True:
        try:
            report(queue.get_nowait())
        except Empty:
            return
