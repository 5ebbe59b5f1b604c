"""Gopher's rules (Rae et al. 2021, as datatrove's GopherQualityFilter and
GopherRepetitionFilter): document length, word length, symbols, bullet and ellipsis
lines, words with a letter, stop words; duplicate lines, paragraphs and n-grams.

CJK documents count a character as a word, so the length rules have CJK thresholds and
n-grams of characters start longer (a 2-character phrase is one word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from pangu_cli.cleaning.words import STOP_WORDS, duplicates, is_cjk

_HAS_ALPHA = re.compile(r"[^\W\d_]")
_PUNCT_ONLY = re.compile(r"^[\W_]+$")


@dataclass
class GopherQualityConfig:
    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3.0
    max_avg_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    max_non_alpha_words_ratio: float = 0.8  # min share of words with a letter, as datatrove
    min_stop_words: int = 2
    # CJK: a word is a character; word length checks do not apply.
    min_doc_words_cjk: int = 16
    max_doc_words_cjk: int = 300_000
    min_stop_words_cjk: int = 1


@dataclass
class GopherRepetitionConfig:
    enabled: bool = True
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_n_grams: list[list[float]] = field(default_factory=lambda: [[2, 0.2], [3, 0.18], [4, 0.16]])
    dup_n_grams: list[list[float]] = field(
        default_factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]
    )
    # CJK n-grams are of characters: a 2-character phrase is a word, so start higher.
    cjk_n_offset: int = 2


# ------------------------------------------------------------------------- quality

_STOP_RE: dict[str, re.Pattern] = {}


def _stop_word_count(text: str, words: list[str], lang: str, cjk: bool) -> int:
    if cjk:
        stop = set(STOP_WORDS.get(lang, STOP_WORDS["zh"]))
        return sum(1 for w in words if w in stop)
    pattern = _STOP_RE.get(lang)
    if pattern is None:
        stop = STOP_WORDS.get(lang, STOP_WORDS["en"])
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, stop)) + r")\b")
        _STOP_RE[lang] = pattern
    return len(pattern.findall(text.lower()))


def gopher_quality(text: str, words: list[str], lang: str, cfg: GopherQualityConfig) -> str | None:
    cjk = is_cjk(lang)
    if cjk:
        words = [w for w in words if not _PUNCT_ONLY.match(w)]
        n, chars = len(words), sum(map(len, words))
        no_letter = sum(1 for w in words if not _HAS_ALPHA.search(w))
    else:
        # Cheap string tests first; the regex only sees the few words they leave open.
        punct = [w for w in words if not w[0].isalnum() and _PUNCT_ONLY.match(w)]
        n = len(words) - len(punct)
        chars = sum(map(len, words)) - sum(map(len, punct))
        no_letter = sum(1 for w in words if not w.isalpha() and not _HAS_ALPHA.search(w))
        no_letter -= len(punct)
    if cjk:
        lo, hi = cfg.min_doc_words_cjk, cfg.max_doc_words_cjk
    else:
        lo, hi = cfg.min_doc_words, cfg.max_doc_words
    if n < lo or n <= 0:
        return "gopher_quality.min_doc_words"
    if n > hi:
        return "gopher_quality.max_doc_words"
    if not cjk:
        avg = chars / n
        if avg < cfg.min_avg_word_length:
            return "gopher_quality.min_avg_word_length"
        if avg > cfg.max_avg_word_length:
            return "gopher_quality.max_avg_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > cfg.max_symbol_word_ratio:
        return "gopher_quality.symbol_word_ratio"
    lines = text.splitlines() or [""]
    if (
        sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines)
        > cfg.max_bullet_lines_ratio
    ):
        return "gopher_quality.bullet_lines"
    if (
        sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines)
        > cfg.max_ellipsis_lines_ratio
    ):
        return "gopher_quality.ellipsis_lines"
    if (n - no_letter) / n < cfg.max_non_alpha_words_ratio:
        return "gopher_quality.non_alpha_words"
    need = cfg.min_stop_words_cjk if cjk else cfg.min_stop_words
    if _stop_word_count(text, words, lang, cjk) < need:
        return "gopher_quality.stop_words"
    return None


# ---------------------------------------------------------------------- repetition

_PARA = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash per word n-gram (polynomial over word ids; wraps mod 2**64)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):
        h = h * np.uint64(0x100000001B3) + ids[k : len(ids) - n + 1 + k]
    return h


def gopher_repetition(
    text: str, words: list[str], lang: str, cfg: GopherRepetitionConfig
) -> str | None:
    total = len(text) or 1
    paragraphs = _PARA.split(text.strip())
    dup, chars = duplicates(paragraphs)
    if dup / max(len(paragraphs), 1) > cfg.dup_para_frac:
        return "gopher_repetition.dup_para_frac"
    if chars / total > cfg.dup_para_char_frac:
        return "gopher_repetition.dup_para_char_frac"
    lines = _LINES.split(text)
    dup, chars = duplicates(lines)
    if dup / max(len(lines), 1) > cfg.dup_line_frac:
        return "gopher_repetition.dup_line_frac"
    if chars / total > cfg.dup_line_char_frac:
        return "gopher_repetition.dup_line_char_frac"
    if not words:
        return None
    # Words to integer ids in order of first appearance, so n-grams hash in numpy instead
    # of joining strings. Not Python's hash(): it changes from process to process, and
    # with it which of several equally frequent n-grams would be judged.
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), np.uint64, len(words))
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    prefix = np.concatenate([[0], np.cumsum(lengths)])
    offset = cfg.cjk_n_offset if is_cjk(lang) else 0
    sep = 0 if is_cjk(lang) else 1
    for n, frac in cfg.top_n_grams:
        n = int(n) + offset
        if len(words) < n:
            continue
        h = _ngram_hashes(ids, n)
        uniq, first, counts = np.unique(h, return_index=True, return_counts=True)
        # Of equally frequent n-grams, the one that appears first (Counter.most_common's
        # order, which datatrove uses).
        top = np.flatnonzero(counts == counts.max())
        best = int(top[np.argmin(first[top])])
        if counts[best] < 2:  # a gram that occurs once is not repetition (short CJK poems)
            continue
        i = int(first[best])
        gram_chars = int(prefix[i + n] - prefix[i]) + sep * (n - 1)
        if gram_chars * int(counts[best]) / total > frac:
            return f"gopher_repetition.top_{n}_gram"
    for n, frac in cfg.dup_n_grams:
        n = int(n) + offset
        if len(words) < n:
            continue
        # datatrove's find_all_duplicate scans left to right, counts the characters of an
        # n-gram seen before and jumps past it. Only repeats need the scan: first
        # occurrences come from np.unique, then the jumps run over the repeats alone.
        h = _ngram_hashes(ids, n)
        first = np.zeros(len(h), dtype=bool)
        first[np.unique(h, return_index=True)[1]] = True
        repeats = np.flatnonzero(~first).tolist()
        gram_len = prefix[n:] - prefix[:-n]
        repeated, allowed = 0, 0
        for i in repeats:
            if i >= allowed:
                repeated += int(gram_len[i])
                allowed = i + n
        if repeated / total > frac:
            return f"gopher_repetition.dup_{n}_grams"
    return None
