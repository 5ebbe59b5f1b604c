"""The end of `pangu data-clean`: the units' counts summed per domain and per removal
reason, the accounting check (documents in = kept + removed), report.html and the
manifest. Rank 0 runs it once every rank has written its units.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pangu_cli.artifacts import atomic_write_text, write_manifest
from pangu_cli.cleaning import inputs
from pangu_cli.cleaning.report import render

if TYPE_CHECKING:  # a type only: stages.data_clean imports this module
    from stages.data_clean import DataCleanConfig


def finish(
    config: DataCleanConfig,
    files: list[Path],
    units: list[inputs.Unit],
    staging: Path,
    work: Path,
    merged: dict[str, Any],
    started: float,
    workers: int,
    world: int,
) -> dict[str, Any]:
    """Sum the units' counts, check the accounting, write report.html and the manifest."""
    domains: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict]] = {}
    kept_bytes = 0
    for u in range(len(units)):
        stats = json.loads((work / f"stats-{u:05d}.json").read_text())
        kept_bytes += stats["kept_bytes"]
        for d, s in stats["domains"].items():
            acc = domains.setdefault(d, {"in": 0, "kept": 0, "removed": 0, "removed_by_reason": {}})
            acc["in"] += s["in"]
            acc["kept"] += s["kept"]
            for reason, n in s["removed"].items():
                acc["removed"] += n
                acc["removed_by_reason"][reason] = acc["removed_by_reason"].get(reason, 0) + n
        for reason, items in stats["examples"].items():
            room = config.report_examples - len(examples.setdefault(reason, []))
            examples[reason] += items[: max(room, 0)]
    by_reason: dict[str, int] = {}
    for s in domains.values():
        s["removed_by_reason"] = dict(sorted(s["removed_by_reason"].items()))
        for reason, n in s["removed_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    n_in = merged["offsets"][-1]
    counts = {
        "in": n_in,
        "kept": sum(s["kept"] for s in domains.values()),
        "removed": sum(by_reason.values()),
        "removed_by_reason": dict(sorted(by_reason.items())),
        "kept_bytes": kept_bytes,
    }
    if counts["in"] != counts["kept"] + counts["removed"]:  # a bug, not a user error
        raise AssertionError(
            f"accounting: {counts['in']} in != {counts['kept']} + {counts['removed']}"
        )
    shutil.rmtree(work)
    atomic_write_text(staging / "report.html", render(counts, domains, examples))
    outputs = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    seconds = time.perf_counter() - started
    return write_manifest(
        staging,
        stage="data-clean",
        config=dataclasses.asdict(config),
        inputs=[Path(config.input)] if config.input else files,
        outputs=outputs,
        counts=counts,
        wall_time_s=seconds,
        domains=dict(sorted(domains.items())),
        throughput={
            "docs_per_s": round(n_in / seconds, 1),
            "workers": workers,
            "world_size": world,
        },
        quality_calibration=merged["calibration"],
    )
