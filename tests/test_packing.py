"""Packing: document ids and positions, held-out split, validation batches, token shards.
The training stream (MixtureLoader) is tested in test_mixture.py."""

import numpy as np
import pyarrow as pa

from pangu_cli.packing import (
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
