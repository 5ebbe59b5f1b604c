"""How the rule filters and quality features count words, in any script.

A word is a whitespace-separated token; Chinese, Japanese and Korean have no spaces
between words, so there a "word" is one CJK character (plus any non-CJK run). Stop
words and sentence-ending punctuation have CJK lists beside the English ones.
"""

from __future__ import annotations

import re

CJK_LANGS = frozenset({"zh", "ja", "ko", "yue", "wuu"})
_CJK_CHAR = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_WORDS = re.compile(rf"[{_CJK_CHAR}]|[^\s{_CJK_CHAR}]+")

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


def duplicates(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and their characters."""
    seen: set[str] = set()
    dup = chars = 0
    for x in items:
        if x in seen:
            dup, chars = dup + 1, chars + len(x)
        else:
            seen.add(x)
    return dup, chars
