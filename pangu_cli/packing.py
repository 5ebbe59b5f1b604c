"""Token shards -> packed training sequences with document boundaries.

Documents are concatenated, each followed by an end-of-document (EOD) token, and
cut into rows of seq_len + 1 tokens (inputs and shifted targets). Every row
carries, per position, its document index (for document-masked attention) and a
position id that restarts at each document, so one tokenized corpus serves any
sequence length.

This module holds the corpus, the held-out split, the row packing and the fixed
validation batches; the training stream that deals rows out by domain mixture is
pangu_cli.mixture.MixtureLoader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pangu_cli.errors import UserError
from pangu_cli.shards import list_shards, read_shard


@dataclass
class TokenCorpus:
    """All documents of a set of token shards, as one flat token array plus offsets."""

    tokens: np.ndarray  # uint32, every document back to back
    offsets: np.ndarray  # int64 [n_docs + 1]
    domains: np.ndarray  # int32 index into domain_names, per document
    domain_names: list[str]
    ids: list[str]
    n_bytes: np.ndarray  # int64 UTF-8 bytes per document
    quality: np.ndarray | None = None  # float32 sampling weight per document (default 1)
    difficulty: np.ndarray | None = None  # float32 curriculum key per document (default 0)

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = np.ones(self.n_docs, np.float32)
        if self.difficulty is None:
            self.difficulty = np.zeros(self.n_docs, np.float32)

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, doc_indices: np.ndarray) -> TokenCorpus:
        pieces = [self.doc(int(i)) for i in doc_indices]
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        return TokenCorpus(
            tokens=np.concatenate(pieces) if pieces else np.zeros(0, np.uint32),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            domains=self.domains[doc_indices],
            domain_names=self.domain_names,
            ids=[self.ids[int(i)] for i in doc_indices],
            n_bytes=self.n_bytes[doc_indices],
            quality=self.quality[doc_indices],
            difficulty=self.difficulty[doc_indices],
        )


def load_token_corpus(path: str | Path) -> TokenCorpus:
    """Read every token shard under `path` (a tokenize output dir or a shard file)."""
    tables = [read_shard(p, "token") for p in list_shards(path)]
    table = pa.concat_tables(
        [t.select(["tokens", "domain"]) for t in tables], promote_options="permissive"
    )
    if table.num_rows == 0:
        raise UserError(f"{path}: token shards hold no documents")
    tokens_col = table.column("tokens").combine_chunks()
    offsets = np.asarray(tokens_col.offsets, dtype=np.int64)
    values = np.asarray(tokens_col.values, dtype=np.uint32)
    offsets = offsets - offsets[0]
    domain_strings = table.column("domain").to_pylist()
    domain_names = sorted(set(domain_strings))
    lookup = {name: i for i, name in enumerate(domain_names)}
    ids, n_bytes, quality, difficulty = [], [], [], []
    for t in tables:
        n = t.num_rows
        ids += t.column("id").to_pylist() if "id" in t.column_names else [None] * n
        n_bytes += t.column("n_bytes").to_pylist() if "n_bytes" in t.column_names else [0] * n
        for name, default, out in (("quality", 1.0, quality), ("difficulty", 0.0, difficulty)):
            col = t.column(name).to_numpy(zero_copy_only=False) if name in t.column_names else None
            out.append(np.full(n, default, np.float32) if col is None else col.astype(np.float32))
    ids = [i if i is not None else f"doc{k}" for k, i in enumerate(ids)]
    return TokenCorpus(
        tokens=values,
        offsets=offsets,
        domains=np.array([lookup[d] for d in domain_strings], dtype=np.int32),
        domain_names=domain_names,
        ids=ids,
        n_bytes=np.array(n_bytes, dtype=np.int64),
        quality=np.nan_to_num(np.concatenate(quality), nan=1.0),
        difficulty=np.nan_to_num(np.concatenate(difficulty), nan=0.0),
    )


def split_heldout(corpus: TokenCorpus, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) document indices. Per domain, documents in a stable order
    (hash of id) go to validation until it holds `fraction` of that domain's tokens;
    a domain with two or more documents gives at least one and keeps at least one."""
    lengths = np.diff(corpus.offsets)
    train, val = [], []
    for d in range(len(corpus.domain_names)):
        docs = np.flatnonzero(corpus.domains == d)
        order = sorted(docs, key=lambda i: hashlib.sha1(corpus.ids[i].encode()).hexdigest())
        target, taken, n_val = fraction * lengths[docs].sum(), 0, 0
        for i in order:
            keeps_one_for_training = len(order) - n_val > 1
            wanted = taken < target or n_val == 0
            if fraction > 0 and keeps_one_for_training and wanted:
                val.append(i)
                taken += lengths[i]
                n_val += 1
            else:
                train.append(i)
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T] int64
    targets: torch.Tensor  # [B, T] int64, -100 where there is nothing to predict
    position_ids: torch.Tensor  # [B, T], restarting at each document
    doc_ids: torch.Tensor | None  # [B, T] document index per position; None: plain causal
    domain_tokens: dict[str, int]  # target tokens per domain in this batch
    documents: list[list[str]] | None = None  # per row, the ids of its documents


def pack_rows(
    rows: np.ndarray, eod_id: int, reset_position_ids: bool, document_mask: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """rows [B, T+1] of token ids -> inputs, targets, position ids, document ids."""
    inputs, targets = rows[:, :-1].astype(np.int64), rows[:, 1:].astype(np.int64)
    is_eod = inputs == eod_id
    # An EOD belongs to the document it ends; the next document starts after it.
    doc_ids = np.cumsum(is_eod, axis=1) - is_eod
    arange = np.broadcast_to(np.arange(inputs.shape[1]), inputs.shape)
    if reset_position_ids:
        starts = np.ones_like(is_eod)
        starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
        position_ids = arange - np.maximum.accumulate(np.where(starts, arange, 0), axis=1)
    else:
        position_ids = arange
    return (
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        torch.from_numpy(np.array(position_ids, dtype=np.int64)),
        torch.from_numpy(doc_ids.astype(np.int32)) if document_mask else None,
    )


def validation_batches(
    corpus: TokenCorpus,
    *,
    seq_len: int,
    batch_size: int,
    eod_id: int,
    max_rows_per_domain: int,
    reset_position_ids: bool = True,
    document_mask: bool = True,
) -> list[tuple[str, Batch]]:
    """Fixed held-out batches, one domain per batch, documents in order, each with EOD.
    The last row of a domain is padded, with targets -100 where padding stands."""
    width = seq_len + 1
    out = []
    for d, name in enumerate(corpus.domain_names):
        docs = np.flatnonzero(corpus.domains == d)
        if len(docs) == 0:
            continue
        pieces, have = [], 0
        for i in docs:  # only as many documents as the rows need
            pieces.append(np.append(corpus.doc(int(i)), np.uint32(eod_id)))
            have += len(pieces[-1])
            if have >= max_rows_per_domain * width:
                break
        stream = np.concatenate(pieces)
        n_rows = min(max_rows_per_domain, -(-len(stream) // width))
        stream = stream[: n_rows * width]
        pad = n_rows * width - len(stream)
        rows = np.append(stream, np.full(pad, eod_id, np.uint32)).reshape(n_rows, width)
        valid = np.append(np.ones(len(stream), bool), np.zeros(pad, bool)).reshape(n_rows, width)
        for start in range(0, n_rows, batch_size):
            chunk = slice(start, start + batch_size)
            inputs, targets, positions, doc_ids = pack_rows(
                rows[chunk], eod_id, reset_position_ids, document_mask
            )
            targets[~torch.from_numpy(valid[chunk, 1:])] = -100
            n_targets = int((targets != -100).sum())
            out.append((name, Batch(inputs, targets, positions, doc_ids, {name: n_targets})))
    return out
