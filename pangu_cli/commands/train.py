"""`pangu pretrain`: the training stages' commands."""

from __future__ import annotations

from pathlib import Path

import typer

from pangu_cli.cli import (
    ConfigOption,
    ForceOption,
    OverridesArgument,
    run_stage,
    run_stage_command,
    stage_command,
)


def phase_section(config: str | None, phase: str | None) -> dict:
    """A config file's `pretrain_<phase>:` section (say, `pretrain_reasoning:` with its own
    steps), as dotted flags laid over `pretrain:`; command-line flags still win."""
    from pangu_cli.config import read_config_file

    if not config:
        return {}
    data = read_config_file(config)
    phase = phase or (data.get("pretrain") or {}).get("phase") or "general"
    section = data.get(f"pretrain_{phase}") or {}
    flat: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and key != "mixture":
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(section, "")
    return flat


@stage_command("pretrain")
def pretrain(
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics, manifest)."),
    config: str = ConfigOption,
    phase: str = typer.Option(
        None,
        "--phase",
        help="general | reasoning | anneal: the report's mixture, seq len, RoPE base, batch "
        "ramp and LR shape for that phase, scaled to this run (phase).",
    ),
    init: str = typer.Option(
        None,
        "--init",
        help="Start from this run's (or checkpoint's) final weights with a fresh optimiser "
        "and schedule: the previous phase (train.init). Recorded as lineage.",
    ),
    input: str = typer.Option(
        None, "--input", help="Token shards: the output directory of `pangu tokenize`."
    ),
    steps: int = typer.Option(None, "--steps", help="Total optimiser steps (train.steps)."),
    save_every: int = typer.Option(
        None, "--save-every", help="Checkpoint every N steps (train.save_every)."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for init and data order (train.seed)."),
    preset: str = typer.Option(None, "--preset", help="Model preset (model.preset)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run's latest checkpoint (start if none)."
    ),
    force: bool = ForceOption,
    overrides: list[str] = OverridesArgument,
) -> None:
    """Pretrain a Pangu model on token shards: one phase of the report's recipe (domain
    mixture, batch ramp, LR schedule), packed sequences with document masks, held-out loss
    and bits per byte per domain, a spike guard, DCP checkpoints with exact resume. Under
    `torchrun --nproc-per-node N -m pangu_cli.main pretrain ...` it runs the `parallel`
    layout (parallel.dp_shard / tp / pp ...)."""
    from stages.pretrain import PretrainConfig
    from stages.pretrain import run as run_pretrain

    flags = {
        "phase": phase,
        "data.input": input,
        "train.steps": steps,
        "train.save_every": save_every,
        "train.seed": seed,
        "model.preset": preset,
        "train.init": init,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    # The file's pretrain_<phase> section lies under the flags given. It is read under
    # run_stage, so a missing or invalid config file is one line and exit 2 here too.
    phase_flags = run_stage(lambda: phase_section(config, phase))
    run_stage_command(
        run_pretrain,
        PretrainConfig,
        "pretrain",
        out=out,
        config=config,
        flags={**phase_flags, **given},
        overrides=overrides,
        report=print_heldout_change,
        resume=resume,
        force=force,
    )


def print_heldout_change(manifest: dict, out: Path) -> None:
    """The held-out loss at the first and last validation, and the final bits per byte."""
    val = manifest.get("validation", {})
    if val:
        first, last = val["first"], val["last"]
        drop = 100 * (1 - last["val_loss"] / first["val_loss"])
        typer.echo(
            f"held-out loss {first['val_loss']:.4f} (step {first['step']}) -> "
            f"{last['val_loss']:.4f} (step {last['step']}), {drop:.1f}% lower; "
            f"bits per byte {last['val_bpb']:.4f}"
        )
