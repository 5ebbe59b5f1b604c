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

    mode=domain_merged (default) trains a BPE per domain (the shards' `domain` column) and
    merges them into one vocabulary, each domain taking its share (`shares`, default the
    Pangu Ultra report's table); mode=mixed trains one BPE on all documents. Special tokens
    take ids 0..15; every byte is a token, so any UTF-8 text round-trips. The manifest and
    the printed table report bytes and characters per token on each domain's held-out
    documents, for both modes side by side (compare=true).
    """
    from pangu_cli.config import load_config
    from stages.tokenizer_build import TokenizerBuildConfig
    from stages.tokenizer_build import run as run_build

    def go() -> None:
        flags = {"input": input, "vocab_size": vocab_size}
        cfg = load_config(TokenizerBuildConfig, config, overrides, flags, section="tokenizer_build")
        manifest = run_build(cfg, out, force=force)
        print_tokenizer_table(manifest, f"tokenizer {out}")

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


def print_tokenizer_table(manifest: dict, title: str) -> None:
    """Per domain: documents, and bytes / chars per token of the built tokenizer, with the
    other mode beside it when it was trained too."""
    comparison = manifest.get("comparison") or {}
    domains = {**manifest["domains"], "all": manifest["heldout"]}
    header = ["domain", "docs", "held out"]
    if comparison:
        header += ["B/tok merged", "B/tok mixed", "change", "ch/tok merged", "ch/tok mixed"]
    else:
        header += ["bytes/token", "chars/token"]
    rows = []
    for d, s in domains.items():
        docs = manifest["counts"]["documents"] if d == "all" else s["documents"]
        row = [d, docs, s.get("heldout_documents", 0)]
        c = comparison.get(d)
        if comparison and c:
            a, b = c["domain_merged"], c["mixed"]
            row += [a["bytes_per_token"], b["bytes_per_token"]]
            row += [f"{c['bytes_per_token_change_pct']:+.1f}%"]
            row += [a["chars_per_token"], b["chars_per_token"]]
        elif comparison:
            row += ["-"] * 5
        else:
            row += [s.get("bytes_per_token", "-"), s.get("chars_per_token", "-")]
        rows.append(row)
    vocab = manifest["counts"]["vocab_size"]
    _summary(f"{title} ({manifest['mode']}, vocab {vocab}, {manifest['train_time_s']:.1f} s)",
             header, rows)  # fmt: skip


def _summary(title: str, header: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    Console().print(table)
