"""The HTML report: what was removed and why, with examples, per domain."""

from __future__ import annotations

import html
from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(counts: dict[str, Any], domains: dict[str, Any], examples: dict[str, list[dict]]) -> str:
    """A self-contained HTML page (no scripts, no external files)."""
    total = max(counts["in"], 1)
    reasons = sorted(counts["removed_by_reason"].items(), key=lambda kv: -kv[1])
    bar = lambda n: f"{'█' * max(1, round(40 * n / total))} {100 * n / total:.1f}%"  # noqa: E731
    parts = [
        "<!doctype html><meta charset='utf-8'><title>pangu data-clean report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "pre{white-space:pre-wrap;max-width:100ch;background:#f6f6f6;padding:6px}</style>",
        "<h1>pangu data-clean</h1>",
        f"<p>{counts['in']:,} documents in, {counts['kept']:,} kept, "
        f"{counts['removed']:,} removed.</p>",
        "<h2>Removed, by reason</h2>",
        _table(["reason", "documents", "share of input"], [[r, n, bar(n)] for r, n in reasons]),
        "<h2>By domain</h2>",
        _table(
            ["domain", "in", "kept", "removed", "reasons"],
            [
                [
                    d,
                    s["in"],
                    s["kept"],
                    s["removed"],
                    ", ".join(f"{k}: {v}" for k, v in s["removed_by_reason"].items()),
                ]
                for d, s in sorted(domains.items())
            ],
        ),
        "<h2>Examples</h2>",
    ]
    for reason, items in sorted(examples.items()):
        parts.append(f"<h3>{html.escape(reason)}</h3>")
        for item in items:
            extra = (
                f" (duplicate of {html.escape(item['duplicate_of'])})"
                if item.get("duplicate_of")
                else ""
            )
            parts.append(
                f"<p><b>{html.escape(item['id'])}</b> [{html.escape(item['domain'])}]{extra}</p>"
                f"<pre>{html.escape(item['text'])}</pre>"
            )
    return "\n".join(parts) + "\n"
