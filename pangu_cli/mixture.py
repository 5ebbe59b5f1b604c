"""A phase's data loader: domains sampled by the phase mixture, documents weighted by
quality, reasoning data easy -> hard, packed rows with document boundaries.

Each domain is its own packed stream (documents joined with EODs, cut into rows of
seq_len + 1). Per epoch of a domain, each document appears quality / mean quality times
(the fraction by a coin flip), so higher-quality documents are seen more often; the order
is random and the packed rows are shuffled, so a batch mixes documents instead of walking
one long document for many steps (Megatron's sequence-level shuffle). With a curriculum the
order is by difficulty (ties random) and rows are shuffled only within small windows, so
the stream still goes from easy to hard. A one-domain mixture is a plain packed stream.

Rows are dealt to domains by smooth weighted round robin: each row, every domain gains its
target share in credit and the richest domain gives one row. Every domain's row count is
within one row of its target at all times, so the token mixture is the configured one
whatever the run length. The position (credits plus each domain's epoch and cursor) is
JSON and holds nothing about ranks: the loader produces the global batch, so a checkpoint
resumes at any world size.
"""

from __future__ import annotations

import numpy as np

from pangu_cli.errors import UserError
from pangu_cli.packing import Batch, TokenCorpus, pack_rows

CURRICULUM_WINDOW = 16  # rows shuffled together under a curriculum


class DomainStream:
    def __init__(self, corpus: TokenCorpus, domain: int, width: int, seed: int, curriculum: bool):
        self.corpus, self.width, self.seed, self.curriculum = corpus, width, seed, curriculum
        self.domain = domain
        self.docs = np.flatnonzero(corpus.domains == domain)
        self.lengths = np.diff(corpus.offsets)[self.docs]
        if int(self.lengths.sum()) + len(self.docs) < width:
            name = corpus.domain_names[domain]
            raise UserError(f"domain {name}: fewer training tokens than one sequence of {width}")
        q = corpus.quality[self.docs].astype(np.float64)
        self.repeat = q / q.mean() if q.mean() > 0 else np.ones_like(q)
        self.epoch, self.cursor = 0, 0
        self._layout_epoch = -1

    def _layout(self) -> None:
        if self._layout_epoch == self.epoch:
            return
        rng = np.random.default_rng([self.seed, self.domain, self.epoch])
        copies = np.floor(self.repeat) + (rng.random(len(self.docs)) < self.repeat % 1)
        order = np.repeat(np.arange(len(self.docs)), copies.astype(np.int64))
        if len(order) == 0:
            order = np.arange(len(self.docs))
        if self.curriculum:
            difficulty = self.corpus.difficulty[self.docs][order]
            order = order[np.lexsort((rng.random(len(order)), difficulty))]
        else:
            order = order[rng.permutation(len(order))]
        self._order = order  # positions in self.docs
        self._ends = np.cumsum(self.lengths[order] + 1)  # +1: the EOD
        n_rows = int(self._ends[-1]) // self.width
        if n_rows == 0:  # quality repeats dropped too much: fall back to every document
            self._order = np.arange(len(self.docs))
            self._ends = np.cumsum(self.lengths + 1)
            n_rows = int(self._ends[-1]) // self.width
        if self.curriculum:
            rows = np.arange(n_rows)
            for s in range(0, n_rows, CURRICULUM_WINDOW):
                rows[s : s + CURRICULUM_WINDOW] = rng.permutation(rows[s : s + CURRICULUM_WINDOW])
            self._rows = rows
        else:
            self._rows = rng.permutation(n_rows)
        self._layout_epoch = self.epoch

    def next_row(self, eod_id: int) -> tuple[np.ndarray, list[int]]:
        """The next row's tokens and the corpus indices of the documents in it."""
        self._layout()
        start = int(self._rows[self.cursor]) * self.width
        k = int(np.searchsorted(self._ends, start, side="right"))
        pieces, docs, need = [], [], self.width
        while need:
            doc = int(self.docs[self._order[k]])
            body = self.corpus.doc(doc)
            offset = start + (self.width - need) - (int(self._ends[k]) - len(body) - 1)
            piece = body[offset : offset + need]
            if offset + need > len(body):
                piece = np.append(piece, np.uint32(eod_id))
            pieces.append(piece)
            docs.append(doc)
            need -= len(piece)
            k += 1
        self.cursor += 1
        if self.cursor == len(self._rows):
            self.epoch, self.cursor = self.epoch + 1, 0
        return np.concatenate(pieces), docs


class MixtureLoader:
    def __init__(
        self,
        corpus: TokenCorpus,
        *,
        mixture: dict[str, float],
        seq_len: int,
        batch_size: int,
        eod_id: int,
        seed: int,
        curriculum: bool = False,
        reset_position_ids: bool = True,
        document_mask: bool = True,
    ) -> None:
        if corpus.n_docs == 0:
            raise UserError("no training documents left after the held-out split")
        self.corpus, self.mixture = corpus, dict(mixture)
        self.seq_len, self.batch_size, self.eod_id, self.seed = seq_len, batch_size, eod_id, seed
        self.curriculum = curriculum
        self.reset_position_ids, self.document_mask = reset_position_ids, document_mask
        self.names = sorted(mixture)
        self.streams = {
            name: DomainStream(
                corpus, corpus.domain_names.index(name), seq_len + 1, seed, curriculum
            )
            for name in self.names
        }
        self.shares = np.array([mixture[n] for n in self.names], dtype=np.float64)
        self.credits = np.zeros(len(self.names))
        self.tokens_per_domain = dict.fromkeys(corpus.domain_names, 0)

    def _next_domain(self) -> str:
        self.credits += self.shares
        k = int(np.argmax(self.credits))
        self.credits[k] -= 1.0
        return self.names[k]

    def next_batch(self, batch_size: int | None = None) -> Batch:
        rows, docs, domain_tokens = [], [], dict.fromkeys(self.corpus.domain_names, 0)
        for _ in range(batch_size or self.batch_size):
            name = self._next_domain()
            tokens, row_docs = self.streams[name].next_row(self.eod_id)
            rows.append(tokens)
            docs.append(row_docs)
            domain_tokens[name] += self.seq_len  # every target of the row is this domain's
        for name, n in domain_tokens.items():
            self.tokens_per_domain[name] += n
        batch = Batch(
            *pack_rows(np.stack(rows), self.eod_id, self.reset_position_ids, self.document_mask),
            {k: v for k, v in domain_tokens.items() if v},
        )
        batch.documents = [[self.corpus.ids[d] for d in row] for row in docs]
        return batch

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "seq_len": self.seq_len,
            "mixture": self.mixture,
            "credits": self.credits.tolist(),
            "streams": {n: [s.epoch, s.cursor] for n, s in self.streams.items()},
            "tokens_per_domain": dict(self.tokens_per_domain),
        }

    def load_state_dict(self, state: dict) -> None:
        for key, flag in (("seed", "--seed"), ("seq_len", "data.seq_len")):
            if state.get(key) != getattr(self, key):
                raise UserError(
                    f"checkpoint data loader has {key} {state.get(key)}, this run "
                    f"{getattr(self, key)}; resume with the same {flag}"
                )
        if state.get("mixture") != self.mixture:
            raise UserError("checkpoint data loader used another domain mixture than this run")
        self.credits = np.array(state["credits"], dtype=np.float64)
        for name, (epoch, cursor) in state["streams"].items():
            stream = self.streams[name]
            stream.epoch, stream.cursor = epoch, cursor
            stream._layout()
            if cursor >= len(stream._rows):
                raise UserError(f"checkpoint data position of {name} is past this corpus")
        self.tokens_per_domain.update(state["tokens_per_domain"])
