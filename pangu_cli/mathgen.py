"""Seeded generator of math word problems with worked, step-by-step solutions.

Used for the bundled corpus's `math` domain and reusable by later stages (RL rewards,
eval): every problem has a question, a list of solution steps, a solution text that
ends with `Answer: <answer>`, and a canonical answer string. Problem `i` of a seed is
the same whatever `n` is, so a prefix of a larger set is a smaller set.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from fractions import Fraction

SOURCE = "pangu-mathgen"
ANSWER_PREFIX = "Answer: "

NAMES = [
    "Ava", "Ben", "Chen", "Dara", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jamal", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tariq", "Uma",
    "Viktor", "Wei", "Yara", "Zoe",
]  # fmt: skip
ITEMS = [
    ("notebook", "notebooks"), ("pencil", "pencils"), ("apple", "apples"), ("ticket", "tickets"),
    ("book", "books"), ("mug", "mugs"), ("plant", "plants"), ("ball", "balls"),
    ("sandwich", "sandwiches"), ("candle", "candles"),
]  # fmt: skip
VEHICLES = ["train", "cyclist", "bus", "car", "runner", "boat"]


def fmt(x: Fraction | int | float) -> str:
    """Canonical answer text: an integer, or a decimal without trailing zeros."""
    x = Fraction(x).limit_denominator(10**6)
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return text


def money(x: Fraction | int) -> str:
    x = Fraction(x)
    return f"${x.numerator}" if x.denominator == 1 else f"${float(x):.2f}"


def _arithmetic(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    a, b, c = r.randint(2, 60), r.randint(2, 30), r.randint(2, 12)
    form = r.randrange(3)
    if form == 0:
        q = f"Compute {a} + {b} × {c}."
        steps = [f"Multiply first: {b} × {c} = {b * c}.", f"Then add: {a} + {b * c} = {a + b * c}."]
        return q, steps, Fraction(a + b * c), 0.1
    if form == 1:
        q = f"Compute ({a} + {b}) × {c} - {a}."
        s = a + b
        steps = [
            f"Parentheses first: {a} + {b} = {s}.",
            f"Multiply: {s} × {c} = {s * c}.",
            f"Subtract: {s * c} - {a} = {s * c - a}.",
        ]
        return q, steps, Fraction(s * c - a), 0.3
    d = r.randint(2, 9)
    m = d * r.randint(2, 20)  # divisible by d, so the quotient is whole
    q = f"Compute {a} × {c} - {m} ÷ {d} + {b}."
    steps = [
        f"Multiply: {a} × {c} = {a * c}.",
        f"Divide: {m} ÷ {d} = {m // d}.",
        f"Left to right: {a * c} - {m // d} + {b} = {a * c - m // d + b}.",
    ]
    return q, steps, Fraction(a * c - m // d + b), 0.4


def _rate(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    v, who = r.choice([12, 15, 18, 24, 40, 45, 48, 60, 64, 72, 80, 90]), r.choice(VEHICLES)
    t = Fraction(r.randint(2, 14), 2)
    d = v * t
    if r.random() < 0.5:
        q = f"A {who} moves at a steady {v} km per hour for {fmt(t)} hours. "
        q += "How many km does it cover?"
        steps = [f"Distance = speed × time = {v} × {fmt(t)} = {fmt(d)} km."]
        return q, steps, d, 0.2
    q = f"A {who} covers {fmt(d)} km at a steady {v} km per hour. "
    q += "How many hours does the trip take?"
    steps = [f"Time = distance ÷ speed = {fmt(d)} ÷ {v} = {fmt(t)} hours."]
    return q, steps, t, 0.3


# Pairs whose combined time is whole: 1/a + 1/b = 1/t.
WORK_PAIRS = [(a, b) for a in range(2, 61) for b in range(2, 61) if a != b and a * b % (a + b) == 0]
WORKERS = [
    ("One pipe fills a tank", "a second pipe fills it", "fill the tank"),
    ("One painter paints a fence", "another painter paints it", "paint the fence"),
    ("An old printer prints a report", "a new printer prints it", "print the report"),
    ("One crew paves a road", "a second crew paves it", "pave the road"),
]


def _work(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    a, b = r.choice(WORK_PAIRS)
    first, second, job = r.choice(WORKERS)
    t, rate = Fraction(a * b, a + b), Fraction(1, a) + Fraction(1, b)
    q = f"{first} in {a} hours and {second} in {b} hours. "
    q += f"How many hours do they take to {job} together?"
    steps = [
        f"The first does 1/{a} of the job per hour; the second does 1/{b}.",
        f"Together they do 1/{a} + 1/{b} = {rate} of the job per hour.",
        f"Time = 1 ÷ ({rate}) = {fmt(t)} hours.",
    ]
    return q, steps, t, 0.7


def _percent(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    price, pct = r.randint(4, 60) * 5, r.choice([10, 15, 20, 25, 30, 40, 50])
    form = r.randrange(3)
    cut = Fraction(price * pct, 100)
    if form == 0:
        q = f"A jacket costs {money(price)}. It is on sale for {pct}% off. "
        q += "What is the sale price in dollars?"
        steps = [
            f"Discount = {pct}% of {money(price)} = {money(cut)}.",
            f"Sale price = {money(price)} - {money(cut)} = {money(price - cut)}.",
        ]
        return q, steps, price - cut, 0.3
    if form == 1:
        q = f"A town had {price * 20} residents. The population grew by {pct}%. "
        q += "How many residents does it have now?"
        grow = Fraction(price * 20 * pct, 100)
        steps = [
            f"Growth = {pct}% of {price * 20} = {fmt(grow)}.",
            f"New population = {price * 20} + {fmt(grow)} = {fmt(price * 20 + grow)}.",
        ]
        return q, steps, price * 20 + grow, 0.4
    q = f"{fmt(cut)} is what percent of {price}?"
    steps = [f"Percent = {fmt(cut)} ÷ {price} × 100 = {pct}%."]
    return q, steps, Fraction(pct), 0.3


def _coef(c: int) -> str:
    return "" if c == 1 else str(c)


def _linear(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    x, a, b = r.randint(-12, 15), r.randint(2, 9), r.randint(1, 40)
    if r.random() < 0.5:
        c = a * x + b
        q = f"Solve for x: {a}x + {b} = {c}."
        steps = [f"Subtract {b} from both sides: {a}x = {c - b}.", f"Divide by {a}: x = {x}."]
        return q, steps, Fraction(x), 0.4
    c = r.randint(1, a - 1)
    d = (a - c) * x + b
    q = f"Solve for x: {a}x + {b} = {_coef(c)}x + {d}."
    steps = [
        f"Subtract {_coef(c)}x from both sides: {_coef(a - c)}x + {b} = {d}.",
        f"Subtract {b}: {_coef(a - c)}x = {d - b}.",
    ]
    if a - c > 1:
        steps.append(f"Divide by {a - c}: x = {x}.")
    return q, steps, Fraction(x), 0.6


def _shopping(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    name = r.choice(NAMES)
    (_, i1), (_, i2) = r.sample(ITEMS, 2)
    n1, n2 = r.randint(2, 9), r.randint(2, 9)
    p1, p2 = Fraction(r.randint(2, 30), 2), Fraction(r.randint(2, 40), 4)
    c1, c2 = n1 * p1, n2 * p2
    bill = next(b for b in (20, 50, 100, 200, 500) if b >= c1 + c2)
    q = (
        f"{name} buys {n1} {i1} at {money(p1)} each and {n2} {i2} at {money(p2)} each, "
        f"and pays with a {money(bill)} bill. How much change, in dollars, does {name} get?"
    )
    steps = [
        f"{i1.capitalize()}: {n1} × {money(p1)} = {money(c1)}.",
        f"{i2.capitalize()}: {n2} × {money(p2)} = {money(c2)}.",
        f"Total: {money(c1)} + {money(c2)} = {money(c1 + c2)}.",
        f"Change: {money(bill)} - {money(c1 + c2)} = {money(bill - c1 - c2)}.",
    ]
    return q, steps, bill - c1 - c2, 0.6


def _ratio(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    a, b = r.sample(range(1, 10), 2)
    k = r.randint(2, 25)
    total, item = (a + b) * k, r.choice(ITEMS)[1]
    name1, name2 = r.sample(NAMES, 2)
    q = f"{name1} and {name2} share {total} {item} in the ratio {a}:{b}. How many does {name2} get?"
    steps = [
        f"There are {a} + {b} = {a + b} equal parts.",
        f"One part is {total} ÷ {a + b} = {k}.",
        f"{name2} gets {b} parts: {b} × {k} = {b * k}.",
    ]
    return q, steps, Fraction(b * k), 0.5


def _average(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    scores = [r.randint(60, 98) for _ in range(r.randint(3, 5))]
    target = r.randint(max(61, sum(scores) // len(scores) - 5), 95)
    n = len(scores) + 1
    need = target * n - sum(scores)
    if not 0 <= need <= 100:  # keep it a possible test score
        target = (sum(scores) + 90) // n
        need = target * n - sum(scores)
    name = r.choice(NAMES)
    listed = ", ".join(map(str, scores))
    q = (
        f"{name}'s test scores are {listed}. What score does {name} need on the next test "
        f"for an average of exactly {target}?"
    )
    steps = [
        f"An average of {target} over {n} tests needs a total of {target} × {n} = {target * n}.",
        f"The scores so far sum to {' + '.join(map(str, scores))} = {sum(scores)}.",
        f"Needed: {target * n} - {sum(scores)} = {need}.",
    ]
    return q, steps, Fraction(need), 0.7


def _system(r: random.Random) -> tuple[str, list[str], Fraction, float]:
    adult, child = r.randint(8, 20), r.randint(3, 7)
    na, nc = r.randint(10, 80), r.randint(10, 80)
    n, total = na + nc, adult * na + child * nc
    q = (
        f"A theatre sells adult tickets for ${adult} and child tickets for ${child}. "
        f"It sold {n} tickets for ${total} in all. How many adult tickets were sold?"
    )
    steps = [
        f"Let a be adult tickets; then child tickets are {n} - a.",
        f"Revenue: {adult}a + {child}({n} - a) = {total}.",
        f"Expand: {adult - child}a + {child * n} = {total}.",
        f"So {adult - child}a = {total - child * n}, and a = {na}.",
    ]
    return q, steps, Fraction(na), 0.8


KINDS: dict[str, tuple[Callable[[random.Random], tuple], int]] = {
    "arithmetic": (_arithmetic, 3),
    "rate": (_rate, 2),
    "work_rate": (_work, 1),
    "percent": (_percent, 2),
    "linear_equation": (_linear, 3),
    "multi_step": (_shopping, 2),
    "ratio": (_ratio, 2),
    "average": (_average, 1),
    "system": (_system, 1),
}


def generate(n: int, seed: int = 0) -> list[dict]:
    """`n` problems: dicts with id, kind, difficulty (0-1), question, steps, solution, answer."""
    names = list(KINDS)
    weights = [KINDS[k][1] for k in names]
    problems = []
    for i in range(n):
        # One string-seeded RNG per problem keeps problem i independent of n.
        r = random.Random(f"{seed}:{i}")
        kind = r.choices(names, weights)[0]
        question, steps, answer, difficulty = KINDS[kind][0](r)
        answer_text = fmt(answer)
        problems.append(
            {
                "id": f"mathgen-{seed}-{i:05d}",
                "kind": kind,
                "difficulty": difficulty,
                "question": question,
                "steps": steps,
                "solution": "\n".join(steps) + f"\n{ANSWER_PREFIX}{answer_text}",
                "answer": answer_text,
            }
        )
    return problems


def as_text(problem: dict) -> str:
    """The corpus document for a problem: question, worked solution, final answer."""
    return f"Question: {problem['question']}\nSolution:\n{problem['solution']}\n"


_ANSWER_RE = re.compile(r"Answer:\s*\$?(-?[\d,]*\.?\d+)")


def extract_answer(text: str) -> str | None:
    """The last `Answer: <number>` in a model's output, canonicalised, or None."""
    found = _ANSWER_RE.findall(text)
    if not found:
        return None
    try:
        return fmt(Fraction(found[-1].replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return None


def check_answer(text: str, answer: str) -> bool:
    """True when the output's final answer equals the reference answer."""
    return extract_answer(text) == answer
