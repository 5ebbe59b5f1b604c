#!/usr/bin/env bash
# Throughput of a ~1B pangu preset in bf16 on one GPU (or NPU): tokens/s and MFU against
# the device's dense bf16 peak from pangu_cli.device.KNOWN_PEAKS (the report's bar: 52%).
# HF transformers' Llama at the same shape runs beside it. Not runnable on the CPU boxes.
#
#   bash benchmarks/gpu.sh                 # 1b preset, seq 4096, batch 4
#   SEQ=2048 BATCH=8 PRESET=1b bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-1b}
SEQ=${SEQ:-4096}
BATCH=${BATCH:-4}
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available() or hasattr(torch, "npu"), "no GPU/NPU visible"
print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "npu")
PY
# Eager and torch.compile per block; medians of 5 rounds x 5 steps after 2 warm-up steps.
"$PY" benchmarks/throughput/run.py --device "$DEVICE" --dtype bf16 --preset "$PRESET" \
    --seq-len "$SEQ" --batch "$BATCH" --rounds 5 --steps 5 --threads 8 --profile-rows 0 "$@"
# The same model through `pangu pretrain` itself (metrics.jsonl carries tokens_per_s and mfu).
OUT=$(mktemp -d)
"$PY" -m pangu_cli.main pretrain --config tiny --out "$OUT/run" --steps 30 \
    model.preset="$PRESET" data.seq_len="$SEQ" data.batch_size="$BATCH" data.batch_ramp=false \
    train.val_every=1000 train.save_every=1000 train.log_every=5 train.dtype=bf16 \
    train.compile=true stability.policy=warn
tail -n 3 "$OUT/run/metrics.jsonl"
