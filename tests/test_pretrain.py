"""`pangu pretrain`: a loss that falls, the run-directory contract, exact resume after
SIGKILL, crash-safe checkpoints, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pangu, wait_for_logged_steps

TINY = [
    "model.preset=tiny",
    "data.seq_len=64",
    "data.batch_size=4",
    "data.val_rows_per_domain=2",
    "optim.lr=3e-3",
    "optim.warmup_steps=5",
    "train.log_every=1",
]


def pretrain_args(tokens: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "pretrain", "--input", str(tokens), "--out", str(out), "--steps", str(steps),
        "--save-every", "3", *extra, *TINY, "train.val_every=4",
    ]  # fmt: skip


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run) if "loss" in r}


def test_loss_falls_and_run_directory_contract(tiny_tokens, tmp_path):
    run = tmp_path / "run"
    result = pangu(*pretrain_args(tiny_tokens, run, 40, "--seed", "1"))
    assert "held-out loss" in result.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage"] == "pretrain" and manifest["counts"]["steps"] == 40
    first, last = manifest["validation"]["first"], manifest["validation"]["last"]
    assert first["step"] == 0 and last["step"] == 40
    assert last["val_loss"] < 0.92 * first["val_loss"]
    assert set(manifest["counts"]["tokens_per_domain"]) == {"code", "en", "math", "zh"}
    for record in metrics(run):
        if "loss" in record:
            assert {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(
                record
            )
        else:
            assert {"val_loss", "val_bpb", "val_bpb/en", "val_bpb/zh"} <= set(record)
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_0000040"
    ckpt = run / "checkpoints" / latest
    assert {".metadata", "meta.json", "trainer_state.json"} <= {p.name for p in ckpt.iterdir()}
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["tokenizer_fingerprint"].startswith("sha256:") and meta["step"] == 40
    assert len(list((run / "checkpoints").glob("step_*"))) == 2  # keep_last
    assert any((run / "tb").iterdir())
    again = pangu(*pretrain_args(tiny_tokens, run, 40), check=False)
    assert again.returncode == 2 and "holds a previous run" in again.stderr


def kill_after(args: list[str], run: Path, lines: int) -> None:
    """Start a pretrain run and SIGKILL it once metrics.jsonl has `lines` training lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pangu_cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_logged_steps(proc, run, lines, timeout_s=120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_then_resume_matches_uninterrupted_run_bit_for_bit(tiny_tokens, tmp_path):
    steps = 14
    reference = tmp_path / "reference"
    pangu(*pretrain_args(tiny_tokens, reference, steps))
    expected = metrics(reference)

    run = tmp_path / "killed"
    rng = random.Random()
    kill_points = sorted(rng.sample(range(2, steps), 2))
    for point in kill_points:
        kill_after(pretrain_args(tiny_tokens, run, steps, "--resume"), run, point)
    pangu(*pretrain_args(tiny_tokens, run, steps, "--resume"))
    got = metrics(run)
    strip = lambda rs: [  # noqa: E731  (timing fields differ run to run)
        {k: v for k, v in r.items() if not k.startswith(("tokens_per_s", "mfu"))} for r in rs
    ]
    assert strip(got) == strip(expected), f"kill points {kill_points}"
    assert train_losses(run) == train_losses(reference)


def test_interrupted_save_never_moves_latest(tiny_tokens, tmp_path, monkeypatch):
    import pangu_cli.checkpoint as checkpoint
    from pangu_cli.config import load_config
    from stages.pretrain import PretrainConfig, run

    cfg = load_config(
        PretrainConfig,
        None,
        [*TINY, f"data.input={tiny_tokens}", "train.steps=7", "train.save_every=3"],
    )
    real_save, calls = checkpoint.dcp.save, []

    def crash_on_second_save(state, checkpoint_id):
        calls.append(checkpoint_id)
        if len(calls) == 2:
            real_save(state, checkpoint_id=checkpoint_id)  # all shards written...
            raise KeyboardInterrupt  # ...but killed before the rename
        return real_save(state, checkpoint_id=checkpoint_id)

    monkeypatch.setattr(checkpoint.dcp, "save", crash_on_second_save)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    assert not (out / "checkpoints" / "step_0000006").exists()
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(checkpoint.dcp, "save", real_save)
    manifest = run(cfg, out, resume=True)
    assert manifest["counts"]["steps"] == 7
    assert not list((out / "checkpoints").glob(".*incomplete"))

    reference = run(cfg, tmp_path / "reference")
    assert reference["final_train_metrics"]["loss"] == manifest["final_train_metrics"]["loss"]


def test_checkpoint_from_another_tokenizer_is_refused(tiny_tokens, small_documents, tmp_path):
    run = tmp_path / "run"
    pangu(*pretrain_args(tiny_tokens, run, 3))
    pangu("tokenizer-build", "--input", small_documents, "--out", tmp_path / "tok2",
          "--vocab-size", 600)  # fmt: skip
    pangu("tokenize", "--input", small_documents, "--tokenizer", tmp_path / "tok2",
          "--out", tmp_path / "tokens2", "--workers", 1)  # fmt: skip
    result = pangu(*pretrain_args(tmp_path / "tokens2", run, 6, "--resume"), check=False)
    assert result.returncode == 2
    assert "another tokenizer" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["missing", "incomplete", "corrupt", "wrong-schema"])
def test_bad_token_input_is_one_line_exit_2(case, tiny_tokens, tmp_path):
    import shutil

    import pyarrow as pa

    from pangu_cli.shards import write_shard

    tokens = tmp_path / "tokens"
    if case != "missing":
        shutil.copytree(tiny_tokens, tokens)
    if case == "incomplete":
        (tokens / "manifest.json").unlink()
    if case == "corrupt":
        (next(tokens.glob("*.arrow"))).write_bytes(os.urandom(2000))
    if case == "wrong-schema":
        write_shard(next(tokens.glob("*.arrow")), pa.table({"text": ["a"], "domain": ["en"]}))
    result = pangu(*pretrain_args(tokens, tmp_path / "run", 3), check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(tokens) in result.stderr
