"""Difficulty labels for the curriculum (reasoning data is ordered easy to hard).

Rule-based per domain, each mapped to [0, 1) by x / (x + scale) so that labels from
different domains sit on one axis and more of the signal always means harder:
- math: reasoning steps, the solution's lines and equations;
- code: size and nesting depth (indentation and brackets);
- text: sentence length and word length, a readability-style estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SOLUTION = re.compile(r"(?:solution|answer|解|证明)\s*[:：]", re.I)
_STEP = re.compile(r"[=＝]|\bthen\b|\btherefore\b|\bso\b|所以|因此", re.I)
_SENTENCE = re.compile(r"[.!?。！？]+")


@dataclass
class DifficultyConfig:
    math_domains: tuple[str, ...] = ("math",)
    code_domains: tuple[str, ...] = ("code",)
    math_scale: float = 6.0  # steps at which difficulty is 0.5
    code_scale: float = 40.0
    text_scale: float = 20.0


def math_steps(text: str) -> int:
    """Reasoning steps: solution lines that compute or conclude something."""
    m = _SOLUTION.search(text)
    body = text[m.end() :] if m else text
    lines = [s for s in body.splitlines() if s.strip() and not s.lower().startswith("answer")]
    return sum(1 for s in lines if _STEP.search(s)) or len(lines)


def code_complexity(text: str) -> float:
    lines = [s for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]
    if not lines:
        return 0.0
    indents = [len(s) - len(s.lstrip(" \t")) for s in lines]
    unit = min((i for i in indents if i), default=4) or 4
    depth = max(indents) / unit
    brackets = max_bracket_depth(text)
    return len(lines) ** 0.5 + 4 * max(depth, brackets)


def max_bracket_depth(text: str) -> int:
    depth = best = 0
    for c in text[:200_000]:  # deep enough to judge; bounds the Python loop
        if c in "([{":
            depth += 1
            best = max(best, depth)
        elif c in ")]}":
            depth = max(depth - 1, 0)
    return best


def text_complexity(text: str, cjk: bool) -> float:
    sentences = max(len(_SENTENCE.findall(text)), 1)
    if cjk:
        return len(re.findall(r"\w", text)) / sentences / 2  # chars per sentence
    words = text.split()
    if not words:
        return 0.0
    avg_word = sum(map(len, words)) / len(words)
    return len(words) / sentences * 0.4 + (avg_word - 3) * 4  # grade-level-like


def difficulty(text: str, domain: str, cjk: bool, cfg: DifficultyConfig) -> tuple[float, float]:
    """(label in [0, 1), the raw measure it came from)."""
    if domain in cfg.math_domains:
        raw, scale = float(math_steps(text)), cfg.math_scale
    elif domain in cfg.code_domains:
        raw, scale = code_complexity(text), cfg.code_scale
    else:
        raw, scale = max(text_complexity(text, cjk), 0.0), cfg.text_scale
    return raw / (raw + scale), raw
