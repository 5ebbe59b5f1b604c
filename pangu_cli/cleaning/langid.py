"""Language identification with the model inside py3langid (nothing downloaded).

py3langid ships langid.py's 97-language naive-Bayes model in the wheel. We ask it for
normalised probabilities, so `lang_score` is a confidence in [0, 1] rather than a raw
log-probability, and classify at most the first `max_chars` characters: the language
of a long document is settled long before its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

# The model's Wu and Cantonese classes fire on classical Chinese (Tang poems); for
# pretraining data they are written Chinese, so they report as "zh".
FAMILY = {"wuu": "zh", "yue": "zh"}


@dataclass
class LangIdConfig:
    enabled: bool = True
    max_chars: int = 2000
    # Languages kept per domain; "*" keeps any. A domain not listed uses the "*" entry.
    keep: dict[str, list[str]] = field(
        default_factory=lambda: {
            "*": ["*"],
            "en": ["en"],
            "zh": ["zh"],
        }
    )
    min_score: float = 0.5  # below this a keep-list other than "*" rejects the document


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str, max_chars: int = 2000) -> tuple[str, float]:
    """(ISO 639-1 code, confidence in [0, 1]); ("und", 0.0) for text without letters."""
    sample = text[:max_chars]
    if not any(c.isalpha() for c in sample):
        return "und", 0.0
    ranked = _identifier().rank(sample)
    lang = FAMILY.get(ranked[0][0], ranked[0][0])
    # Confidence of the family: classical Chinese verse splits its mass between zh and wuu.
    score = sum(p for code, p in ranked[:8] if FAMILY.get(code, code) == lang)
    return lang, float(min(max(score, 0.0), 1.0))


def kept(domain: str, lang: str, score: float, cfg: LangIdConfig) -> bool:
    allowed = cfg.keep.get(domain, cfg.keep.get("*", ["*"]))
    if "*" in allowed:
        return True
    return lang in allowed and score >= cfg.min_score
