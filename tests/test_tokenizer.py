"""`pangu tokenizer-build` and the tokenizer library."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pangu_cli import tokenizer as tk
from pangu_cli.errors import UserError
from stages.tokenizer_build import TokenizerBuildConfig, run

# Code point ranges to draw from: ASCII (controls included), Latin, Greek/Cyrillic,
# Arabic, Devanagari, CJK, kana, Hangul, emoji, and anything at all.
RANGES = [
    (0x00, 0x7F), (0x80, 0x24F), (0x370, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
    (0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x0, 0x10FFFF),
]  # fmt: skip
EDGE_CASES = [
    "", " ", "   ", "\t", "\n", "\r\n", "  leading", "trailing  ", "a  b   c", "\t\tx\t",
    "\n\n\nx\n\n", "\x00\x01\x7f", "\x1b[32m红\x1b[m", "👨‍👩‍👧‍👦", "مرحبا بالعالم", "你好，世界。",
    "<|eod|>", "text <|pad|> more", "\ufeffbom", "e\u0301", "\U0010ffff", " \u3000 ",
]  # fmt: skip


def random_text(r: random.Random) -> str:
    chars = []
    for _ in range(r.randint(0, 60)):
        lo, hi = r.choice(RANGES)
        c = r.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:  # surrogates are not UTF-8 text
            c = 0x20
        chars.append(chr(c) * r.choice([1, 1, 1, 3]))
    return "".join(chars)


def assert_lossless(tok, seed: int, n_random: int) -> None:
    """EDGE_CASES and `n_random` random multi-script strings decode back to themselves,
    and plain text never encodes to a special (control) token."""
    r = random.Random(seed)
    texts = EDGE_CASES + [random_text(r) for _ in range(n_random)]
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    for text, back, enc in zip(texts, decoded, encodings, strict=True):
        assert back == text
        assert all(i >= tk.NUM_SPECIAL for i in enc.ids)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    config = TokenizerBuildConfig(vocab_size=1024, max_chars_per_doc=20000, heldout_fraction=0.1)
    return out, run(config, out)


def test_special_tokens_take_the_first_ids(built: tuple[Path, dict]) -> None:
    tok = tk.load_tokenizer(built[0])
    names = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eod|>", "<|system|>"]
    names += ["<|user|>", "<|assistant|>", "<|end_of_turn|>"]
    names += [f"<|reserved_{i}|>" for i in range(8)]
    assert tk.SPECIAL_TOKENS == names
    for i, name in enumerate(names):
        assert tok.token_to_id(name) == i
    assert (tk.PAD_ID, tk.BOS_ID, tk.EOS_ID, tk.EOD_ID) == (0, 1, 2, 3)
    assert tk.eod_id(tok) == 3
    assert tk.vocab_size(tok) == 1024
    assert built[1]["special_tokens"]["<|eod|>"] == 3


def test_lossless_on_random_multiscript_text(built: tuple[Path, dict]) -> None:
    assert_lossless(tk.load_tokenizer(built[0], plain_text=True), seed=1234, n_random=3000)


def test_byte_lengths_add_up_to_utf8_bytes(built: tuple[Path, dict]) -> None:
    tok = tk.load_tokenizer(built[0], plain_text=True)
    lengths = tk.token_byte_lengths(tok)
    assert lengths.dtype == np.int64 and len(lengths) == tk.vocab_size(tok)
    assert (lengths[: tk.NUM_SPECIAL] == 0).all() and (lengths[tk.NUM_SPECIAL :] >= 1).all()
    r = random.Random(5)
    for text in EDGE_CASES + [random_text(r) for _ in range(300)]:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert lengths[ids].sum() == len(text.encode("utf-8"))


def test_special_strings_in_text(built: tuple[Path, dict]) -> None:
    text = "a<|eod|>b"
    assert tk.EOD_ID in tk.load_tokenizer(built[0]).encode(text).ids
    assert tk.EOD_ID not in tk.load_tokenizer(built[0], plain_text=True).encode(text).ids


def test_loads_in_transformers(built: tuple[Path, dict]) -> None:
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(str(built[0]))
    assert (fast.pad_token_id, fast.bos_token_id, fast.eos_token_id) == (0, 1, 3)
    for text in ["  Hello,\tworld!\n", "莫笑农家腊酒浑", "def f(x):\n    return x  # ok"]:
        ids = fast(text)["input_ids"]
        assert ids == tk.load_tokenizer(built[0]).encode(text).ids  # no BOS/EOS added
        assert fast.decode(ids) == text
    plain = transformers.PreTrainedTokenizerFast(tokenizer_file=str(built[0] / "tokenizer.json"))
    assert plain.decode(plain("x  y")["input_ids"]) == "x  y"


def test_manifest_reports_per_domain_compression(built: tuple[Path, dict]) -> None:
    out, manifest = built
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["stage"] == "tokenizer-build"
    assert set(manifest["domains"]) == {"en", "zh", "code", "math"}
    for stats in manifest["domains"].values():
        assert stats["heldout_documents"] >= 1 and stats["bytes_per_token"] >= 1.0
        assert stats["chars_per_token"] > 0
    # Chinese characters are 3 bytes each: more bytes, fewer characters per token.
    zh, en = manifest["domains"]["zh"], manifest["domains"]["en"]
    assert zh["bytes_per_token"] > zh["chars_per_token"]
    assert en["bytes_per_token"] == pytest.approx(en["chars_per_token"], rel=0.01)
    assert manifest["tokenizer_fingerprint"] == tk.tokenizer_fingerprint(out)
    assert manifest["counts"]["vocab_size"] == 1024


def test_refuses_to_overwrite_without_force(built: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "t"
    config = TokenizerBuildConfig(vocab_size=400, max_chars_per_doc=2000)
    first = run(config, out)
    with pytest.raises(UserError, match="--force"):
        run(config, out)
    assert run(config, out, force=True)["stage"] == "tokenizer-build"
    assert first["tokenizer_fingerprint"] == tk.tokenizer_fingerprint(out)  # deterministic
    cli = [sys.executable, "-m", "pangu_cli.main", "tokenizer-build", "--config", "tiny"]
    result = subprocess.run([*cli, "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such tokenizer"):
        tk.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid tokenizer"):
        tk.load_tokenizer(tmp_path)
    with pytest.raises(UserError, match="too small"):
        run(TokenizerBuildConfig(vocab_size=100), tmp_path / "x")
    cli = [sys.executable, "-m", "pangu_cli.main", "tokenizer-build", "--out", str(tmp_path / "y")]
    result = subprocess.run(
        [*cli, "--input", str(tmp_path / "missing"), "vocab_size=500"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "missing: no such file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y").exists()
