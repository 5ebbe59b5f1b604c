"""Gopher repetition: which of several equally frequent n-grams is judged must not depend
on the process (Python's string hash changes with PYTHONHASHSEED)."""

import os
import subprocess
import sys
import textwrap

from pangu_cli.cleaning.gopher import GopherRepetitionConfig, gopher_repetition

# Two bigrams occur twice each and every other bigram once: the long one covers over 20%
# of the characters (a top-2-gram verdict), the short one does not.
LONG = "extraordinarily uncharacteristically"
FILLER = "one two three four five six seven eight nine ten eleven twelve"


def verdict(first: str, second: str) -> str | None:
    text = f"{first} {FILLER} {second} alpha {first} beta {second} gamma"
    cfg = GopherRepetitionConfig(top_n_grams=[[2, 0.2]], dup_n_grams=[])
    return gopher_repetition(text, text.split(), "en", cfg)


def test_ties_go_to_the_first_ngram():
    assert verdict(LONG, "a b") == "gopher_repetition.top_2_gram"
    assert verdict("a b", LONG) is None


def test_same_verdict_under_any_hash_seed():
    code = textwrap.dedent(
        """
        from tests.test_gopher import LONG, verdict
        print(verdict(LONG, "a b"), verdict("a b", LONG))
        """
    )
    seen = set()
    for seed in ("0", "1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        seen.add(out.stdout)
    assert seen == {"gopher_repetition.top_2_gram None\n"}
