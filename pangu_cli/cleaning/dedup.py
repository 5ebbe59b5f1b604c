"""Deduplication: exact (hash of the normalised text) and near (MinHash LSH).

Per document, in any process: shingle hashes -> a MinHash signature -> one key per
LSH band. Then one global merge over every document's keys (signature -> global
bucket merge -> filter): documents sharing a band key are candidates, a candidate
edge is kept when the signatures agree on at least `verify_threshold` of their values,
and each connected cluster keeps its first document in input order. Every hash here
is a fixed function of the text (crc32, fixed seeds), never Python's salted hash(),
so any number of processes or nodes computes the same keys and the same clusters.

Shingles: word 5-grams, or for Chinese, Japanese and Korean character 5-grams (no
spaces to split on). 14 bands of 8 rows put the LSH threshold at (1/14)^(1/8) ~ 0.72.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+")
_NON_WORD = re.compile(r"[\W_]+")
_M = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier for polynomial combining


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    ngram: int = 5  # words per shingle
    cjk_ngram: int = 5  # characters per shingle for CJK text
    bands: int = 14
    rows: int = 8  # bands x rows = MinHash permutations
    verify_threshold: float = 0.5  # min signature agreement for a candidate pair
    seed: int = 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads polynomial hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def exact_hash(text: str) -> int:
    """64-bit hash of the text with case, punctuation and spacing removed."""
    key = _NON_WORD.sub(" ", text.lower()).strip().encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def shingle_hashes(text: str, cjk: bool, ngram: int, cjk_ngram: int) -> np.ndarray:
    """Unique 64-bit hashes of the text's word (or CJK character) n-grams."""
    low = text.lower()
    if cjk:
        tokens = np.frombuffer(_NON_WORD.sub("", low).encode("utf-32-le"), np.uint32)
        n = cjk_ngram
    else:
        words = _WORD.findall(low)
        tokens = np.fromiter(map(zlib.crc32, map(str.encode, words)), np.uint32, len(words))
        n = ngram
    tokens = tokens.astype(np.uint64)
    if len(tokens) == 0:
        return np.zeros(0, np.uint64)
    n = min(n, len(tokens))  # a short text is one shingle
    count = len(tokens) - n + 1
    h = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _M + tokens[k : k + count] + np.uint64(1)
        return np.unique(_mix(h))


class MinHasher:
    """bands x rows MinHash over 64-bit shingle hashes: h -> (a h + b) mod 2^64, top 32 bits."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        rng = np.random.Generator(np.random.PCG64(cfg.seed))
        k = cfg.bands * cfg.rows
        self.a = rng.integers(1, 2**63, k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, k, dtype=np.uint64)

    def signature(self, shingles: np.ndarray, chunk: int = 2048) -> np.ndarray:
        sig = np.full(len(self.a), np.iinfo(np.uint32).max, np.uint32)
        with np.errstate(over="ignore"):
            for i in range(0, len(shingles), chunk):
                block = shingles[i : i + chunk, None] * self.a[None, :] + self.b[None, :]
                np.minimum(sig, (block >> np.uint64(32)).astype(np.uint32).min(axis=0), out=sig)
        return sig

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """One 64-bit key per band (its rows hashed together)."""
        rows = sig.reshape(self.cfg.bands, self.cfg.rows).astype(np.uint64)
        h = np.zeros(self.cfg.bands, np.uint64)
        with np.errstate(over="ignore"):
            for r in range(self.cfg.rows):
                h = h * _M + rows[:, r] + np.uint64(1)
            return _mix(h)


def find_duplicates(
    index: np.ndarray,
    exact: np.ndarray,
    bands: np.ndarray,
    sigs: np.ndarray,
    cfg: DedupConfig,
) -> dict[int, tuple[str, int]]:
    """The global merge. `index` is each candidate's position in input order; returns
    {index of a removed duplicate: (reason, index of the document kept for it)}."""
    removed: dict[int, tuple[str, int]] = {}
    order = np.argsort(index, kind="stable")
    index, exact, bands, sigs = index[order], exact[order], bands[order], sigs[order]
    alive = np.ones(len(index), bool)
    if cfg.exact and len(index):
        # Sort by hash, then input order: the first of each run is kept.
        by_hash = np.lexsort((index, exact))
        same = exact[by_hash][1:] == exact[by_hash][:-1]
        head = by_hash[0]
        for prev, cur, dup in zip(by_hash[:-1], by_hash[1:], same, strict=True):
            if not dup:
                head = cur
                continue
            removed[int(index[cur])] = ("dedup.exact", int(index[head]))
            alive[cur] = False
            _ = prev
    if cfg.near:
        live = np.flatnonzero(alive)
        parent = {int(i): int(i) for i in live}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for b in range(bands.shape[1] if len(live) else 0):
            keys = bands[live, b]
            by_key = live[np.lexsort((index[live], keys))]
            sorted_keys = bands[by_key, b]
            start = 0
            for j in range(1, len(by_key) + 1):
                if j < len(by_key) and sorted_keys[j] == sorted_keys[start]:
                    continue
                head = int(by_key[start])
                for member in by_key[start + 1 : j].tolist():
                    agree = float(np.mean(sigs[head] == sigs[member]))
                    if agree >= cfg.verify_threshold:
                        ra, rb = find(head), find(member)
                        if ra != rb:  # the root is always the earliest document
                            parent[max(ra, rb)] = min(ra, rb)
                start = j
        for i in live.tolist():
            root = find(i)
            if root != i:
                removed[int(index[i])] = ("dedup.near", int(index[root]))
    return removed
