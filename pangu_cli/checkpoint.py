"""Checkpoints in torch.distributed.checkpoint (DCP) format (DESIGN.md section 4).

RUN/checkpoints/step_NNNNNNN/ holds the model and optimiser tensors (DCP, loadable at
any world size and layout), RNG state, `trainer_state.json` (data-loader position,
step, tokens) and `meta.json` (phase, model config, tokenizer fingerprint).
A checkpoint is written under a hidden temporary name and renamed into place when
complete; `RUN/checkpoints/latest` names the newest complete one and is replaced
atomically, so a crash mid-save leaves `latest` on the previous checkpoint.

Only tensors go into DCP: DCP reads non-tensor entries back with pickle, and a
checkpoint must never be unpickled. Everything else is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from pangu_cli.artifacts import atomic_write_json, atomic_write_text, fsync_dir
from pangu_cli.errors import UserError

LATEST = "latest"


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_key() -> str:
    return f"rng_rank{rank()}"


def _tensor_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    # get_state_dict gives fully-qualified names that are the same under any parallel
    # layout (FSDP2, TP), which is what lets DCP reshard on load.
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd["state"], _rng_key(): torch.get_rng_state()}
    return state


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    meta: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Save step `step`, then point `latest` at it and prune older checkpoints."""
    root = Path(run_dir) / "checkpoints"
    final = checkpoint_dir(run_dir, step)
    tmp = root / f".{final.name}.incomplete"
    if rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    with warnings.catch_warnings():  # single-process DCP warns that it runs without a group
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.save(_tensor_state(model, optimizer), checkpoint_id=str(tmp))
    if rank() == 0:
        atomic_write_json(tmp / "trainer_state.json", trainer_state)
        atomic_write_json(tmp / "meta.json", meta)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if final.exists():  # the same step saved again after a resume
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        atomic_write_text(root / LATEST, final.name + "\n")
        prune_checkpoints(root, keep_last)
    barrier()
    return final


def prune_checkpoints(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    complete = sorted(p for p in root.glob("step_*") if p.is_dir())
    latest = read_latest(root.parent)
    for old in complete[:-keep_last]:
        if latest is None or old != latest:
            shutil.rmtree(old, ignore_errors=True)


def read_latest(run_dir: str | Path) -> Path | None:
    """The checkpoint `latest` names, or None when the run has none yet."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "meta.json").exists() or not (path / ".metadata").exists():
        raise UserError(f"{pointer}: names {path.name}, which is not a complete checkpoint")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a pangu checkpoint (meta.json: {e})") from None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> dict[str, Any]:
    """Load model (and optimiser, RNG) tensors in place; return trainer_state.json."""
    path = Path(path)
    stored = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state: dict[str, Any] = {"model": get_model_state_dict(model)}
    else:
        state = _tensor_state(model, optimizer)
        if not any(k.startswith("optim.") for k in stored):
            raise UserError(f"{path}: holds no optimiser state to resume from")
        if _rng_key() not in stored:
            state.pop(_rng_key())  # saved at another world size: keep this rank's RNG
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
            dcp.load(state, checkpoint_id=str(path))
    except (RuntimeError, ValueError, KeyError) as e:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: does not fit this model ({line})") from None
    if optimizer is None:
        set_state_dict(model, optimizers=(), model_state_dict=state["model"], optim_state_dict={})
    else:
        _, optim_sd = get_state_dict(model, optimizer)
        set_state_dict(
            model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict={"state": state["optim"], "param_groups": optim_sd["param_groups"]},
        )
        if _rng_key() in state:
            torch.set_rng_state(state[_rng_key()])
    try:
        return json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return {}
