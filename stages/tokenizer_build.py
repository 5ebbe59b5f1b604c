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


# The report's vocabulary by category (percent of 153,376 tokens). A domain takes its
# category's share: en English, zh Chinese, math mathematics; code and any other domain
# share "other" (what is not natural language or maths: code among it).
REPORT_SHARES = {
    "en": 44.0, "zh": 27.0, "other": 20.0, "latin": 3.0,
    "ar": 1.8, "ko": 1.8, "math": 1.4, "ja": 1.0,
}  # fmt: skip
ALIASES = {"english": "en", "chinese": "zh", "arabic": "ar", "korean": "ko", "japanese": "ja"}


@dataclass
class TokenizerBuildConfig:
    input: str | None = None  # document shards (file or directory); None = bundled corpus
    vocab_size: int = 8192  # special tokens and the 256 byte tokens included
    # domain_merged: a BPE per domain, merged (the report's method); mixed: one BPE over
    # every document. domain_merged measures better on the bundled corpus at 8192
    # (benchmarks/tokenizer.py): zh +70% bytes/token, en -1.7%, code and math within 1%.
    mode: Literal["domain_merged", "mixed"] = "domain_merged"
    shares: dict[str, float] = field(default_factory=dict)  # domain -> weight; {} = report's
    compare: bool = True  # also train the other mode and report both
    min_frequency: int = 2  # a pair must occur this often to be merged
    heldout_fraction: float = 0.05  # documents held out (by hash of id) to measure compression
    max_chars_per_doc: int = 0  # truncate training documents (speed); 0 = no limit


def domain_shares(domains: list[str], shares: dict[str, float]) -> dict[str, float]:
    """Each domain's fraction of the merge budget: `shares` where given, else the
    report's table (a category shared by several domains is split between them)."""
    category = {}
    for d in domains:
        c = ALIASES.get(d.lower(), d.lower())
        category[d] = c if c in REPORT_SHARES else "other"
    weights = {}
    for d in domains:
        if d in shares:
            weights[d] = float(shares[d])
        else:
            same = sum(1 for e in domains if e not in shares and category[e] == category[d])
            weights[d] = REPORT_SHARES[category[d]] / same
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"config shares: {shares} gives no domain a positive share")
    return {d: w / total for d, w in weights.items()}


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


def run(config: TokenizerBuildConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Train the tokenizer on `config.input` and write tokenizer.json + manifest.json to `out`."""
    _check(config)
    start = time.perf_counter()
    staged = StagedOutput(out, force)  # refuses a complete output now, not after training
    shards = document_inputs(config.input)
    heldout_ids, doc_counts = choose_heldout(shards, config.heldout_fraction)
    n_train = sum(doc_counts.values()) - len(heldout_ids)
    if n_train <= 0:
        raise UserError(f"{config.input or 'bundled corpus'}: no documents to train on")
    heldout: dict[str, list[str]] = {}
    train_docs: dict[str, int] = {}
    limit = config.max_chars_per_doc

    def texts(progress: Progress, task: Any) -> Iterator[str]:
        # One streaming pass: training text goes to the trainer, held-out text is kept.
        for shard in shards:
            for batch in iter_shard_batches(shard, "document"):
                ids, domains = batch.column("id").to_pylist(), batch.column("domain").to_pylist()
                for doc_id, domain, text in zip(
                    ids, domains, batch.column("text").to_pylist(), strict=True
                ):
                    text = text or ""
                    if doc_id in heldout_ids:
                        heldout.setdefault(domain, []).append(text)
                        continue
                    train_docs[domain] = train_docs.get(domain, 0) + 1
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
    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("tokenizer-build: counting pairs (documents)", total=n_train)
        with _tokenizers_threads():
            tok.train_from_iterator(texts(progress, task), trainer, length=n_train)
    tk.check_special_tokens(tok, "trained tokenizer")
    train_s = time.perf_counter() - start

    compression = measure_compression(tok, heldout)
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
            train_time_s=round(train_s, 3),
            domains={
                d: {
                    "documents": n,
                    "train_documents": train_docs.get(d, 0),
                    **compression.get(d, {}),
                }
                for d, n in sorted(doc_counts.items())
            },
            heldout=compression.get("all", {}),
        )
        staging.commit()
    return manifest


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
