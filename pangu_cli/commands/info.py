"""`pangu model-info`: a preset's shape, parameter count and training FLOPs."""

from __future__ import annotations

import json

import typer

from pangu_cli.cli import app, run_stage


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@app.command("model-info")
def model_info(
    preset: str = typer.Option("pangu-ultra-135b", "--preset", help="Model preset name."),
    seq_len: int = typer.Option(4096, "--seq-len", help="Sequence length for FLOPs per token."),
    vocab_size: int = typer.Option(None, "--vocab-size", help="Override the preset's vocabulary."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print a preset's layers, widths, heads, vocabulary, parameters and training FLOPs
    per token. The model is built on the meta device: instant and memory-free at any size."""
    from pangu_cli.presets import describe, model_config

    def show() -> None:
        info = {"preset": preset, **describe(model_config(preset, vocab_size=vocab_size), seq_len)}
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"model {preset}", show_header=False)
        for key, value in info.items():
            shown = _human(value) if isinstance(value, int) and value >= 10**6 else str(value)
            if key == "training_flops_per_token":
                shown = f"{value / 1e9:,.2f} GFLOP"
            table.add_row(key, shown)
        Console().print(table)

    run_stage(show)
