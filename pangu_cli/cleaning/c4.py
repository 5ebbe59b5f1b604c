"""C4's rules (Raffel et al. 2020, as datatrove's C4QualityFilter): lines without terminal
punctuation, short lines, javascript and policy lines and citation marks are dropped,
then the document needs enough sentences and no lorem ipsum or curly brackets. The only
rule set that edits the text it keeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pangu_cli.cleaning.words import CJK_END_PUNCT, END_PUNCT, is_cjk, words_of


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
