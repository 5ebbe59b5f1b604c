"""The three pretraining phases of the report (DESIGN.md section 2), scaled to a run.

Scaling rules: the configured `data.seq_len`, `model.rope_base`, `data.batch_size`,
`optim.lr` and `optim.min_lr` are the *general* phase's 4K, 1e4, 2048, 1e-4 and 1e-5;
the other phases keep the report's ratios to them. Switch points given in tokens in the
report (batch 1536 from 1.2T of 12T, 2048 from 1.9T; cosine until 7.4T) become the same
fractions of this phase's token budget.

The report's anneal phase (0.4T) has no row of its own in the schedule table: it keeps
the reasoning phase's 8K context, RoPE base and batch, and its learning rate decays by
cosine from the reasoning phase's final 7.5e-6 to a tenth of it (our choice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pangu_cli.errors import UserError


def warmup_cosine(
    peak_lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> Callable[[int], float]:
    """Linear warmup to peak_lr, then cosine decay to min_lr at total_steps (then constant)."""

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return peak_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * progress))

    return lr_at


PHASES = ("general", "reasoning", "anneal")

# Percent of tokens per report source (DESIGN.md section 2 table).
REPORT_MIXTURE: dict[str, dict[str, float]] = {
    "general": {"general_en": 54, "general_zh": 13, "multilingual": 8, "instruction": 2,
                "math": 6, "code": 17},
    "reasoning": {"general_en": 14, "general_zh": 6, "multilingual": 4, "instruction": 11,
                  "math": 28, "code": 37},
    "anneal": {"general_en": 21, "general_zh": 20, "multilingual": 3, "instruction": 20,
               "math": 18, "code": 18},
}  # fmt: skip

# Which corpus `domain` values count as each report source (the bundled corpus has en,
# zh, code and math; data-clean keeps whatever domain names its input carries).
SOURCE_DOMAINS: dict[str, tuple[str, ...]] = {
    "general_en": ("en", "english", "general_en"),
    "general_zh": ("zh", "chinese", "general_zh"),
    "multilingual": ("multilingual", "ja", "ko", "ar", "fr", "de", "es", "ru"),
    "instruction": ("instruction", "sft", "chat"),
    "math": ("math",),
    "code": ("code",),
}


@dataclass(frozen=True)
class Recipe:
    seq_len_mult: int  # x data.seq_len (4K in the report)
    rope_base_mult: float  # x model.rope_base (1e4)
    # (fraction of the phase's tokens, batch as a fraction of data.batch_size)
    batch_ramp: tuple[tuple[float, float], ...]
    lr_shape: str  # warmup_cosine_constant | cosine
    lr_from: float  # in units of optim.min_lr (general: of optim.lr)
    lr_to: float  # in units of optim.min_lr
    curriculum: bool  # order documents easy -> hard by difficulty


RECIPES = {
    # 1024 -> 1536 from 1.2T -> 2048 from 1.9T of 12T; cosine 1e-4 -> 1e-5 until 7.4T,
    # then constant 1e-5.
    "general": Recipe(1, 1.0, ((0.0, 0.5), (1.2 / 12, 0.75), (1.9 / 12, 1.0)),
                      "warmup_cosine_constant", 1.0, 1.0, False),
    # 8K, RoPE 1e5, 1536 sequences, cosine 1e-5 -> 7.5e-6.
    "reasoning": Recipe(2, 10.0, ((0.0, 0.75),), "cosine", 1.0, 0.75, True),
    "anneal": Recipe(2, 10.0, ((0.0, 0.75),), "cosine", 0.75, 0.075, False),
}  # fmt: skip
GENERAL_COSINE_END = 7.4 / 12.0  # token fraction where the general phase turns constant


def resolve_mixture(
    phase: str, domain_tokens: dict[str, int], override: dict[str, float] | None = None
) -> tuple[dict[str, float], list[str]]:
    """Target share of tokens per corpus domain, and notes on what was renormalised.

    A report source with no documents in the corpus is dropped and the rest renormalised;
    a source matching several corpus domains splits its share by their token counts."""
    present = {d for d, n in domain_tokens.items() if n > 0}
    notes: list[str] = []
    if override:
        unknown = sorted(set(override) - present)
        if unknown:
            raise UserError(
                f"data.mixture: domain(s) {', '.join(unknown)} have no training documents "
                f"(corpus domains: {', '.join(sorted(present))})"
            )
        weights = {d: float(w) for d, w in override.items() if w > 0}
    else:
        weights = {}
        for source, share in REPORT_MIXTURE[phase].items():
            matches = [d for d in SOURCE_DOMAINS[source] if d in present]
            if not matches:
                notes.append(f"{source} ({share:g}%) absent from the corpus: renormalised")
                continue
            total = sum(domain_tokens[d] for d in matches)
            for d in matches:
                weights[d] = weights.get(d, 0.0) + share * domain_tokens[d] / total
        unmapped = sorted(present - set(weights))
        if unmapped:
            notes.append(f"corpus domain(s) {', '.join(unmapped)} match no report source: unused")
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"phase {phase}: no corpus domain matches its data mixture")
    return {d: w / total for d, w in sorted(weights.items())}, notes


def _step_fractions(ramp: tuple[tuple[float, float], ...]) -> list[tuple[float, float, float]]:
    """(token fraction, step fraction, batch fraction) at the start of each ramp segment.
    A segment holding a share f of the tokens at batch fraction b takes f / b step units."""
    bounds = [f for f, _ in ramp] + [1.0]
    units = [(bounds[i + 1] - bounds[i]) / b for i, (_, b) in enumerate(ramp)]
    total, acc, out = sum(units), 0.0, []
    for (f, b), u in zip(ramp, units, strict=True):
        out.append((f, acc / total, b))
        acc += u
    return out


def ramp_units(ramp: tuple[tuple[float, float], ...]) -> float:
    """Steps per full-batch step's worth of tokens, over the whole ramp."""
    bounds = [f for f, _ in ramp] + [1.0]
    return sum((bounds[i + 1] - bounds[i]) / b for i, (_, b) in enumerate(ramp))


def token_to_step_fraction(ramp: tuple[tuple[float, float], ...], token_frac: float) -> float:
    segs = _step_fractions(ramp)
    bounds = [f for f, _, _ in segs] + [1.0]
    for i, (f, g, b) in enumerate(segs):
        if token_frac <= bounds[i + 1] or i == len(segs) - 1:
            units = sum((bounds[j + 1] - bounds[j]) / segs[j][2] for j in range(len(segs)))
            return g + (token_frac - f) / b / units
    return 1.0


def batch_schedule(
    ramp: tuple[tuple[float, float], ...], total_steps: int, batch_size: int, multiple: int
) -> Callable[[int], int]:
    """Step -> global batch (sequences): the ramp's sizes, rounded to `multiple`."""
    starts = []
    for _, g, b in _step_fractions(ramp):
        size = max(multiple, round(batch_size * b / multiple) * multiple)
        starts.append((round(g * total_steps), size))

    def batch_at(step: int) -> int:
        return [size for start, size in starts if start <= step][-1]

    return batch_at


def batch_sizes(batch_at: Callable[[int], int], total_steps: int) -> list[int]:
    return sorted({batch_at(s) for s in range(total_steps)}) if total_steps else []


def lr_schedule(
    phase: str, lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> Callable[[int], float]:
    r = RECIPES[phase]
    if r.lr_shape == "warmup_cosine_constant":
        end = max(warmup_steps + 1, round(token_to_step_fraction(r.batch_ramp, GENERAL_COSINE_END)
                                          * total_steps))  # fmt: skip
        return warmup_cosine(lr, min_lr, warmup_steps, end)  # constant min_lr after `end`
    start, stop = r.lr_from * min_lr, r.lr_to * min_lr

    def cosine(step: int) -> float:
        progress = min(1.0, step / max(1, total_steps - 1))
        return stop + 0.5 * (start - stop) * (1 + math.cos(math.pi * progress))

    return cosine
