"""Parallel layouts (pangu_cli.parallel): config validation, the stage split, and, under
torchrun with gloo, per-layout losses that match a single-process run of the same model
and data within 1e-4 relative (fp32), plus DCP checkpoints that reshard across layouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pangu_cli.errors import UserError
from pangu_cli.model import ModelConfig
from pangu_cli.parallel import (
    ParallelConfig,
    check_batch,
    parallelize,
    split_layers,
    stage_ids_for_rank,
    train_step,
    validate,
)
from tests.distributed.common import (
    GRAD_CLIP,
    make_loader,
    make_model,
    make_optimizer,
    reference_run,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "distributed" / "run_layout.py"
STEPS, RTOL = 20, 1e-4
MODEL = ModelConfig(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=256)


# --- config validation -------------------------------------------------------------------


def test_dp_shard_fills_the_rest():
    cfg = validate(ParallelConfig(tp=2, pp=2), 8, MODEL)
    assert (cfg.dp_shard, cfg.dp, cfg.microbatches) == (2, 2, 2)
    assert validate(ParallelConfig(), 1, MODEL).dp_shard == 1


@pytest.mark.parametrize(
    "cfg, world, message",
    [
        (ParallelConfig(dp_shard=2, tp=2), 8, "= 4, but the world size is 8"),
        (ParallelConfig(tp=3), 6, "n_heads=4 is not divisible by it"),
        (ParallelConfig(tp=4), 4, "n_kv_heads=2 is not divisible"),
        (ParallelConfig(tp=2, pp=2), 7, "world size 7 is not divisible"),
        (ParallelConfig(pp=4, virtual_stages=2, pp_schedule="interleaved_1f1b"), 4, "layers"),
        (ParallelConfig(pp=2, pp_schedule="interleaved_1f1b"), 2, "virtual_stages >= 2"),
        (ParallelConfig(pp=2, virtual_stages=2), 2, "only interleaved_1f1b"),
        (ParallelConfig(pp=2, microbatches=1), 2, "at least 2 micro-batches"),
        (ParallelConfig(pp=2, pp_schedule="zb"), 2, "expected one of"),
        (ParallelConfig(cp=2), 2, "context parallelism is not supported"),
        (ParallelConfig(zero="1"), 1, "not ZeRO-1"),
        (ParallelConfig(activation_checkpoint="all"), 1, "none, block or selective"),
        (ParallelConfig(dp_shard=0), 1, "must be >= 1"),
    ],
)
def test_config_errors(cfg: ParallelConfig, world: int, message: str):
    with pytest.raises(UserError, match=message):
        validate(cfg, world, MODEL)


def test_batch_must_split_over_dp_and_microbatches():
    check_batch(validate(ParallelConfig(dp_shard=2, pp=2, microbatches=2), 4, MODEL), 8)
    with pytest.raises(UserError, match="not divisible by the data-parallel degree"):
        check_batch(validate(ParallelConfig(dp_shard=4), 4, MODEL), 6)
    with pytest.raises(UserError, match="do not split into parallel.microbatches=4"):
        check_batch(validate(ParallelConfig(pp=2, microbatches=4), 2, MODEL), 6)


# --- stage split -------------------------------------------------------------------------


def test_split_is_even_and_contiguous():
    assert split_layers(4, 2) == [[0, 1], [2, 3]]
    assert split_layers(4, 4) == [[0], [1], [2], [3]]
    for n_layers, n_stages in [(4, 2), (10, 3), (32, 8), (94, 48), (61, 7)]:
        stages = split_layers(n_layers, n_stages)
        assert sum(stages, []) == list(range(n_layers))
        assert min(len(s) for s in stages) >= 1
        # cost = layers, + 1 for the embedding on the first, + 1 for the head on the last
        costs = [len(s) for s in stages]
        costs[0], costs[-1] = costs[0] + 1, costs[-1] + 1
        assert max(costs) - min(costs) <= 1


def test_split_accounts_for_embedding_and_head():
    # The report's layout: 94 layers on PP 8 x 6 virtual stages = 48 stages, two units each.
    stages = split_layers(94, 48)
    assert len(stages[0]) == 1 and len(stages[-1]) == 1
    assert all(len(s) == 2 for s in stages[1:-1])
    assert [len(s) for s in split_layers(10, 3)] == [3, 4, 3]
    assert [len(s) for s in split_layers(10, 3, embed_cost=0, head_cost=0)] == [4, 3, 3]
    with pytest.raises(ValueError):
        split_layers(3, 4)


def test_interleaved_stage_assignment_is_looped():
    cfg = validate(ParallelConfig(pp=2, virtual_stages=2, pp_schedule="interleaved_1f1b"), 2, MODEL)
    assert stage_ids_for_rank(0, cfg) == [0, 2] and stage_ids_for_rank(1, cfg) == [1, 3]


# --- single process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> dict[str, list[float]]:
    return reference_run(STEPS)


def max_rel(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("ac", ["none", "block", "selective"])
def test_single_process_train_step_matches_trainer(reference, ac: str):
    """train_step without a mesh (one process), with activation checkpointing."""
    pm = parallelize(make_model(), None, ParallelConfig(activation_checkpoint=ac))
    if ac != "none":
        assert all("Checkpoint" in type(b).__name__ for b in pm.module.layers.values())
    optimizer, loader = make_optimizer(pm.module), make_loader()
    losses = [train_step(pm, loader.next_batch(), optimizer, GRAD_CLIP)[0] for _ in range(5)]
    assert max_rel(losses, reference["loss"][:5]) < RTOL


# --- torchrun layouts ----------------------------------------------------------------------


def torchrun(tmp: Path, nproc: int, plan: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Run `plan` (layouts in turn, one launch) on `nproc` ranks; {name: losses, norms}."""
    out = tmp / f"results-{nproc}-{len(list(tmp.iterdir()))}.json"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launcher, f"--nproc-per-node={nproc}", str(SCRIPT), "--out", str(out)]
    cmd += ["--plan", json.dumps(plan)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


def check_layout(run: dict[str, list[float]], reference: dict[str, list[float]]) -> None:
    loss_diff = max_rel(run["loss"], reference["loss"])
    norm_diff = max_rel(run["grad_norm"], reference["grad_norm"])
    print(f"max relative difference: loss {loss_diff:.2e}, grad norm {norm_diff:.2e}")
    assert loss_diff < RTOL, (run["loss"], reference["loss"])
    assert norm_diff < RTOL, (run["grad_norm"], reference["grad_norm"])


def test_tp_sp_matches_single_process(tmp_path, reference):
    """The representative fast multi-process test: TP + SP on 2 ranks (DSSN post-norms
    included), 20 steps."""
    run = torchrun(tmp_path, 2, [{"name": "tp2", "tp": 2}])
    check_layout(run["tp2"], reference)
    # The loss ran vocabulary-parallel: no rank gathered the full logits.
    assert set(run["tp2"]["head_output"]) == {"(Shard(dim=2),)"}


CKPT_STEP = 10
FOUR_RANKS = [
    {"name": "fsdp4", "dp_shard": 4},
    # saves a DCP checkpoint after step CKPT_STEP (ckpt filled in by the fixture)
    {"name": "dp2-tp2", "dp_shard": 2, "tp": 2, "save_at": CKPT_STEP},
    {"name": "pp2-tp2-gpipe", "pp": 2, "tp": 2, "pp_schedule": "gpipe"},
]
TWO_RANKS = [
    {"name": "pp2-1f1b", "pp": 2, "pp_schedule": "1f1b"},
    {"name": "pp2x2-interleaved", "pp": 2, "virtual_stages": 2, "pp_schedule": "interleaved_1f1b"},
    {"name": "zero2-ac-block", "dp_shard": 2, "zero": "2", "activation_checkpoint": "block"},
]


@pytest.fixture(scope="module")
def four_rank_runs(tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("four")
    plan = [dict(e, ckpt=str(tmp / "run")) if "save_at" in e else e for e in FOUR_RANKS]
    return torchrun(tmp, 4, plan), tmp / "run" / "checkpoints" / f"step_{CKPT_STEP:07d}"


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory, four_rank_runs) -> dict:
    """The 2-rank layouts, and the dp_shard=2 x tp=2 checkpoint loaded under pp=2."""
    _, ckpt = four_rank_runs
    load = {"name": "load-pp2", "pp": 2, "load": str(ckpt), "steps": STEPS - CKPT_STEP}
    return torchrun(tmp_path_factory.mktemp("two"), 2, [*TWO_RANKS, load])


@pytest.mark.slow
@pytest.mark.parametrize("name", [e["name"] for e in FOUR_RANKS])
def test_four_rank_layout_matches_single_process(four_rank_runs, reference, name: str):
    check_layout(four_rank_runs[0][name], reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", [e["name"] for e in TWO_RANKS])
def test_two_rank_layout_matches_single_process(two_rank_runs, reference, name: str):
    check_layout(two_rank_runs[name], reference)


@pytest.mark.slow
def test_dcp_checkpoint_reshards_to_other_layouts(four_rank_runs, two_rank_runs, reference):
    """Saved under dp_shard=2 x tp=2 after step 10; loaded under pp=2 (2 ranks) and in one
    process, the next 10 steps continue the uninterrupted run's losses."""
    _, ckpt = four_rank_runs
    assert (ckpt / "meta.json").exists()
    tail = {k: v[CKPT_STEP:] for k, v in reference.items()}
    check_layout(two_rank_runs["load-pp2"], tail)
    torch.manual_seed(123)  # the checkpoint's RNG state, not this one, must win
    check_layout(reference_run(STEPS - CKPT_STEP, load=ckpt), tail)


def test_meta_device_model_is_materialised(reference):
    """A model built on the meta device (the way a large preset is built) gets real,
    freshly initialised weights from parallelize and trains."""
    with torch.device("meta"):
        model = make_model()
    pm = parallelize(model, None, ParallelConfig(), device=torch.device("cpu"))
    assert all(p.device.type == "cpu" and p.isfinite().all() for p in pm.module.parameters())
    optimizer, loader = make_optimizer(pm.module), make_loader()
    losses = [train_step(pm, loader.next_batch(), optimizer, GRAD_CLIP)[0] for _ in range(3)]
    assert abs(losses[0] - reference["loss"][0]) < 0.5 and losses[-1] < losses[0] + 0.5
