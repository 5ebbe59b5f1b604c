"""Benchmark: the same rule filters + MinHash signatures, datatrove vs pangu, one core each.

    python benchmarks/data_clean.py --datatrove-python /tmp/dtvenv/bin/python

Both sides run Gopher quality, Gopher repetition, C4 and FineWeb filters (datatrove's
default thresholds) and then a 14 x 8 MinHash signature with word 5-gram shingles, on
the same documents (the bundled en and code shards). datatrove runs in its own venv
through a subprocess (the toolkit never imports it). Prints docs/s and MB/s per core
and the ratio, median of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATATROVE_SIDE = r"""
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
    GopherQualityFilter, GopherRepetitionFilter)
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig  # sha1: this xxhash build wants bytes
texts = json.load(open(sys.argv[1]))
filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(),
           FineWebQualityFilter()]
config = MinhashConfig(num_buckets=14, hashes_per_bucket=8, n_grams=5,
                       hash_config=HashConfig(precision=64, hash_fc="sha1"))
sig = MinhashDedupSignature(output_folder=sys.argv[2], config=config)
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        for f in filters:
            r = f.filter(doc)
            if r is not True and not (isinstance(r, tuple) and r[0]):
                break
        sig.get_signature(sig.get_shingles(doc.text))
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""  # noqa: E501


def pangu_side(texts: list[str], repeats: int) -> list[float]:
    from pangu_cli.cleaning import dedup, filters

    cfg = filters.FiltersConfig(
        rules={"*": ["gopher_quality", "gopher_repetition", "c4", "fineweb"]}
    )
    minhash = dedup.MinHasher(dedup.DedupConfig())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for text in texts:
            text, _ = filters.apply_filters(text, "web", "en", cfg)
            minhash.band_keys(minhash.signature(dedup.shingle_hashes(text, False, 5, 5)))
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--domains", default="en,code")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pangu_cli.corpus import bundled_corpus_dir
    from pangu_cli.shards import read_shard

    texts = []
    for d in args.domains.split(","):
        texts += (
            read_shard(bundled_corpus_dir() / f"{d}-00000.arrow", "document")
            .column("text")
            .to_pylist()
        )
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    results = {"pangu": statistics.median(pangu_side(texts, args.repeats))}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "texts.json"
        data.write_text(json.dumps(texts))
        proc = subprocess.run(
            [args.datatrove_python, "-c", DATATROVE_SIDE, str(data), tmp, str(args.repeats)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"datatrove side failed:\n{proc.stderr[-2000:]}")
        results["datatrove"] = statistics.median(json.loads(proc.stdout.strip().splitlines()[-1]))
    n = len(texts)
    print(f"{n} documents, {mb:.2f} MB ({args.domains}), one core each, median of {args.repeats}")
    for name, secs in results.items():
        print(f"{name:10s} {secs:8.2f} s  {n / secs:8.1f} docs/s  {mb / secs:6.3f} MB/s")
    print(f"pangu / datatrove: {results['datatrove'] / results['pangu']:.2f}x per core")


if __name__ == "__main__":
    main()
