"""`pangu data-clean`: the cleaning stage's command."""

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


@stage_command("data-clean")
def data_clean(
    out: Path = typer.Option(
        ..., "--out", help="Output directory (kept shards, removed/, report.html, manifest.json)."
    ),
    config: str = ConfigOption,
    input: str = typer.Option(
        None,
        "--input",
        help="Arrow/Parquet shards, .txt or .jsonl(.gz/.zst) files, or a directory of them "
        "(default: the bundled corpus).",
    ),
    workers: int = typer.Option(
        None, "--workers", help="Worker processes on this machine (default: CPU cores)."
    ),
    quality_model: str = typer.Option(
        None,
        "--quality-model",
        help="A `pangu pretrain` run whose model scores quality (bits per byte); optional.",
    ),
    force: bool = ForceOption,
    overrides: list[str] = OverridesArgument,
) -> None:
    """Clean document shards (config section `data_clean`): normalise, identify the
    language, apply Gopher / C4 / FineWeb rules, replace PII, deduplicate (exact and
    MinHash LSH), score quality and label difficulty. Kept documents go to shard-*.arrow
    (valid input for tokenizer-build and tokenize), removed ones to removed/*.arrow with
    a `reason` column; report.html shows what was removed and why. Under torchrun or
    Slurm each rank cleans its slice and the output is the same as one process's."""
    from stages.data_clean import DataCleanConfig
    from stages.data_clean import run as run_clean

    flags = {"input": input, "workers": workers, "quality.model": quality_model}
    run_stage_command(
        run_clean,
        DataCleanConfig,
        "data_clean",
        out=out,
        config=config,
        flags=flags,
        overrides=overrides,
        report=print_clean_summary,
        force=force,
    )


def print_clean_summary(manifest: dict, out: Path) -> None:
    """Per domain: documents in, kept, removed, and the removal reasons with counts."""
    if "counts" not in manifest:
        return  # a rank other than 0: rank 0 reports
    counts = manifest["counts"]
    rows = [
        [d, s["in"], s["kept"], s["removed"]]
        + [", ".join(f"{k} {v}" for k, v in s["removed_by_reason"].items()) or "-"]
        for d, s in manifest["domains"].items()
    ]
    rows.append(["all", counts["in"], counts["kept"], counts["removed"], ""])
    print_table(
        f"data-clean {out} ({manifest['wall_time_s']:.1f} s, report {out / 'report.html'})",
        ["domain", "in", "kept", "removed", "reasons"],
        rows,
    )
