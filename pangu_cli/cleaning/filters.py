"""Rule-based document filters: which rule sets run on which domain, with which thresholds.

The rule sets are Gopher quality and repetition (gopher.py), C4 (c4.py) and FineWeb
(fineweb.py); reference values are datatrove's defaults (GopherQualityFilter,
GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter). The rules count words;
for Chinese, Japanese and Korean there are no spaces between words, so a "word" is one
CJK character (words.py), and the thresholds that assume English word and line lengths
have CJK values beside them. With English settings every Tang poem fails (too few
"words", lines too short); with these it passes.

Each rule set returns a reason: None when the document passes, else a name such as
"gopher_quality.stop_words". C4 also edits the text (it drops lines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pangu_cli.cleaning.c4 import C4Config, c4
from pangu_cli.cleaning.fineweb import FineWebConfig, fineweb
from pangu_cli.cleaning.gopher import (
    GopherQualityConfig,
    GopherRepetitionConfig,
    gopher_quality,
    gopher_repetition,
)
from pangu_cli.cleaning.words import is_cjk, words_of

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
