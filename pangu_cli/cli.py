"""The typer app shared by the command modules, and how a stage is run from it."""

from __future__ import annotations

from collections.abc import Callable
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
