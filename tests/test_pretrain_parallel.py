"""`pangu pretrain` under torchrun (gloo, CPU): the parallel layouts train and evaluate with
the single-process losses, a SIGKILLed multi-process run resumes to the uninterrupted
run's losses, and its checkpoint resumes at another world size."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pangu, wait_for_logged_steps
from tests.test_pretrain import TINY, metrics, train_losses

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-4
# batch 4 with the general ramp 2 -> 4 -> 4 (multiple 2: splits over dp=2 at every step)
COMMON = [*TINY, "data.batch_multiple=2", "train.val_every=5", "stability.policy=none"]


def args(tokens: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "pretrain", "--input", str(tokens), "--out", str(out), "--steps", str(steps),
        "--save-every", "3", *COMMON, *extra,
    ]  # fmt: skip


def torchrun_cmd(nproc: int, argv: list[str]) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc-per-node={nproc}", "-m", "pangu_cli.main", *argv]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(nproc: int, argv: list[str]) -> None:
    result = subprocess.run(
        torchrun_cmd(nproc, argv), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]


def val_records(run: Path) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in metrics(run) if "val_loss" in r}


def close(a: dict[int, float], b: dict[int, float]) -> None:
    assert a.keys() == b.keys(), (a, b)
    worst = max(abs(a[k] - b[k]) / abs(b[k]) for k in b)
    print(f"max relative difference {worst:.1e} over {len(b)} values")
    assert worst < RTOL, (worst, a, b)


def kill_torchrun_after(argv: list[str], run: Path, lines: int, nproc: int) -> None:
    """Start a torchrun job in its own process group; SIGKILL the group (launcher and every
    rank) once rank 0 has logged `lines` training steps."""
    proc = subprocess.Popen(
        torchrun_cmd(nproc, argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        cwd=ROOT,
        start_new_session=True,
    )
    wait_for_logged_steps(proc, run, lines, timeout_s=300)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_fsdp_sigkill_resume_and_resume_at_another_world_size(tiny_tokens, tmp_path):
    steps = 9
    single = tmp_path / "single"
    pangu(*args(tiny_tokens, single, steps))

    reference = tmp_path / "fsdp2"
    torchrun(2, args(tiny_tokens, reference, steps, "parallel.dp_shard=2"))
    close(train_losses(reference), train_losses(single))  # FSDP2 = one process
    close(val_records(reference), val_records(single))  # held-out evaluation too
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["parallel"]["dp_shard"] == 2

    killed = tmp_path / "killed"
    kill_torchrun_after(args(tiny_tokens, killed, steps, "parallel.dp_shard=2"), killed, 5, 2)
    assert (killed / "checkpoints" / "latest").exists() and not (killed / "manifest.json").exists()
    moved = tmp_path / "one-rank"
    shutil.copytree(killed, moved)

    torchrun(2, args(tiny_tokens, killed, steps, "--resume", "parallel.dp_shard=2"))
    assert train_losses(killed) == train_losses(reference)  # same world size: bit for bit

    pangu(*args(tiny_tokens, moved, steps, "--resume"))  # 2 ranks -> 1 process
    close(train_losses(moved), train_losses(reference))
    assert json.loads((moved / "manifest.json").read_text())["counts"]["steps"] == steps


LAYOUTS = {
    "tp2": (2, ["parallel.tp=2"]),
    "pp2-1f1b": (2, ["parallel.pp=2", "parallel.pp_schedule=1f1b"]),
    "pp2x2-interleaved": (
        2,
        ["parallel.pp=2", "parallel.pp_schedule=interleaved_1f1b", "parallel.virtual_stages=2"],
    ),
    "dp2-tp2": (4, ["parallel.dp_shard=2", "parallel.tp=2"]),
}


# Batch ramp 4 -> 8 (the pipeline schedule is rebuilt for the new micro-batch shape).
SHAPE = ["data.batch_size=8", "data.batch_multiple=4"]


@pytest.fixture(scope="module")
def single_run(tiny_tokens, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    pangu(*args(tiny_tokens, run, 6, *SHAPE))
    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_trains_and_evaluates_like_one_process(name, single_run, tiny_tokens, tmp_path):
    """Training losses and the held-out loss (pipelined forward-only under pp) of each layout
    match the single-process run."""
    nproc, extra = LAYOUTS[name]
    run = tmp_path / name
    torchrun(nproc, args(tiny_tokens, run, 6, *SHAPE, *extra))
    assert json.loads((run / "manifest.json").read_text())["schedule"]["batch_sizes"] == [4, 8]
    close(train_losses(run), train_losses(single_run))
    close(val_records(run), val_records(single_run))
