"""MixtureLoader as a packed stream: every document once per epoch, a deterministic stream
that resumes exactly (whatever the batch sizes on the way), shuffled rows, token counts.
Mixture shares, quality weights and the curriculum are tested in test_phases.py."""

import json

import numpy as np
import pytest

from pangu_cli.errors import UserError
from pangu_cli.mixture import MixtureLoader
from tests.test_packing import EOD, corpus_of


def loader_of(corpus, mixture=None, seq_len=16, batch_size=3, seed=7) -> MixtureLoader:
    return MixtureLoader(
        corpus,
        mixture=mixture or {"en": 1.0},
        seq_len=seq_len,
        batch_size=batch_size,
        eod_id=EOD,
        seed=seed,
    )


def two_domains():
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 500, rng.integers(1, 60)).tolist() for _ in range(40)]
    return corpus_of(docs, ["en", "zh"] * 20), {"en": 0.7, "zh": 0.3}


def test_one_domain_stream_covers_every_document_once_per_epoch_with_eod():
    docs = [[100 + i] * (i + 1) for i in range(7)]  # 28 tokens + 7 EODs = 35 per epoch
    loader = loader_of(corpus_of(docs), seq_len=4, batch_size=1, seed=1)
    stream = []
    for _ in range(7):  # 7 rows of 5 tokens = one epoch exactly
        b = loader.next_batch()
        stream += b.inputs[0].tolist() + [b.targets[0, -1].item()]
    assert stream.count(EOD) == 7
    for i in range(7):
        assert stream.count(100 + i) == i + 1
    en = loader.streams["en"]
    assert en.epoch == 1 and en.cursor == 0


def test_same_seed_same_stream_and_exact_resume():
    corpus, mixture = two_domains()
    a, b = loader_of(corpus, mixture), loader_of(corpus, mixture)
    for _ in range(5):
        assert np.array_equal(a.next_batch().inputs, b.next_batch().inputs)
    state = json.loads(json.dumps(a.state_dict()))  # a checkpoint stores it as JSON
    expected = [a.next_batch() for _ in range(30)]  # crosses epoch boundaries
    assert a.streams["en"].epoch >= 1 and a.streams["zh"].epoch >= 1
    c = loader_of(corpus, mixture)
    c.load_state_dict(state)
    for e in expected:
        got = c.next_batch()
        assert np.array_equal(got.inputs, e.inputs) and np.array_equal(got.doc_ids, e.doc_ids)
        assert got.documents == e.documents
    assert c.state_dict() == a.state_dict()
    other_seed = loader_of(corpus, mixture, seed=8)
    assert not np.array_equal(other_seed.next_batch().inputs, loader_of(corpus).next_batch().inputs)


def test_row_stream_does_not_depend_on_batch_size():
    """The loader yields the global batch; another world size (another split of it, or a
    batch ramp) reads the same rows in the same order."""
    corpus, mixture = two_domains()
    big, small = loader_of(corpus, mixture), loader_of(corpus, mixture)
    rows_big = [big.next_batch(8).inputs for _ in range(3)]
    rows_small = [small.next_batch(s).inputs for s in (2, 6, 4, 4, 3, 5)]
    assert np.array_equal(np.concatenate(rows_big), np.concatenate(rows_small))
    assert big.state_dict() == small.state_dict()


def test_batches_mix_documents():
    """Rows are shuffled after packing: a batch does not walk one long document."""
    docs = [[100 + i] * 400 for i in range(8)]
    loader = loader_of(corpus_of(docs), seq_len=15, batch_size=8, seed=0)
    first = loader.next_batch().inputs[:, 0].tolist()
    assert len(set(first)) >= 4


def test_domain_token_counts_add_up():
    docs = [[10] * 30, [20] * 50, [30] * 20]
    corpus = corpus_of(docs, ["en", "zh", "code"])
    loader = loader_of(corpus, {"en": 0.3, "zh": 0.5, "code": 0.2}, seq_len=9, batch_size=2)
    total = 0
    for _ in range(10):
        b = loader.next_batch()
        assert sum(b.domain_tokens.values()) == b.targets.numel()
        total += b.targets.numel()
    assert sum(loader.tokens_per_domain.values()) == total


def test_loader_refuses_another_seed_length_or_mixture_on_resume():
    corpus, mixture = two_domains()
    state = loader_of(corpus, mixture, seed=1).state_dict()
    with pytest.raises(UserError, match="same --seed"):
        loader_of(corpus, mixture, seed=2).load_state_dict(state)
    with pytest.raises(UserError, match="same data.seq_len"):
        loader_of(corpus, mixture, seq_len=8, seed=1).load_state_dict(state)
    with pytest.raises(UserError, match="another domain mixture"):
        loader_of(corpus, {"en": 0.5, "zh": 0.5}, seed=1).load_state_dict(state)


def test_a_domain_shorter_than_one_row_is_refused():
    with pytest.raises(UserError, match="fewer training tokens than one sequence of 17"):
        loader_of(corpus_of([[10] * 5, [11] * 5]))
