"""`pangu tokenizer-build`: the byte-level BPE vocabulary (Pangu Ultra, section 2.2).

The report runs frequency analysis separately on each domain (general English, general
Chinese, code, math) and merges the per-domain vocabularies, de-duplicated, into one.
`mode: domain_merged` does that: a BPE per domain (from the shards' `domain` column),
merged by `pangu_cli.tokenizer.merge_vocabularies` into `vocab_size` tokens with each
domain's share of the budget (default: the report's vocabulary table, mapped onto the
domains present). `mode: mixed` trains one BPE over all the documents. With `compare`
on, the other one is trained too and the manifest and table report bytes and
characters per token per domain on held-out documents for both, side by side.

Every byte is a base token, so encoding is lossless for any UTF-8 text; special tokens
take ids 0..15, the 256 bytes the next ids, merges the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pangu_cli import tokenizer as tk
from pangu_cli.artifacts import StagedOutput, write_manifest
from pangu_cli.corpus import document_inputs
from pangu_cli.errors import UserError
from pangu_cli.shards import iter_shard_batches


@dataclass
class TokenizerBuildConfig:
    input: str | None = None  # document shards (file or directory); None = bundled corpus
    vocab_size: int = 8192  # special tokens and the 256 byte tokens included
    # domain_merged: a BPE per domain, merged (the report's method); mixed: one BPE over
    # every document. On the bundled corpus at 8192 (benchmarks/tokenizer.py), with the
    # report's shares domain_merged gains 56% bytes per token on zh but loses 5% on en
    # and 20% on math, whose share of an 8K budget it cuts (the report merged at 153K,
    # where every domain is near saturation); so mixed is the default. With shares
    # en=55, zh=5, code=20, math=20 domain_merged is within 3% of mixed everywhere and
    # better on zh (+14%) and math (+3%).
    mode: Literal["domain_merged", "mixed"] = "mixed"
    shares: dict[str, float] = field(default_factory=dict)  # domain -> weight; {} = report's
    compare: bool = True  # also train the other mode and report both
    min_frequency: int = 2  # a pair must occur this often to be merged
    heldout_fraction: float = 0.05  # documents held out (by hash of id) to measure compression
    max_chars_per_doc: int = 0  # truncate training documents (speed); 0 = no limit


def _hash01(doc_id: str) -> float:
    """A stable number in [0, 1) from a document id: held-out sets survive reordering."""
    digest = hashlib.sha256(b"pangu-heldout:" + doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check(config: TokenizerBuildConfig) -> None:
    floor = tk.NUM_SPECIAL + 256
    if config.vocab_size <= floor:
        raise UserError(
            f"config vocab_size: {config.vocab_size} is too small; the {tk.NUM_SPECIAL} "
            f"special tokens and 256 byte tokens need {floor}, plus room for merges"
        )
    if not 0.0 <= config.heldout_fraction < 1.0:
        raise UserError(f"config heldout_fraction: {config.heldout_fraction} is not in [0, 1)")
    for domain, weight in (config.shares or {}).items():
        if not isinstance(weight, int | float) or weight < 0:
            raise UserError(f"config shares.{domain}: {weight!r} is not a weight >= 0")
    if config.min_frequency < 1 or config.max_chars_per_doc < 0:
        raise UserError("config: min_frequency must be >= 1 and max_chars_per_doc >= 0")


def choose_heldout(shards: list[Path], fraction: float) -> tuple[set[str], dict[str, int]]:
    """Held-out ids (hash below `fraction`) and document counts per domain.

    A domain with two or more documents always keeps at least one held out (its lowest
    hash), so small corpora still get a compression figure for every domain.
    """
    best: dict[str, tuple[float, str]] = {}
    counts: dict[str, int] = {}
    heldout: set[str] = set()
    for shard in shards:
        for batch in iter_shard_batches(shard, "document"):
            for doc_id, domain in zip(
                batch.column("id").to_pylist(), batch.column("domain").to_pylist(), strict=True
            ):
                h = _hash01(doc_id)
                counts[domain] = counts.get(domain, 0) + 1
                if domain not in best or h < best[domain][0]:
                    best[domain] = (h, doc_id)
                if h < fraction:
                    heldout.add(doc_id)
    if fraction > 0:
        for domain, (_, doc_id) in best.items():
            if counts[domain] >= 2:
                heldout.add(doc_id)
    return heldout, counts


@contextmanager
def _tokenizers_threads() -> Iterator[None]:
    """Let the BPE trainer use every core (~30% faster on 2 cores). `pangu` turns
    tokenizers' threads off by default because stages with worker processes fork."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE: no normaliser, so text goes through unchanged."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _documents(shards: list[Path]) -> Iterator[tuple[str, str, str]]:
    """(id, domain, text) of every document, streamed shard by shard."""
    for shard in shards:
        for batch in iter_shard_batches(shard, "document"):
            cols = (batch.column(c).to_pylist() for c in ("id", "domain", "text"))
            for doc_id, domain, text in zip(*cols, strict=True):
                yield doc_id, domain, text or ""


def train_bpe(
    texts: Callable[[], Iterator[str]],
    n: int,
    config: TokenizerBuildConfig,
    progress: Progress,
    label: str,
) -> Tokenizer:
    """One byte-level BPE of `config.vocab_size` tokens on `n` training documents."""
    task = progress.add_task(f"tokenizer-build: {label}", total=n)

    def counted() -> Iterator[str]:
        limit = config.max_chars_per_doc
        for text in texts():
            progress.advance(task)
            yield text[:limit] if limit else text

    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=tk.SPECIAL_TOKENS,  # first, so they take ids 0..15
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: no unknowns
        show_progress=False,
    )
    with _tokenizers_threads():
        tok.train_from_iterator(counted(), trainer, length=n)
    tk.check_special_tokens(tok, f"trained tokenizer ({label})")
    return tok


def build(
    mode: str,
    config: TokenizerBuildConfig,
    shards: list[Path],
    heldout_ids: set[str],
    train_docs: dict[str, int],
    progress: Progress,
) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer of `mode` and what went into it."""
    started = time.perf_counter()

    def texts(domain: str | None) -> Callable[[], Iterator[str]]:
        return lambda: (
            t
            for i, d, t in _documents(shards)
            if i not in heldout_ids and (domain is None or d == domain)
        )

    if mode == "mixed":
        tok = train_bpe(texts(None), sum(train_docs.values()), config, progress, "mixed corpus")
        return tok, {"train_time_s": round(time.perf_counter() - started, 3)}
    domains = sorted(d for d, n in train_docs.items() if n > 0)
    shares = tk.domain_shares(domains, config.shares)
    merges = {
        d: tk.bpe_merges(train_bpe(texts(d), train_docs[d], config, progress, f"domain {d}"))
        for d in domains
    }
    budget = config.vocab_size - tk.NUM_SPECIAL - 256
    merged, stats = tk.merge_vocabularies(merges, shares, budget)
    tok = tk.tokenizer_from_merges(merged)
    info = {
        "train_time_s": round(time.perf_counter() - started, 3),
        "domains": {
            d: {"share": round(shares[d], 4), "trained_merges": len(merges[d]), **stats[d]}
            for d in domains
        },
    }
    return tok, info


def run(config: TokenizerBuildConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Build the tokenizer on `config.input`; write tokenizer.json + manifest.json to `out`."""
    _check(config)
    start = time.perf_counter()
    staged = StagedOutput(out, force)  # refuses a complete output now, not after training
    shards = document_inputs(config.input)
    heldout_ids, doc_counts = choose_heldout(shards, config.heldout_fraction)
    heldout: dict[str, list[str]] = {}
    for doc_id, domain, text in _documents(shards):
        if doc_id in heldout_ids:
            heldout.setdefault(domain, []).append(text)
    train_docs = {d: n - len(heldout.get(d, [])) for d, n in doc_counts.items()}
    if sum(train_docs.values()) <= 0:
        raise UserError(f"{config.input or 'bundled corpus'}: no documents to train on")
    modes = [config.mode]
    if config.compare:
        modes.append("mixed" if config.mode == "domain_merged" else "domain_merged")
    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        built = {m: build(m, config, shards, heldout_ids, train_docs, progress) for m in modes}
    tok, info = built[config.mode]
    unreachable = tk.unreachable_tokens(tok)
    if unreachable:  # a bug in the merge, never the user's input
        raise RuntimeError(f"{len(unreachable)} unreachable tokens, e.g. {unreachable[0]!r}")
    compression = {m: measure_compression(t, heldout) for m, (t, _) in built.items()}
    ours = compression[config.mode]
    with staged as staging:
        tok.save(str(staging.path / tk.TOKENIZER_FILE))
        outputs = [tk.TOKENIZER_FILE, *tk.write_hf_config(staging.path)]
        manifest = write_manifest(
            staging.path,
            stage="tokenizer-build",
            config=dataclasses.asdict(config),
            inputs=[Path(config.input)] if config.input else shards,
            outputs=outputs,
            counts={
                "documents": sum(doc_counts.values()),
                "train_documents": sum(train_docs.values()),
                "heldout_documents": len(heldout_ids),
                "vocab_size": tk.vocab_size(tok),
            },
            wall_time_s=time.perf_counter() - start,
            tokenizer_fingerprint=tk.tokenizer_fingerprint(staging.path),
            special_tokens=tk.SPECIAL_IDS,
            mode=config.mode,
            train_time_s=info["train_time_s"],
            merge=info.get("domains"),
            domains={
                d: {"documents": n, "train_documents": train_docs[d], **ours.get(d, {})}
                for d, n in sorted(doc_counts.items())
            },
            heldout=ours.get("all", {}),
            comparison=compare(compression) if len(built) > 1 else None,
        )
        staging.commit()
    return manifest


def compare(compression: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Per domain (and all): bytes and chars per token of both modes, and the change of
    domain_merged over mixed in bytes per token (percent; positive = merged compresses
    better)."""
    merged, mixed = compression["domain_merged"], compression["mixed"]
    table: dict[str, dict[str, Any]] = {}
    for d in merged:
        a, b = merged[d], mixed.get(d, {})
        if "bytes_per_token" not in a or "bytes_per_token" not in b:
            continue
        table[d] = {
            "domain_merged": {k: a[k] for k in ("bytes_per_token", "chars_per_token")},
            "mixed": {k: b[k] for k in ("bytes_per_token", "chars_per_token")},
            "bytes_per_token_change_pct": round(
                100 * (a["bytes_per_token"] / b["bytes_per_token"] - 1), 2
            ),
        }
    return table


def measure_compression(tok: Tokenizer, heldout: dict[str, list[str]]) -> dict[str, dict]:
    """Bytes and characters per token on each domain's held-out text (and all together).

    Also checks decode(encode(text)) == text on every held-out document.
    """
    tok.encode_special_tokens = True  # corpus text is plain text
    result: dict[str, dict] = {}
    total = {"heldout_documents": 0, "bytes": 0, "chars": 0, "tokens": 0}
    for domain in sorted(heldout):
        texts = heldout[domain]
        encodings = tok.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        for text, decoded in zip(
            texts, tok.decode_batch(ids, skip_special_tokens=False), strict=True
        ):
            if decoded != text:
                raise RuntimeError(f"tokenizer is not lossless on a held-out {domain} document")
        stats = {
            "heldout_documents": len(texts),
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
            "chars": sum(len(t) for t in texts),
            "tokens": sum(len(i) for i in ids),
        }
        for key in total:
            total[key] += stats[key]
        result[domain] = _ratios(stats)
    result["all"] = _ratios(total)
    tok.encode_special_tokens = False
    return result


def _ratios(stats: dict[str, int]) -> dict[str, Any]:
    if not stats["tokens"]:  # nothing held out (heldout_fraction 0, or empty documents)
        return dict(stats)
    return {
        **stats,
        "bytes_per_token": round(stats["bytes"] / stats["tokens"], 4),
        "chars_per_token": round(stats["chars"] / stats["tokens"], 4),
    }
