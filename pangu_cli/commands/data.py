"""`pangu tokenizer-build` and `pangu tokenize`: the data stages' commands."""

from __future__ import annotations

from pathlib import Path

import typer

from pangu_cli.cli import (
    ConfigOption,
    ForceOption,
    OverridesArgument,
    print_table,
    run_stage_command,
    stage_command,
)

InputOption = typer.Option(
    None,
    "--input",
    help="Document shards: an Arrow file or a directory of them (default: the bundled corpus).",
)


@stage_command("tokenizer-build")
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
    from stages.tokenizer_build import TokenizerBuildConfig
    from stages.tokenizer_build import run as run_build

    flags = {"input": input, "vocab_size": vocab_size}
    run_stage_command(
        run_build,
        TokenizerBuildConfig,
        "tokenizer_build",
        out=out,
        config=config,
        flags=flags,
        overrides=overrides,
        report=lambda manifest, run_dir: print_tokenizer_table(manifest, f"tokenizer {run_dir}"),
        force=force,
    )


@stage_command("tokenize")
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
    from stages.tokenize import TokenizeConfig
    from stages.tokenize import run as run_tokenize

    flags = {"input": input, "tokenizer": tokenizer, "workers": workers}
    run_stage_command(
        run_tokenize,
        TokenizeConfig,
        "tokenize",
        out=out,
        config=config,
        flags=flags,
        overrides=overrides,
        report=print_tokenize_summary,
        force=force,
    )


def print_tokenize_summary(manifest: dict, out: Path) -> None:
    """Per domain: documents, tokens, bytes and bytes per token; then the throughput."""
    speed = manifest["throughput"]
    counts = manifest["counts"]
    print_table(
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
    title = f"{title} ({manifest['mode']}, vocab {vocab}, {manifest['train_time_s']:.1f} s)"
    print_table(title, header, rows)
