"""Rule-based document filters: Gopher quality and repetition, C4, FineWeb.

Reference values are datatrove's defaults (GopherQualityFilter, GopherRepetitionFilter,
C4QualityFilter, FineWebQualityFilter). The rules count words; for Chinese, Japanese and
Korean there are no spaces between words, so a "word" is one CJK character (plus any
non-CJK run), and the thresholds that assume English word and line lengths have CJK
values beside them. With English settings every Tang poem fails (too few "words",
lines too short); with these it passes.

Each filter returns (text, reason): reason is None when the document passes, else a
name such as "gopher_quality.stop_words". C4 also edits the text (it drops lines).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CJK_LANGS = frozenset({"zh", "ja", "ko", "yue", "wuu"})
_CJK_CHAR = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_WORDS = re.compile(rf"[{_CJK_CHAR}]|[^\s{_CJK_CHAR}]+")
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_PUNCT_ONLY = re.compile(r"^[\W_]+$")

STOP_WORDS = {
    "en": ["the", "be", "to", "of", "and", "that", "have", "with"],  # Gopher's list
    # Modern function words plus the classical particles of Tang and Song verse.
    "zh": list("的了是在不和有我人这之也而其以为于所无何自乎兮者"),
    "ja": list("のにはをたがでてとしれさ"),
    "ko": ["이", "그", "저", "것", "수", "등", "및", "는", "은", "을", "를", "에"],
}
END_PUNCT = (".", "?", "!", '"', "'")
CJK_END_PUNCT = ("。", "！", "？", "」", "』", "”", "…", "；")


def is_cjk(lang: str) -> bool:
    return lang in CJK_LANGS


def words_of(text: str, cjk: bool) -> list[str]:
    """Whitespace words, or for CJK one token per CJK character."""
    return _CJK_WORDS.findall(text) if cjk else text.split()


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


@dataclass
class C4Config:
    enabled: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    min_num_sentences_cjk: int = 1
    min_words_per_line_cjk: int = 3


@dataclass
class FineWebConfig:
    enabled: bool = True
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3
    short_line_length_cjk: int = 10  # a CJK character carries about three Latin ones
    # Short CJK records (a poem pair under one author) repeat a 15-character author line:
    # 10% of the text, where 0.01 assumes long web pages.
    char_duplicates_ratio_cjk: float = 0.2


# ---------------------------------------------------------------- Gopher quality


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


def gopher_quality(text: str, words: list[str], lang: str, cfg: GopherQualityConfig):
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
    lo, hi = (
        (cfg.min_doc_words_cjk, cfg.max_doc_words_cjk)
        if cjk
        else (
            cfg.min_doc_words,
            cfg.max_doc_words,
        )
    )
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


# ------------------------------------------------------------- Gopher repetition

_PARA = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def _duplicates(items: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    dup = chars = 0
    for x in items:
        if x in seen:
            dup, chars = dup + 1, chars + len(x)
        else:
            seen.add(x)
    return dup, chars


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash per word n-gram (polynomial over word ids; wraps mod 2**64)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):
        h = h * np.uint64(0x100000001B3) + ids[k : len(ids) - n + 1 + k]
    return h


def gopher_repetition(text: str, words: list[str], lang: str, cfg: GopherRepetitionConfig):
    total = len(text) or 1
    paragraphs = _PARA.split(text.strip())
    dup, chars = _duplicates(paragraphs)
    if dup / max(len(paragraphs), 1) > cfg.dup_para_frac:
        return "gopher_repetition.dup_para_frac"
    if chars / total > cfg.dup_para_char_frac:
        return "gopher_repetition.dup_para_char_frac"
    lines = _LINES.split(text)
    dup, chars = _duplicates(lines)
    if dup / max(len(lines), 1) > cfg.dup_line_frac:
        return "gopher_repetition.dup_line_frac"
    if chars / total > cfg.dup_line_char_frac:
        return "gopher_repetition.dup_line_char_frac"
    if not words:
        return None
    # Words to integer ids, so n-grams hash in numpy instead of joining strings.
    # Python's hash() is stable within a process, which is all one document needs.
    ids = np.fromiter(map(hash, words), np.int64, len(words)).view(np.uint64)
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
        best = int(np.argmax(counts))
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


# ----------------------------------------------------------------------- C4

_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:[\"'”」』)]*)(?:\s|$)")


def c4(text: str, lang: str, cfg: C4Config) -> tuple[str, str | None]:
    """C4's line rules (drop lines without terminal punctuation, short lines, javascript
    and policy lines, citation marks) then its document rules."""
    cjk = is_cjk(lang)
    low = text.lower()
    if cfg.filter_lorem_ipsum and "lorem ipsum" in low:
        return text, "c4.lorem_ipsum"
    if cfg.filter_curly_bracket and "{" in text:
        return text, "c4.curly_bracket"
    ends = END_PUNCT + CJK_END_PUNCT if cjk else END_PUNCT
    min_words = cfg.min_words_per_line_cjk if cjk else cfg.min_words_per_line
    kept = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if cfg.remove_citations:
            line = _CITATION.sub("", line)
        if cfg.filter_no_terminal_punct and (not line.endswith(ends) or line.endswith("...")):
            continue
        words = words_of(line, cjk)
        if len(words) < min_words:
            continue
        if max(map(len, words)) > cfg.max_word_length:
            continue
        low_line = line.lower()
        if cfg.filter_javascript and "javascript" in low_line:
            continue
        if cfg.filter_policy and any(p in low_line for p in _POLICY):
            continue
        kept.append(line)
    new = "\n".join(kept)
    if not new:
        return text, "c4.no_lines_left"
    sentences = len(_SENTENCE_END.findall(new + " "))
    if sentences < (cfg.min_num_sentences_cjk if cjk else cfg.min_num_sentences):
        return text, "c4.min_num_sentences"
    return new, None


# -------------------------------------------------------------------- FineWeb


def fineweb(text: str, words: list[str], lang: str, cfg: FineWebConfig):
    cjk = is_cjk(lang)
    lines = [s for s in (x.strip() for x in text.split("\n")) if s]
    if not lines:
        return "fineweb.empty"
    ends = END_PUNCT + CJK_END_PUNCT if cjk else END_PUNCT
    ratio = sum(s.endswith(ends) for s in lines) / len(lines)
    if ratio < cfg.line_punct_thr and not (ratio == 0 and cfg.line_punct_exclude_zero):
        return "fineweb.line_punct_ratio"
    short = cfg.short_line_length_cjk if cjk else cfg.short_line_length
    if sum(len(s) <= short for s in lines) / len(lines) >= cfg.short_line_thr:
        return "fineweb.short_line_ratio"
    _, dup_chars = _duplicates(lines)
    dup_limit = cfg.char_duplicates_ratio_cjk if cjk else cfg.char_duplicates_ratio
    if dup_chars / max(len(text.replace("\n", "")), 1) >= dup_limit:
        return "fineweb.char_dup_ratio"
    if text.count("\n") / max(len(words), 1) > cfg.new_line_ratio:
        return "fineweb.list_ratio"
    return None


RULE_CONFIGS = {
    "gopher_quality": GopherQualityConfig,
    "gopher_repetition": GopherRepetitionConfig,
    "c4": C4Config,
    "fineweb": FineWebConfig,
}

# Which rule sets run on which domain ("*": any domain not listed, e.g. "web" pages).
# Web text gets all four with datatrove's thresholds (the reference values). The bundled
# en and zh domains are curated literature, and the web rules measure web-page layout,
# which verse and drama fail by form, not by quality (measured on the 77 plays and poems):
# - C4 drops every line without terminal punctuation: it shreds verse (titles, lines
#   ending in commas). Add "c4" back for crawled en / zh data.
# - FineWeb's char_dup_ratio (0.01) removes 36 of 77 plays, whose speaker names and
#   "Exit." repeat on lines of their own; its short-line rule removes "The Phoenix and
#   the Turtle" (verse), its line-punctuation rule the folio Winter's Tale. Not on en.
# - Gopher repetition's n-gram rules see a zh record holding two poems by one poet (the
#   author line twice, 10-16% of 120 characters) as repetition; FineWeb's line rule with
#   its CJK threshold still removes records that repeat whole lines. Not on zh.
# Code and math are not prose: web-text rules would throw most of them away.
DEFAULT_RULES = {
    "*": ["gopher_quality", "gopher_repetition", "c4", "fineweb"],
    "en": ["gopher_quality", "gopher_repetition"],
    "zh": ["gopher_quality", "fineweb"],
    "code": [],
    "math": [],
}
# Per-domain changes to a rule set's thresholds: {domain: {rule set: {field: value}}}.
# A play's speaker labels ("FALSTAFF.") are 30% of The Merry Wives' lines but 3% of its
# characters: the line-count rule is loosened, the character-share rules stay as they are.
DEFAULT_THRESHOLDS: dict[str, dict[str, dict[str, Any]]] = {
    "en": {"gopher_repetition": {"dup_line_frac": 0.5}},
}


@dataclass
class FiltersConfig:
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    # Merged over the defaults above, per domain: a config or `filters.rules.web=[c4]`
    # changes the domains it names and leaves the others as they are.
    rules: dict[str, list[str]] = field(default_factory=dict)
    thresholds: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rules = {**DEFAULT_RULES, **(self.rules or {})}
        self.thresholds = {**DEFAULT_THRESHOLDS, **(self.thresholds or {})}


def check_thresholds(cfg: FiltersConfig) -> str | None:
    """An error message for an unknown rule set or field in `thresholds`, else None."""
    for domain, sets in cfg.thresholds.items():
        if not isinstance(sets, dict):
            return f"filters.thresholds.{domain}: expected a mapping of rule set -> fields"
        for name, values in sets.items():
            if name not in RULE_CONFIGS:
                return f"filters.thresholds.{domain}: unknown rule set {name!r}"
            known = {f.name for f in dataclasses.fields(RULE_CONFIGS[name])}
            for key in values or {}:
                if key not in known:
                    return f"filters.thresholds.{domain}.{name}: unknown field {key!r}"
    return None


def rules_for(domain: str, cfg: FiltersConfig) -> list[str]:
    return cfg.rules.get(domain, cfg.rules.get("*", []))


def rule_config(name: str, domain: str, cfg: FiltersConfig) -> Any:
    """Rule set `name`'s config for `domain`: the global one with the domain's thresholds."""
    cache = cfg.__dict__.setdefault("_per_domain", {})  # not a field: not in the manifest
    if (domain, name) not in cache:
        base = getattr(cfg, name)
        changes = cfg.thresholds.get(domain, {}).get(name) or {}
        cache[domain, name] = dataclasses.replace(base, **changes) if changes else base
    return cache[domain, name]


def apply_filters(text: str, domain: str, lang: str, cfg: FiltersConfig) -> tuple[str, str | None]:
    """Run the domain's rule sets in order; the first failing rule names the reason."""
    names = rules_for(domain, cfg)
    if not names:
        return text, None
    words = words_of(text, is_cjk(lang))
    for name in names:
        rule = rule_config(name, domain, cfg)
        if not rule.enabled:
            reason = None
        elif name == "gopher_quality":
            reason = gopher_quality(text, words, lang, rule)
        elif name == "gopher_repetition":
            reason = gopher_repetition(text, words, lang, rule)
        elif name == "c4":
            new, reason = c4(text, lang, rule)
            if reason is None and new != text:
                text, words = new, words_of(new, is_cjk(lang))
        else:
            reason = fineweb(text, words, lang, rule)
        if reason:
            return text, reason
    return text, None
