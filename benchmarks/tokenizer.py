"""Benchmark: domain-merged BPE vs one BPE on the mixed corpus, same vocabulary size.

    python benchmarks/tokenizer.py                      # bundled corpus, 8192 tokens
    python benchmarks/tokenizer.py --vocab-size 16384 --shares en=50,zh=15,code=20,math=15

Runs `pangu tokenizer-build` with mode=domain_merged and compare=true (so both tokenizers
are trained on the same documents and measured on the same held-out documents), prints
bytes and characters per token per domain for both, and checks issue 3's acceptance:
merged no worse than mixed by more than 3% bytes per token on any domain, better on one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pangu_cli.commands.data import print_tokenizer_table  # noqa: E402
from stages.tokenizer_build import TokenizerBuildConfig, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None, help="document shards (default: bundled)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--shares", default="", help="domain=weight,... (default: report's)")
    parser.add_argument("--heldout-fraction", type=float, default=0.05)
    args = parser.parse_args()
    shares = {k: float(v) for k, v in (kv.split("=") for kv in args.shares.split(",") if kv)}
    config = TokenizerBuildConfig(
        input=args.input,
        vocab_size=args.vocab_size,
        mode="domain_merged",
        compare=True,
        shares=shares,
        heldout_fraction=args.heldout_fraction,
    )
    with tempfile.TemporaryDirectory() as tmp:
        manifest = run(config, Path(tmp) / "tokenizer")
    print_tokenizer_table(manifest, "domain_merged vs mixed")
    for d, s in (manifest["merge"] or {}).items():
        print(
            f"  {d:>6}: share {s['share']:.3f}, {s['added']} tokens added, {s['bridges']} "
            f"bridges, {s['shared']} shared with another domain, {s['skipped']} without a path"
        )
    change = {d: r["bytes_per_token_change_pct"] for d, r in manifest["comparison"].items()}
    domains = [d for d in change if d != "all"]
    worst = min(change[d] for d in domains)
    ok = worst >= -3.0 and any(change[d] > 0 for d in domains)
    print(f"acceptance (no domain worse than -3%, one better): {'PASS' if ok else 'FAIL'}")
    print(f"worst {worst:+.1f}%, wall {manifest['wall_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
