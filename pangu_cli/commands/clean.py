"""`pangu data-clean`: the cleaning stage's command."""

from __future__ import annotations

from pathlib import Path

import typer

from pangu_cli.cli import ConfigOption, ForceOption, OverridesArgument, app, run_stage


@app.command("data-clean", context_settings={"allow_interspersed_args": True})
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
    from pangu_cli.config import load_config
    from stages.data_clean import DataCleanConfig
    from stages.data_clean import run as run_clean

    def go() -> None:
        flags = {"input": input, "workers": workers, "quality.model": quality_model}
        cfg = load_config(DataCleanConfig, config, overrides, flags, section="data_clean")
        manifest = run_clean(cfg, out, force=force)
        if "counts" not in manifest:
            return  # a rank other than 0: rank 0 reports
        from pangu_cli.commands.data import _summary

        counts = manifest["counts"]
        rows = [
            [d, s["in"], s["kept"], s["removed"]]
            + [", ".join(f"{k} {v}" for k, v in s["removed_by_reason"].items()) or "-"]
            for d, s in manifest["domains"].items()
        ]
        rows.append(["all", counts["in"], counts["kept"], counts["removed"], ""])
        _summary(
            f"data-clean {out} ({manifest['wall_time_s']:.1f} s, report {out / 'report.html'})",
            ["domain", "in", "kept", "removed", "reasons"],
            rows,
        )

    run_stage(go)
