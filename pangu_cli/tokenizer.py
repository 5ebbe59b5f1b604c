"""The toolkit's tokenizer: byte-level BPE (HF `tokenizers`) with reserved special tokens.

Special tokens take ids 0..15 in a fixed order, so every tokenizer this toolkit builds
agrees on them whatever its vocabulary size. Byte-level BPE with all 256 bytes in the
base alphabet encodes any UTF-8 text losslessly (no unknown token).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pangu_cli.errors import UserError

TOKENIZER_FILE = "tokenizer.json"

PAD = "<|pad|>"
BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
EOD = "<|eod|>"  # end of document: separates packed documents in pretraining
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END_OF_TURN = "<|end_of_turn|>"
RESERVED = [f"<|reserved_{i}|>" for i in range(8)]

SPECIAL_TOKENS = [PAD, BEGIN_OF_TEXT, END_OF_TEXT, EOD, SYSTEM, USER, ASSISTANT, END_OF_TURN]
SPECIAL_TOKENS += RESERVED
SPECIAL_IDS = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
PAD_ID, BOS_ID, EOS_ID, EOD_ID = (SPECIAL_IDS[t] for t in (PAD, BEGIN_OF_TEXT, END_OF_TEXT, EOD))
SYSTEM_ID, USER_ID, ASSISTANT_ID, END_OF_TURN_ID = (
    SPECIAL_IDS[t] for t in (SYSTEM, USER, ASSISTANT, END_OF_TURN)
)
NUM_SPECIAL = len(SPECIAL_TOKENS)  # 16


def tokenizer_file(path: str | Path) -> Path:
    """`path` itself, or the tokenizer.json inside a directory (e.g. a tokenizer-build output)."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file}: no such tokenizer file (run `pangu tokenizer-build` first)")
    return file


def load_tokenizer(path: str | Path, plain_text: bool = False) -> Tokenizer:
    """Load a tokenizer.json, or the one inside a directory.

    plain_text=True encodes special-token strings found in the text (say a document
    quoting "<|eod|>") as ordinary text, so corpus data can never inject control tokens.
    """
    file = tokenizer_file(path)
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust side raises a bare Exception on bad JSON
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{file}: not a valid tokenizer file ({first})") from None
    check_special_tokens(tok, file)
    tok.encode_special_tokens = plain_text
    return tok


def check_special_tokens(tok: Tokenizer, where: str | Path) -> None:
    """The toolkit relies on the reserved ids; a foreign tokenizer is refused clearly."""
    for token, expected in SPECIAL_IDS.items():
        got = tok.token_to_id(token)
        if got != expected:
            raise UserError(
                f"{where}: special token {token} has id {got}, expected {expected} "
                "(not a tokenizer built by `pangu tokenizer-build`)"
            )


def tokenizer_fingerprint(path: str | Path) -> str:
    """sha256 of the tokenizer.json bytes, as 'sha256:<hex>'."""
    data = tokenizer_file(path).read_bytes()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def eod_id(tok: Tokenizer) -> int:
    """Id of the end-of-document token that separates packed documents."""
    token_id = tok.token_to_id(EOD)
    if token_id is None:
        raise UserError(f"tokenizer has no {EOD} token")
    return token_id


def vocab_size(tok: Tokenizer) -> int:
    """Number of token ids, special tokens included (the model's embedding rows)."""
    return tok.get_vocab_size(with_added_tokens=True)


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id decodes to (int64); 0 for special tokens.

    For byte-level BPE a token string holds one character per byte, so its length is
    its byte count. Used to turn per-token losses into bits per byte.
    """
    lengths = np.zeros(vocab_size(tok), dtype=np.int64)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    for token, i in tok.get_vocab(with_added_tokens=True).items():
        if i not in special:
            lengths[i] = len(token)
    return lengths


def hf_special_tokens() -> dict[str, object]:
    """Special-token settings for transformers' PreTrainedTokenizerFast (tokenizer_config.json)."""
    return {
        "bos_token": BEGIN_OF_TEXT,
        "eos_token": EOD,
        "pad_token": PAD,
        "additional_special_tokens": [
            t for t in SPECIAL_TOKENS if t not in (BEGIN_OF_TEXT, EOD, PAD)
        ],
    }


def write_hf_config(directory: str | Path) -> list[str]:
    """tokenizer_config.json + special_tokens_map.json, so that
    `PreTrainedTokenizerFast.from_pretrained(dir)` (or AutoTokenizer) knows bos/eos/pad."""
    from pangu_cli.artifacts import atomic_write_text

    directory = Path(directory)
    special = hf_special_tokens()
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,  # would break lossless decoding
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 1_000_000_000,
        **special,
    }
    atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(directory / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")
    return ["tokenizer_config.json", "special_tokens_map.json"]


# ------------------------------------------------------- domain-wise vocabularies
#
# The report trains a vocabulary per domain and merges them. A BPE vocabulary is an
# ordered list of merges, and a token is only reachable if encoding its own string
# produces it, which depends on every merge ranked before it. Taking the union of
# the per-domain merge lists does not give that: a merge from one domain can fire first
# and split another domain's token differently, leaving it unreachable. So the merged
# list is built one token at a time, in an interleaved order of the domains' lists, and
# each token enters only through a merge appended at the end, of the two pieces the
# current list encodes its string into. A merge at the end fires only after every
# earlier one is done, so tokens already in stay reachable and the new one is too.
# A token the current list splits into three or more pieces (another domain's merges
# cut its path) is bridged: its first two pieces are joined into a new token, and so
# on until two are left. Without bridges the math domain lost "Ġdollars", "Divide" and
# 50 more of its most frequent words (-20% bytes per token at 8192). A token already
# present is a duplicate (shared) and costs nothing.


def bpe_encode(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE of one pre-token (byte-level characters): lowest-ranked pair first, as HF does."""
    symbols = list(word)
    while len(symbols) > 1:
        best, rank = None, None
        for pair in zip(symbols, symbols[1:], strict=False):
            r = ranks.get(pair)
            if r is not None and (rank is None or r < rank):
                best, rank = pair, r
        if best is None:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def bpe_merges(tok: Tokenizer) -> list[tuple[str, str]]:
    """A trained BPE's merges, in rank order."""
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


# The report's vocabulary by category (percent of 153,376 tokens). A domain takes its
# category's share: en English, zh Chinese, math mathematics; code and any other domain
# share "other" (what is not natural language or maths: code among it).
REPORT_SHARES = {
    "en": 44.0, "zh": 27.0, "other": 20.0, "latin": 3.0,
    "ar": 1.8, "ko": 1.8, "math": 1.4, "ja": 1.0,
}  # fmt: skip
ALIASES = {"english": "en", "chinese": "zh", "arabic": "ar", "korean": "ko", "japanese": "ja"}


def domain_shares(domains: list[str], shares: dict[str, float]) -> dict[str, float]:
    """Each domain's fraction of the merge budget: `shares` where given, else the
    report's table (a category shared by several domains is split between them)."""
    category = {}
    for d in domains:
        c = ALIASES.get(d.lower(), d.lower())
        category[d] = c if c in REPORT_SHARES else "other"
    weights = {}
    for d in domains:
        if d in shares:
            weights[d] = float(shares[d])
        else:
            same = sum(1 for e in domains if e not in shares and category[e] == category[d])
            weights[d] = REPORT_SHARES[category[d]] / same
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"config shares: {shares} gives no domain a positive share")
    return {d: w / total for d, w in weights.items()}


def merge_vocabularies(
    merges: dict[str, list[tuple[str, str]]], shares: dict[str, float], n_merges: int
) -> tuple[list[tuple[str, str]], dict[str, dict[str, int]]]:
    """One merge list of at most `n_merges` new tokens from per-domain merge lists.

    Domain d's candidates are its merge results in its own order, taken at rate
    shares[d]: its i-th comes at (i + 1) / shares[d], so each domain keeps its order and
    gets its share of the budget; a duplicate costs nothing, so shared tokens leave room
    for more of every domain. Returns the merges and per-domain counts (added, bridges:
    tokens added to reach one, shared, skipped: no path found)."""
    import heapq

    from tokenizers import pre_tokenizers

    vocab = set(pre_tokenizers.ByteLevel.alphabet())
    ranks: dict[tuple[str, str], int] = {}
    out: list[tuple[str, str]] = []
    stats = {d: {"added": 0, "bridges": 0, "shared": 0, "skipped": 0} for d in merges}

    def append(a: str, b: str) -> None:
        ranks[a, b] = len(out)
        out.append((a, b))
        vocab.add(a + b)

    heap = [(1.0 / shares[d], k, d, 0) for k, d in enumerate(merges) if merges[d] and shares[d] > 0]
    heapq.heapify(heap)
    while heap and len(out) < n_merges:
        _, k, d, i = heapq.heappop(heap)
        if i + 1 < len(merges[d]):
            heapq.heappush(heap, ((i + 2) / shares[d], k, d, i + 1))
        token = "".join(merges[d][i])
        if token in vocab:
            stats[d]["shared"] += 1
            continue
        pieces = bpe_encode(token, ranks)
        # Three or more pieces: the domain's own path was cut by another domain's merges
        # ("Ġdollars" -> Ġdo + ll + ars). Bridge it: join the first two pieces into a new
        # token, as long as that token forms from them, until two pieces are left.
        while 2 < len(pieces) and len(out) + len(pieces) - 1 <= n_merges:
            left = pieces[0] + pieces[1]
            if left in vocab or bpe_encode(left, ranks) != pieces[:2]:
                break
            append(pieces[0], pieces[1])
            stats[d]["bridges"] += 1
            shorter = bpe_encode(token, ranks)
            if len(shorter) >= len(pieces):
                break
            pieces = shorter
        if len(pieces) != 2 or len(out) >= n_merges:
            stats[d]["skipped"] += 1
            continue
        append(pieces[0], pieces[1])
        stats[d]["added"] += 1
    return out, stats


def tokenizer_from_merges(merges: list[tuple[str, str]]) -> Tokenizer:
    """A byte-level BPE: special tokens 0..15, the 256 byte tokens, then one per merge."""
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def unreachable_tokens(tok: Tokenizer) -> list[str]:
    """Tokens (besides the special ones) that the BPE model does not produce from their
    own string: a valid vocabulary has none."""
    model = tok.model
    special = set(SPECIAL_TOKENS)
    return [
        token
        for token, i in tok.get_vocab(with_added_tokens=False).items()
        if token not in special and [t.id for t in model.tokenize(token)] != [i]
    ]
