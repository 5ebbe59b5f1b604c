"""data-clean's model-based quality score with a real (tiny) pangu reference model.

The reference model is trained here, as a user would: tokenizer-build and tokenize on
curated text (Shakespeare, Tang and Song poems), `pangu pretrain` with the tiny preset
for a few dozen steps. data-clean then scores held-out clean documents and garbage made
from them (shuffled words or characters, spam lines) in the same domains.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pangu_cli.config import from_dict
from pangu_cli.corpus import bundled_corpus_dir
from pangu_cli.errors import UserError
from pangu_cli.shards import DOCUMENT_SCHEMA, read_shard, write_shard
from stages import pretrain, tokenize, tokenizer_build
from stages.data_clean import DataCleanConfig, run

N_GARBAGE = 10  # garbage twins per kind (en), twice that for zh
SPAM = [
    "CLICK HERE >>> BUY CHEAP REPLICA WATCHES 90% OFF!!! www.best-deals-4u.biz",
    "$$$ make money fast $$$ work from home $$$ call 1-800-555-0199 NOW",
    "casino bonus free spins viagra cialis loans no credit check 24/7",
]


def _docs(domain: str) -> list[dict]:
    return read_shard(bundled_corpus_dir() / f"{domain}-00000.arrow", "document").to_pylist()


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        [{k: r[k] for k in DOCUMENT_SCHEMA.names} for r in rows], DOCUMENT_SCHEMA
    )


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pangu model trained on curated en plays and zh poems (~20 s on 2 cores)."""
    root = tmp_path_factory.mktemp("reference")
    en, zh = _docs("en"), _docs("zh")
    train = [{**r, "text": r["text"][:40000]} for r in en[:30]] + zh[:300]
    write_shard(root / "curated" / "docs.arrow", _table(train))
    tokenizer_build.run(
        tokenizer_build.TokenizerBuildConfig(
            input=str(root / "curated"), vocab_size=512, compare=False
        ),
        root / "tok",
    )
    tokenize.run(
        tokenize.TokenizeConfig(
            input=str(root / "curated"), tokenizer=str(root / "tok"), workers=1
        ),
        root / "tokens",
    )
    cfg = from_dict(
        pretrain.PretrainConfig,
        {
            "model": {"preset": "tiny"},
            "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 5},
            "data": {"input": str(root / "tokens"), "seq_len": 128, "batch_size": 8},
            "train": {"steps": 150, "save_every": 150, "val_every": 1000, "device": "cpu"},
        },
        "",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core box two threads run ~15x slower
    try:
        pretrain.run(cfg, root / "run")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def _garbage(text: str, rng: random.Random) -> dict[str, str]:
    words, chars = text.split(), list(text)
    rng.shuffle(words)
    rng.shuffle(chars)
    return {"shuffled": " ".join(words), "scrambled": "".join(chars)}


def _scoring_input(path: Path) -> dict[str, str]:
    """Held-out clean documents and, for the first N_GARBAGE, garbage twins made from
    them: mostly clean data with a garbage tail, as a crawl is. Returns {id: kind}."""
    rng = random.Random(0)
    rows = []

    def add(domain: str, kind: str, k: int, text: str) -> None:
        rows.append({"id": f"{domain}-{kind}-{k}", "text": text, "source": "t", "domain": domain})

    plays = [r for r in _docs("en")[30:] if len(r["text"]) > 40000][:30]  # not trained on
    assert len(plays) == 30
    for k, r in enumerate(plays):
        for part, start in enumerate((20000, 30000)):
            lines = r["text"][start : start + 2500].splitlines()[1:-1]  # whole lines
            add("en", "clean", 2 * k + part, "\n".join(lines))
        if k < N_GARBAGE:
            for kind, text in _garbage(rows[-2]["text"], rng).items():
                add("en", kind, 2 * k, text)
            add("en", "spam", 2 * k, "\n".join(rng.choice(SPAM) for _ in range(12)) + f" #{k}")
    for k, r in enumerate(_docs("zh")[330:390]):
        add("zh", "clean", k, r["text"])
        if k < 2 * N_GARBAGE:
            add("zh", "shuffled", k, _garbage(r["text"], rng)["scrambled"])
    write_shard(path, _table(rows))
    return {r["id"]: r["id"].split("-")[1] for r in rows}


def test_model_quality_score(reference_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "score.arrow"
    kinds = _scoring_input(src)
    cfg = from_dict(
        DataCleanConfig,
        {
            "input": str(src),
            "workers": 1,
            # only the scorer is under test: no boilerplate, rule or language filter
            # removes the garbage first
            "normalize": {"boilerplate": False},
            "filters": {"rules": {"en": [], "zh": []}},
            "langid": {"keep": {"*": ["*"]}},
            "quality": {"model": str(reference_run), "model_weight": 1.0},
        },
        "",
    )
    manifest = run(cfg, tmp_path / "out")
    counts = manifest["counts"]
    assert counts["in"] == len(kinds) == counts["kept"] + counts["removed"]
    # no rule removes anything; the spam pages repeat each other, dedup may drop some
    assert set(counts["removed_by_reason"]) <= {"dedup.near", "dedup.exact"}
    kept = pa.concat_tables(
        [read_shard(p, "document") for p in sorted((tmp_path / "out").glob("shard-*.arrow"))]
    ).to_pylist()
    calibration = manifest["quality_calibration"]
    assert set(calibration) == {"en", "zh"}
    assert calibration["en"][0] != calibration["zh"][0]  # each domain its own median bpb
    scores: dict[tuple[str, str], list[float]] = {}
    for r in kept:
        assert 0.0 <= r["quality_model"] <= 1.0 and r["quality"] == r["quality_model"]
        assert json.loads(r["features"])  # the rule-based features are recorded too
        scores.setdefault((r["domain"], kinds[r["id"]]), []).append(r["quality_model"])
    table = {key: round(float(np.mean(v)), 3) for key, v in sorted(scores.items())}
    print("mean model score by (domain, kind):", table)
    by_id = {r["id"]: r["quality_model"] for r in kept}
    # A 0.25M-parameter model trained for seconds knows spelling and common words far
    # better than word order: every scrambled text loses to its clean original; shuffled
    # words lose on average (and in most pairs).
    for domain, garbage, need in (
        ("en", "scrambled", 1.0),
        ("en", "spam", 1.0),
        ("zh", "shuffled", 1.0),
        ("en", "shuffled", 0.7),
    ):
        assert table[domain, "clean"] > table[domain, garbage] + 0.2, table
        pairs = [int(i.rsplit("-", 1)[1]) for i in kinds if i.startswith(f"{domain}-{garbage}-")]
        pairs = [k for k in pairs if f"{domain}-{garbage}-{k}" in by_id]
        wins = sum(by_id[f"{domain}-clean-{k}"] > by_id[f"{domain}-{garbage}-{k}"] for k in pairs)
        print(domain, garbage, f"clean wins {wins}/{len(pairs)}")
        # spam pages repeat each other: dedup keeps a few of them
        assert wins >= need * len(pairs) and len(pairs) >= 2, (domain, garbage, wins)
    # calibrated per domain: the median document of each domain scores about 0.5
    for domain in ("en", "zh"):
        values = [v for (d, _), vs in scores.items() if d == domain for v in vs]
        assert 0.4 <= float(np.median(values)) <= 0.6


def test_quality_model_errors(reference_run: Path, tmp_path: Path) -> None:
    from pangu_cli.cleaning.quality import ModelScorer, QualityConfig

    checkpoint = sorted((reference_run / "checkpoints").glob("step_*"))[-1]
    scorer = ModelScorer(QualityConfig(model=str(checkpoint)))  # one checkpoint works too
    assert scorer.bits_per_byte(["To be, or not to be"])[0] > 0
    with pytest.raises(UserError, match="no such run"):
        ModelScorer(QualityConfig(model=str(tmp_path / "nope")))
    with pytest.raises(UserError, match="holds no checkpoint"):
        ModelScorer(QualityConfig(model=str(tmp_path)))
