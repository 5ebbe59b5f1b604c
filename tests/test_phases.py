"""The three phases: the report's recipe scaled to a run, the mixture loader (domain shares,
quality weights, curriculum, exact resume), and general -> reasoning -> anneal chained
with --init on a real corpus, each manifest within 2% of its phase's mixture."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pangu_cli import phases
from pangu_cli.errors import UserError
from pangu_cli.mixture import MixtureLoader
from pangu_cli.packing import TokenCorpus
from tests.conftest import pangu
from tests.test_pretrain import TINY

EOD = 0
BUNDLED = {"en": 900, "zh": 100, "code": 300, "math": 200}


def test_report_mixture_renormalised_over_present_domains():
    mix, notes = phases.resolve_mixture("general", BUNDLED)
    assert mix == pytest.approx({"en": 54 / 90, "zh": 13 / 90, "math": 6 / 90, "code": 17 / 90})
    assert any("multilingual (8%) absent" in n for n in notes)
    assert any("instruction (2%) absent" in n for n in notes)
    reasoning, _ = phases.resolve_mixture("reasoning", BUNDLED)
    assert reasoning["code"] == pytest.approx(37 / 85) and reasoning["math"] > reasoning["en"]
    assert phases.resolve_mixture("anneal", BUNDLED)[0]["zh"] == pytest.approx(20 / 77)
    assert phases.resolve_mixture("general", BUNDLED, {"en": 1, "code": 1})[0] == {
        "code": 0.5,
        "en": 0.5,
    }
    with pytest.raises(UserError, match="have no training documents"):
        phases.resolve_mixture("general", BUNDLED, {"klingon": 1})


def test_batch_ramp_switches_at_the_reports_token_fractions():
    ramp = phases.RECIPES["general"].batch_ramp
    batch_at = phases.batch_schedule(ramp, 1000, 2048, 1)
    sizes = [batch_at(s) for s in range(1000)]
    assert sorted(set(sizes)) == [1024, 1536, 2048] and sizes == sorted(sizes)
    cumulative = np.cumsum(sizes) / sum(sizes)
    first_1536, first_2048 = sizes.index(1536), sizes.index(2048)
    assert cumulative[first_1536 - 1] == pytest.approx(1.2 / 12, abs=0.003)
    assert cumulative[first_2048 - 1] == pytest.approx(1.9 / 12, abs=0.003)
    assert phases.batch_sizes(phases.batch_schedule(ramp, 40, 8, 2), 40) == [4, 6, 8]
    reasoning = phases.batch_schedule(phases.RECIPES["reasoning"].batch_ramp, 10, 2048, 1)
    assert {reasoning(s) for s in range(10)} == {1536}


def test_lr_shapes_per_phase():
    general = phases.lr_schedule("general", 1e-4, 1e-5, 10, 1000)
    assert general(0) == pytest.approx(1e-5) and general(9) == pytest.approx(1e-4)
    values = [general(s) for s in range(1000)]
    end = next(s for s in range(10, 1000) if values[s] <= 1e-5 + 1e-12)
    assert 600 < end < 700 and max(values[end:]) == pytest.approx(1e-5)  # then constant
    reasoning = phases.lr_schedule("reasoning", 1e-4, 1e-5, 10, 100)
    assert reasoning(0) == pytest.approx(1e-5) and reasoning(99) == pytest.approx(7.5e-6)
    anneal = phases.lr_schedule("anneal", 1e-4, 1e-5, 10, 100)
    assert anneal(0) == pytest.approx(7.5e-6) and anneal(99) == pytest.approx(7.5e-7)


def corpus(n_docs: int = 200, quality=None, difficulty=None) -> TokenCorpus:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, n_docs)
    domains = np.arange(n_docs) % 3
    # token = 10 + document index: which document a token came from is visible
    tokens = np.concatenate([np.full(n, 10 + i, np.uint32) for i, n in enumerate(lengths)])
    return TokenCorpus(
        tokens=tokens,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        domains=domains.astype(np.int32),
        domain_names=["a", "b", "c"],
        ids=[f"d{i}" for i in range(n_docs)],
        n_bytes=lengths.astype(np.int64),
        quality=quality,
        difficulty=difficulty,
    )


def make(c: TokenCorpus, mixture=None, curriculum=False, seed=0) -> MixtureLoader:
    mixture = mixture or {"a": 0.5, "b": 0.3, "c": 0.2}
    return MixtureLoader(
        c, mixture=mixture, seq_len=16, batch_size=8, eod_id=EOD, seed=seed, curriculum=curriculum
    )


def test_mixture_is_exact_deterministic_and_resumes_exactly():
    loader = make(corpus())
    batches = [loader.next_batch() for _ in range(30)]
    share = {
        k: v / sum(loader.tokens_per_domain.values()) for k, v in loader.tokens_per_domain.items()
    }
    assert share == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2}, abs=1 / 240)
    again = make(corpus())
    assert all(
        (again.next_batch().inputs == b.inputs).all() for b in batches
    )  # same seed, same stream
    other = make(corpus(), seed=1)
    assert not (other.next_batch().inputs == batches[0].inputs).all()
    # Exact position: state after 13 batches (through JSON), restored into a fresh loader.
    first = make(corpus())
    for _ in range(13):
        first.next_batch(5)  # another batch size (another world size's split) on the way
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make(corpus())
    resumed.load_state_dict(state)
    for _ in range(20):
        assert (resumed.next_batch().inputs == first.next_batch().inputs).all()


def test_quality_weights_sampling_and_curriculum_orders_easy_to_hard():
    n = 200
    quality = np.where(np.arange(n) < 100, 3.0, 1.0).astype(np.float32)  # first half 3x
    loader = make(corpus(n, quality=quality), mixture={"a": 1.0})
    seen = np.concatenate([loader.next_batch().inputs.flatten().numpy() for _ in range(40)])
    doc = seen[seen >= 10] - 10
    high, low = np.sum(doc < 100), np.sum(doc >= 100)
    assert high > 2 * low  # ~3x the tokens (documents lengths alike on average)

    difficulty = np.random.default_rng(1).random(n).astype(np.float32)
    loader = make(corpus(n, difficulty=difficulty), mixture={"a": 1.0}, curriculum=True)
    means = []
    for _ in range(4):  # a batch per curriculum window: rows shuffle only within one
        ids = loader.next_batch(16).inputs.flatten().numpy()
        means.append(float(difficulty[ids[ids >= 10] - 10].mean()))
    assert means == sorted(means), means  # easy -> hard


def test_three_phases_back_to_back_with_lineage(tiny_tokens, tmp_path):
    common = [*TINY, "data.batch_size=8", "train.val_every=100", "--save-every", "100"]
    runs = {}
    previous = None
    for phase in ("general", "reasoning", "anneal"):
        out = tmp_path / phase
        init = ["--init", str(previous)] if previous else []
        steps = "14" if phase == "general" else "12"
        pangu("pretrain", "--phase", phase, "--input", tiny_tokens, "--out", out,
              "--steps", steps, *init, *common)  # fmt: skip
        runs[phase] = json.loads((out / "manifest.json").read_text())
        previous = out
    general, reasoning, anneal = runs["general"], runs["reasoning"], runs["anneal"]
    for manifest in runs.values():
        target, actual = manifest["mixture"]["target"], manifest["mixture"]["actual"]
        assert max(abs(actual[d] - target[d]) for d in target) < 0.02, manifest["mixture"]
    assert reasoning["mixture"]["target"]["code"] > general["mixture"]["target"]["code"]
    sizes = general["schedule"]["batch_sizes"]  # the 6 step rounds away in 14 steps
    assert sizes[0] == 4 and sizes[-1] == 8 and reasoning["schedule"]["batch_sizes"] == [6]
    assert reasoning["schedule"]["seq_len"] == 2 * general["schedule"]["seq_len"]
    assert reasoning["schedule"]["rope_base"] == 10 * general["schedule"]["rope_base"]
    assert reasoning["schedule"]["curriculum"] and not anneal["schedule"]["curriculum"]
    assert general["lineage"] == []
    assert [e["phase"] for e in reasoning["lineage"]] == ["general"]
    assert [e["phase"] for e in anneal["lineage"]] == ["general", "reasoning"]
    assert anneal["lineage"][-1]["step"] == reasoning["counts"]["steps"]
    # The initialised phase starts where the previous one ended, not from scratch.
    assert reasoning["validation"]["first"]["val_loss"] < general["validation"]["first"]["val_loss"]


def test_config_file_phase_sections_lay_over_pretrain():
    from pangu_cli.commands.train import phase_section
    from pangu_cli.config import load_config, read_config_file
    from stages.pretrain import PretrainConfig

    assert phase_section("tiny", "reasoning") == {"train.steps": 10}
    assert phase_section("demo", None) == {}  # general: `pretrain:` alone
    flags = {**phase_section("demo", "anneal"), "phase": "anneal"}
    cfg = load_config(PretrainConfig, "demo", ["train.val_every=7"], flags, section="pretrain")
    anneal_steps = read_config_file("demo")["pretrain_anneal"]["train"]["steps"]
    assert anneal_steps != read_config_file("demo")["pretrain"]["train"]["steps"]
    assert (cfg.phase, cfg.train.steps, cfg.train.val_every) == ("anneal", anneal_steps, 7)
    assert cfg.model.preset == "small" and cfg.stability.policy == "warn"
