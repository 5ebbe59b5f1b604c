"""FineWeb's rules (Penedo et al. 2024, as datatrove's FineWebQualityFilter): the share of
lines ending in punctuation, of short lines, of characters in duplicated lines, and
newlines per word.
"""

from __future__ import annotations

from dataclasses import dataclass

from pangu_cli.cleaning.words import CJK_END_PUNCT, END_PUNCT, duplicates, is_cjk


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


def fineweb(text: str, words: list[str], lang: str, cfg: FineWebConfig) -> str | None:
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
    _, dup_chars = duplicates(lines)
    dup_limit = cfg.char_duplicates_ratio_cjk if cjk else cfg.char_duplicates_ratio
    if dup_chars / max(len(text.replace("\n", "")), 1) >= dup_limit:
        return "fineweb.char_dup_ratio"
    if text.count("\n") / max(len(words), 1) > cfg.new_line_ratio:
        return "fineweb.list_ratio"
    return None
