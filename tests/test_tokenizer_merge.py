"""Domain-wise tokenizer-build: per-domain BPE vocabularies merged into one valid BPE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import pre_tokenizers

from pangu_cli import tokenizer as tk
from pangu_cli.errors import UserError
from stages.tokenizer_build import TokenizerBuildConfig, run
from tests.test_tokenizer import assert_lossless

BYTES = set(pre_tokenizers.ByteLevel.alphabet())


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("merged") / "tokenizer"
    config = TokenizerBuildConfig(
        vocab_size=1024, mode="domain_merged", max_chars_per_doc=20000, heldout_fraction=0.1
    )
    return out, run(config, out)


def test_merged_tokenizer_is_a_valid_bpe(merged: tuple[Path, dict]) -> None:
    out, manifest = merged
    tok = tk.load_tokenizer(out, plain_text=True)
    assert tk.vocab_size(tok) == 1024 == manifest["counts"]["vocab_size"]
    assert manifest["mode"] == "domain_merged"
    # every merge's parts exist before it, and every token encodes to itself
    model = json.loads((out / "tokenizer.json").read_text())["model"]
    seen = set(BYTES)
    for a, b in (m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"]):
        assert a in seen and b in seen
        seen.add(a + b)
    assert seen == set(model["vocab"]) - set(tk.SPECIAL_TOKENS)
    assert tk.unreachable_tokens(tok) == []
    # lossless on any UTF-8 text; special strings in text stay text
    assert_lossless(tok, seed=7, n_random=2000)


def test_manifest_compares_with_mixed(merged: tuple[Path, dict]) -> None:
    _, manifest = merged
    shares = {d: s["share"] for d, s in manifest["merge"].items()}
    report = {"en": 44, "zh": 27, "code": 20, "math": 1.4}  # DESIGN.md's vocabulary table
    assert shares == pytest.approx({d: v / 92.4 for d, v in report.items()}, abs=1e-4)
    for s in manifest["merge"].values():
        assert s["added"] > 0 and s["trained_merges"] >= s["added"]
    added = sum(s["added"] + s["bridges"] for s in manifest["merge"].values())
    assert added == 1024 - 16 - 256
    table = manifest["comparison"]
    assert set(table) == {"en", "zh", "code", "math", "all"}
    for row in table.values():
        for mode in ("domain_merged", "mixed"):
            assert row[mode]["bytes_per_token"] >= row[mode]["chars_per_token"] > 0
    assert table["zh"]["bytes_per_token_change_pct"] > 10  # the report's Chinese share


def test_merge_repairs_a_conflicting_path() -> None:
    """Domain A builds "abc" as ab + c; domain B merges b + c first. Interleaved naively
    ("b c" before "ab c"), "ab" never forms inside "abc" and A's token is unreachable;
    the merge adds "abc" through the pieces the list before it gives, a + bc."""
    merges = {"A": [("a", "b"), ("ab", "c")], "B": [("b", "c"), ("x", "y")]}
    out, stats = tk.merge_vocabularies(merges, {"A": 1.0, "B": 2.0}, 10)
    assert out == [("b", "c"), ("a", "b"), ("x", "y"), ("a", "bc")]
    assert stats["A"] == {"added": 2, "bridges": 0, "shared": 0, "skipped": 0}
    tok = tk.tokenizer_from_merges(out)
    assert tk.unreachable_tokens(tok) == []
    assert [t.value for t in tok.model.tokenize("abc")] == ["abc"]
    # duplicates cost nothing; the budget is met exactly
    out, stats = tk.merge_vocabularies({"A": merges["A"], "C": merges["A"]}, {"A": 1, "C": 1}, 2)
    assert out == [("a", "b"), ("ab", "c")]
    assert stats["C"] == {"added": 0, "bridges": 0, "shared": 1, "skipped": 0}


def test_merge_bridges_a_cut_path() -> None:
    """Domain B's merges split "abcd" into a + bc + d; the merge bridges it through a new
    token "abc" (a + bc) and adds "abcd" as abc + d."""
    merges = {"A": [("a", "b"), ("c", "d"), ("ab", "cd")], "B": [("b", "c")]}
    out, stats = tk.merge_vocabularies(merges, {"A": 1.0, "B": 10.0}, 10)
    assert out == [("b", "c"), ("a", "b"), ("c", "d"), ("a", "bc"), ("abc", "d")]
    assert stats["A"] == {"added": 3, "bridges": 1, "shared": 0, "skipped": 0}
    tok = tk.tokenizer_from_merges(out)
    assert tk.unreachable_tokens(tok) == []
    assert [t.value for t in tok.model.tokenize("abcd")] == ["abcd"]
    # no budget left for the bridge: skipped, never over budget
    out, stats = tk.merge_vocabularies(merges, {"A": 1.0, "B": 10.0}, 4)
    assert len(out) <= 4 and stats["A"]["skipped"] == 1


def test_domain_shares() -> None:
    got = tk.domain_shares(["en", "zh", "code", "math"], {})
    assert got["en"] / got["zh"] == pytest.approx(44 / 27)
    assert got["code"] / got["math"] == pytest.approx(20 / 1.4)
    two_other = tk.domain_shares(["en", "code", "web"], {})  # code and web split "other"
    assert two_other["code"] == pytest.approx(two_other["web"])
    assert tk.domain_shares(["en", "zh"], {"zh": 1, "en": 3}) == {"en": 0.75, "zh": 0.25}
    with pytest.raises(UserError, match="shares"):
        tk.domain_shares(["en"], {"en": 0})
