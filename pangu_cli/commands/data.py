"""`pangu tokenizer-build` and `pangu tokenize`: the data stages' commands."""

from __future__ import annotations

from pathlib import Path

import typer

from pangu_cli.cli import ConfigOption, ForceOption, OverridesArgument, app, run_stage

InputOption = typer.Option(
    None,
    "--input",
    help="Document shards: an Arrow file or a directory of them (default: the bundled corpus).",
)


@app.command("tokenizer-build", context_settings={"allow_interspersed_args": True})
def tokenizer_build(
    out: Path = typer.Option(
        ..., "--out", help="Output directory (tokenizer.json, HF configs, manifest.json)."
    ),
    config: str = ConfigOption,
    input: str = InputOption,
    vocab_size: int = typer.Option(
        None, "--vocab-size", help="Vocabulary size, special and byte tokens included."
    ),
    force: bool = ForceOption,
    overrides: list[str] = OverridesArgument,
) -> None:
    """Train a byte-level BPE tokenizer on document shards (config section `tokenizer_build`).

    Special tokens take ids 0..15; every byte is a token, so any UTF-8 text round-trips.
    The manifest reports bytes and characters per token on each domain's held-out documents.
    """
    from pangu_cli.config import load_config
    from stages.tokenizer_build import TokenizerBuildConfig
    from stages.tokenizer_build import run as run_build

    def go() -> None:
        flags = {"input": input, "vocab_size": vocab_size}
        cfg = load_config(TokenizerBuildConfig, config, overrides, flags, section="tokenizer_build")
        manifest = run_build(cfg, out, force=force)
        _summary(
            f"tokenizer {out} (vocab {manifest['counts']['vocab_size']}, "
            f"{manifest['train_time_s']:.1f} s)",
            ["domain", "docs", "held out", "bytes/token", "chars/token"],
            [
                [d, s["documents"], s.get("heldout_documents", 0)]
                + [s.get("bytes_per_token", "-"), s.get("chars_per_token", "-")]
                for d, s in manifest["domains"].items()
            ]
            + [
                ["all", manifest["counts"]["documents"], manifest["counts"]["heldout_documents"]]
                + [manifest["heldout"].get("bytes_per_token", "-")]
                + [manifest["heldout"].get("chars_per_token", "-")]
            ],
        )

    run_stage(go)


@app.command("tokenize", context_settings={"allow_interspersed_args": True})
def tokenize(
    out: Path = typer.Option(
        ..., "--out", help="Output directory (token shards, tokenizer.json, manifest.json)."
    ),
    config: str = ConfigOption,
    input: str = InputOption,
    tokenizer: str = typer.Option(
        None,
        "--tokenizer",
        help="Tokenizer: a `pangu tokenizer-build` output directory or a tokenizer.json file.",
    ),
    workers: int = typer.Option(
        None, "--workers", help="Worker processes (default: the number of CPU cores)."
    ),
    force: bool = ForceOption,
    overrides: list[str] = OverridesArgument,
) -> None:
    """Turn document shards into token shards (config section `tokenize`): one row per
    document with its tokens (no end-of-document token), domain, quality, difficulty and
    UTF-8 byte count. The output is identical whatever the number of workers."""
    from pangu_cli.config import load_config
    from stages.tokenize import TokenizeConfig
    from stages.tokenize import run as run_tokenize

    def go() -> None:
        flags = {"input": input, "tokenizer": tokenizer, "workers": workers}
        cfg = load_config(TokenizeConfig, config, overrides, flags, section="tokenize")
        manifest = run_tokenize(cfg, out, force=force)
        speed = manifest["throughput"]
        counts = manifest["counts"]
        _summary(
            f"tokens {out} ({counts['shards']} shards)",
            ["domain", "docs", "tokens", "bytes", "bytes/token"],
            [
                [d, s["documents"], s["tokens"], s["bytes"], s["bytes_per_token"]]
                for d, s in manifest["domains"].items()
            ]
            + [
                ["all", counts["documents"], counts["tokens"], counts["bytes"]]
                + [round(counts["bytes"] / max(counts["tokens"], 1), 4)]
            ],
        )
        typer.echo(
            f"{speed['tokens_per_s']:,.0f} tokens/s, {speed['mb_per_s']:.2f} MB/s "
            f"with {speed['workers']} worker(s) in {speed['seconds']:.1f} s"
        )

    run_stage(go)


def _summary(title: str, header: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    Console().print(table)
