"""The typer app shared by the command modules, and how a stage is run from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from pangu_cli.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="pangu: train LLMs the way Pangu Ultra was trained. Each command is one pipeline "
    "stage; stages read and write Arrow shards and checkpoints. Every stage takes "
    "--config FILE (YAML/TOML, or a shipped config name such as 'tiny') and dotted "
    "overrides after the options, e.g. `pangu pretrain --config tiny optim.lr=3e-4`.",
)

# Shared option declarations, so every stage spells them the same way.
ConfigOption = typer.Option(
    None, "--config", help="Config file (YAML or TOML) or the name of a shipped config."
)
OverridesArgument = typer.Argument(
    None, help="Dotted config overrides, KEY=VALUE (e.g. optim.lr=3e-4).", show_default=False
)
ForceOption = typer.Option(False, "--force", help="Replace a complete output directory.")


def stage_command(name: str) -> Callable:
    """Register a stage command; its dotted overrides may come before or after options."""
    return app.command(name, context_settings={"allow_interspersed_args": True})


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(UserError.exit_code)


def run_stage(call: Callable[[], Any]) -> Any:
    """Run a stage; a user mistake becomes one line on stderr and exit code 2."""
    try:
        return call()
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def run_stage_command(
    stage: Callable[..., dict[str, Any]],
    config_cls: type,
    section: str,
    *,
    out: Path,
    config: str | None,
    flags: dict[str, Any],
    overrides: list[str] | None,
    report: Callable[[dict[str, Any], Path], None] | None = None,
    **stage_kwargs: Any,
) -> None:
    """What every stage command does: build `config_cls` from the config file's `section`,
    then the command's flags (dotted keys; None where a flag was not given), then the
    dotted overrides; run `stage(cfg, out, **stage_kwargs)`; `report` its manifest. A user
    mistake anywhere, the config included, is one line on stderr and exit code 2."""
    from pangu_cli.config import load_config

    def go() -> None:
        cfg = load_config(config_cls, config, overrides, flags, section=section)
        manifest = stage(cfg, out, **stage_kwargs)
        if report is not None:
            report(manifest, out)

    run_stage(go)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """A stage's summary table: first column left-aligned, numbers with thousands commas."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    Console().print(table)
