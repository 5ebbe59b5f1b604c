"""Packing: document ids and positions, the deterministic resumable stream, held-out split."""

import numpy as np
import pyarrow as pa
import pytest

from pangu_cli.packing import (
    PackedLoader,
    TokenCorpus,
    load_token_corpus,
    pack_rows,
    split_heldout,
    validation_batches,
)
from pangu_cli.shards import write_shard

EOD = 3


def corpus_of(docs, domains=None):
    lengths = [len(d) for d in docs]
    names = sorted(set(domains or ["en"] * len(docs)))
    return TokenCorpus(
        tokens=np.concatenate([np.array(d, np.uint32) for d in docs]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        domains=np.array([names.index(x) for x in (domains or ["en"] * len(docs))], np.int32),
        domain_names=names,
        ids=[f"doc{i}" for i in range(len(docs))],
        n_bytes=np.array(lengths, np.int64),
    )


def test_pack_rows_doc_ids_and_positions():
    row = np.array([[10, 11, EOD, 20, 21, 22, EOD, 30, 31]])
    inputs, targets, pos, doc = pack_rows(row, EOD, reset_position_ids=True, document_mask=True)
    assert inputs.tolist() == [[10, 11, EOD, 20, 21, 22, EOD, 30]]
    assert targets.tolist() == [[11, EOD, 20, 21, 22, EOD, 30, 31]]
    assert doc.tolist() == [[0, 0, 0, 1, 1, 1, 1, 2]]
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]
    _, _, pos, doc = pack_rows(row, EOD, reset_position_ids=False, document_mask=False)
    assert pos.tolist() == [list(range(8))] and doc is None


def test_stream_covers_every_document_once_per_epoch_with_eod():
    docs = [[100 + i] * (i + 1) for i in range(7)]  # 28 tokens + 7 EODs = 35 per epoch
    loader = PackedLoader(corpus_of(docs), seq_len=4, batch_size=1, eod_id=EOD, seed=1)
    stream = []
    for _ in range(7):  # 7 rows of 5 tokens = one epoch exactly
        b = loader.next_batch()
        stream += b.inputs[0].tolist() + [b.targets[0, -1].item()]
    assert stream.count(EOD) == 7
    for i in range(7):
        assert stream.count(100 + i) == i + 1
    assert loader.epoch == 1 and loader.cursor == 0


def test_same_seed_same_stream_and_exact_resume():
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 500, rng.integers(1, 60)).tolist() for _ in range(40)]
    corpus = corpus_of(docs)

    def make():
        return PackedLoader(corpus, seq_len=16, batch_size=3, eod_id=EOD, seed=7)

    a, b = make(), make()
    for _ in range(5):
        assert np.array_equal(a.next_batch().inputs, b.next_batch().inputs)
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(30)]  # crosses epoch boundaries
    c = make()
    c.load_state_dict(state)
    for e in expected:
        got = c.next_batch()
        assert np.array_equal(got.inputs, e.inputs) and np.array_equal(got.doc_ids, e.doc_ids)
    assert c.state_dict() == a.state_dict()
    other_seed = PackedLoader(corpus, seq_len=16, batch_size=3, eod_id=EOD, seed=8)
    assert not np.array_equal(other_seed.next_batch().inputs, make().next_batch().inputs)


def test_batches_mix_documents():
    """Rows are shuffled after packing: a batch does not walk one long document."""
    docs = [[100 + i] * 400 for i in range(8)]
    loader = PackedLoader(corpus_of(docs), seq_len=15, batch_size=8, eod_id=EOD, seed=0)
    first = loader.next_batch().inputs[:, 0].tolist()
    assert len(set(first)) >= 4


def test_domain_token_counts_add_up():
    docs = [[10] * 30, [20] * 50, [30] * 20]
    loader = PackedLoader(
        corpus_of(docs, ["en", "zh", "code"]), seq_len=9, batch_size=2, eod_id=EOD, seed=0
    )
    total = 0
    for _ in range(10):
        b = loader.next_batch()
        assert sum(b.domain_tokens.values()) == b.targets.numel()
        total += b.targets.numel()
    assert sum(loader.tokens_per_domain.values()) == total


def test_heldout_split_per_domain():
    docs = [[5] * 100 for _ in range(10)] + [[6] * 100] + [[7] * 10 for _ in range(3)]
    domains = ["en"] * 10 + ["zh"] + ["code"] * 3
    corpus = corpus_of(docs, domains)
    train, val = split_heldout(corpus, 0.25)
    assert len(set(train) | set(val)) == 14 and not set(train) & set(val)
    val_domains = [corpus.domain_names[corpus.domains[i]] for i in val]
    assert val_domains.count("en") == 3  # 25% of 1000 tokens -> 300 tokens
    assert "zh" not in val_domains  # a single document stays in training
    assert val_domains.count("code") == 1
    assert split_heldout(corpus, 0.25)[1].tolist() == val.tolist()  # stable


def test_validation_batches_pad_with_ignored_targets():
    corpus = corpus_of([[10] * 5, [20] * 3], ["en", "zh"])
    batches = validation_batches(corpus, seq_len=8, batch_size=4, eod_id=EOD, max_rows_per_domain=4)
    assert [name for name, _ in batches] == ["en", "zh"]
    en = batches[0][1]
    assert en.targets.tolist() == [[10, 10, 10, 10, EOD, -100, -100, -100]]
    assert en.domain_tokens == {"en": 5}


def test_load_token_corpus(tmp_path):
    table = pa.table(
        {
            "id": ["a", "b"],
            "tokens": pa.array([[1, 2, 3], [4]], pa.list_(pa.uint32())),
            "domain": ["en", "zh"],
        }
    )
    write_shard(tmp_path / "shard-00000.arrow", table)
    corpus = load_token_corpus(tmp_path)
    assert corpus.n_docs == 2 and corpus.doc(0).tolist() == [1, 2, 3]
    assert corpus.domain_names == ["en", "zh"]


def test_loader_refuses_another_seed_on_resume():
    from pangu_cli.errors import UserError

    corpus = corpus_of([[10] * 5])
    a = PackedLoader(corpus, seq_len=4, batch_size=1, eod_id=EOD, seed=1)
    b = PackedLoader(corpus, seq_len=4, batch_size=1, eod_id=EOD, seed=2)
    with pytest.raises(UserError, match="same --seed"):
        b.load_state_dict(a.state_dict())
