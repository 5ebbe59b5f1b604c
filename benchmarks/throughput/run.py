"""pangu's pretrain step against Hugging Face transformers' LlamaForCausalLM, side by side in
one process on this CPU: same shape, batch, sequence length, data, AdamW hyperparameters
and gradient clipping; fp32. Each side builds its optimiser its own way: HF gets torch's
AdamW with defaults (foreach), as transformers' Trainer does; pangu its fused AdamW.
Arms run interleaved, round after round; each reports its median
tokens/s and, against HF, the median of the per-round ratios (a noisy neighbour slows both
sides of a round alike, so the paired ratio is steadier than a ratio of medians).

The process tunes glibc's allocator as `pangu pretrain` does on CPU (HF shares the process,
so it gets the same allocator); --stock-allocator leaves glibc's defaults. Minor page
faults per step show what fresh memory each arm asks the kernel for.

Arms:
  hf-llama          LlamaForCausalLM (SDPA, causal), F.cross_entropy on its logits
  pangu             pangu's Trainer.train_step, DSSN (two extra norms per layer), packed
                    rows with document masks and per-document positions, the head fused
                    into the loss (what pretrain runs)
  pangu-causal      the same without document masks (HF's attention pattern)
  pangu-compiled    pangu with torch.compile per block (parallel.compile / train.compile)

MFU = model FLOPs (6 N per token + attention, pangu_cli.presets) per second over the
measured fp32 matmul peak. A torch.profiler table of one pangu step says where time goes.

    .venv/bin/python benchmarks/throughput/run.py                      # ~6 layers d256
    .venv/bin/python benchmarks/throughput/run.py --shape 12x512 --seq-len 512 --batch 4 \
        --vocab 16384
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pangu_cli.device import measured_matmul_peak, peak_flops, tune_cpu_allocator  # noqa: E402
from pangu_cli.model import ModelConfig, PanguModel  # noqa: E402
from pangu_cli.packing import Batch, pack_rows  # noqa: E402
from pangu_cli.presets import (  # noqa: E402
    PRESETS,
    count_parameters,
    training_flops_per_token,
)
from pangu_cli.trainer import Trainer  # noqa: E402
from stages.pretrain import OptimSection  # noqa: E402
from stages.pretrain_setup import build_optimizer  # noqa: E402

EOD = 0


def make_batches(n: int, batch: int, seq: int, vocab: int, mask: bool) -> list[Batch]:
    """Rows of packed random documents (lengths 20..400) with EODs, fixed seed."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        rows = rng.integers(1, vocab, (batch, seq + 1)).astype(np.uint32)
        for r in rows:
            pos = 0
            while True:
                pos += int(rng.integers(20, 400))
                if pos >= seq:
                    break
                r[pos] = EOD
        inputs, targets, positions, doc_ids = pack_rows(rows, EOD, mask, mask)
        out.append(Batch(inputs, targets, positions, doc_ids, {}))
    return out


def autocast(device: torch.device, dtype: torch.dtype | None):
    import contextlib

    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype)


class HFStep:
    def __init__(
        self, cfg: ModelConfig, seq: int, lr: float, device: torch.device, dtype: torch.dtype | None
    ) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        hf_cfg = LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=seq,
            rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_base, tie_word_embeddings=False,
            attn_implementation="sdpa",
        )  # fmt: skip
        torch.manual_seed(0)
        self.model = LlamaForCausalLM(hf_cfg).to(device)
        self.device, self.dtype = device, dtype
        # torch's AdamW with its defaults (foreach), as transformers' Trainer builds it
        # (adamw_torch), with pangu's hyperparameters and weight-decay groups.
        self.optimizer = build_optimizer(self.model, OptimSection(lr=lr), fused=False)
        self.n_params = sum(p.numel() for p in self.model.parameters())

    def __call__(self, batch: Batch) -> float:
        self.model.train()
        with autocast(self.device, self.dtype):
            logits = self.model(input_ids=batch.inputs.to(self.device), use_cache=False).logits
        targets = batch.targets.to(self.device).flatten()
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


class PanguStep:
    def __init__(
        self,
        cfg: ModelConfig,
        lr: float,
        compile: bool,
        device: torch.device,
        dtype: torch.dtype | None,
    ) -> None:
        torch.manual_seed(0)
        model = PanguModel(cfg).to(device)
        if compile:
            for block in model.layers.values():
                block.compile()
        optimizer = build_optimizer(model, OptimSection(lr=lr))
        self.trainer = Trainer(
            model, optimizer, None, lr_at=lambda s: lr, total_steps=0, grad_clip=1.0,
            device=device, autocast_dtype=dtype,
        )  # fmt: skip
        self.model = model

    def __call__(self, batch: Batch) -> float:
        return self.trainer.train_step(batch)[0]


def time_steps(step, batches: list[Batch]) -> tuple[float, int]:
    """Seconds and minor page faults for one pass over `batches`."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for b in batches:
        step(b)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def profile(step, batch: Batch, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="6x256", help="LAYERSxD_MODEL")
    ap.add_argument("--preset", default=None, help="a model preset instead of --shape (1b)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | npu")
    ap.add_argument("--dtype", default="fp32", help="fp32 | bf16 (autocast)")
    ap.add_argument("--no-hf", action="store_true", help="pangu arms only")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per arm per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--stock-allocator", action="store_true", help="glibc malloc defaults")
    ap.add_argument("--profile-rows", type=int, default=14)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tuned = device.type == "cpu" and not args.stock_allocator and tune_cpu_allocator()
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    if args.preset:
        cfg = PRESETS[args.preset]
    else:
        layers, d = (int(x) for x in args.shape.split("x"))
        cfg = ModelConfig(
            n_layers=layers, d_model=d, ffn_hidden=d * 11 // 4, n_heads=d // 32, n_kv_heads=2,
            vocab_size=args.vocab,
        )  # fmt: skip
    layers, d, args.vocab = cfg.n_layers, cfg.d_model, cfg.vocab_size
    arms = {} if args.no_hf else {"hf-llama": HFStep(cfg, args.seq_len, 1e-3, device, dtype)}
    arms["pangu"] = PanguStep(cfg, 1e-3, False, device, dtype)
    arms["pangu-causal"] = arms["pangu"]
    if not args.no_compile:
        arms["pangu-compiled"] = PanguStep(cfg, 1e-3, True, device, dtype)
    masked = make_batches(args.steps, args.batch, args.seq_len, args.vocab, mask=True)
    causal = make_batches(args.steps, args.batch, args.seq_len, args.vocab, mask=False)
    data = {name: (causal if name in ("hf-llama", "pangu-causal") else masked) for name in arms}
    for name, step in arms.items():  # warm-up (and the cold compile) outside the timing
        start = time.perf_counter()
        step(data[name][0])
        step(data[name][0])
        print(f"{name}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in arms}
    faults: dict[str, list[int]] = {name: [] for name in arms}
    for r in range(args.rounds):
        for name, step in arms.items():
            seconds, n_faults = time_steps(step, data[name])
            times[name].append(seconds)
            faults[name].append(n_faults)
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
              flush=True)  # fmt: skip
    if device.type == "cpu":
        peak, source = measured_matmul_peak(device, size=2048), "measured fp32 matmul"
    else:
        peak, source = peak_flops(device)  # the known-device table (bf16), else measured
    counts = count_parameters(arms["pangu"].model)
    flops = training_flops_per_token(cfg, counts["total"], counts["embedding"], args.seq_len)
    tokens = args.steps * args.batch * args.seq_len
    print(
        f"\n{layers} layers, d={d}, ffn {cfg.ffn_hidden}, heads {cfg.n_heads}/{cfg.n_kv_heads}, "
        f"vocab {args.vocab}, seq {args.seq_len}, batch {args.batch}, {args.device} "
        f"({args.threads} threads), {args.dtype}; median of {args.rounds} rounds x "
        f"{args.steps} steps; pangu "
        f"{counts['total'] / 1e6:.2f}M params; peak {peak / 1e9:.0f} GFLOP/s ({source}); "
        f"allocator {'tuned' if tuned else 'stock'}"
    )
    base = times.get("hf-llama", times["pangu"])
    print(
        f"{'arm':<16} {'tokens/s':>9} {'vs HF':>6} {'MFU':>6} {'faults/step':>11}"
        "  (per-round tokens/s)"
    )
    for name, ts in times.items():
        tps = tokens / statistics.median(ts)
        paired = statistics.median(b / t for b, t in zip(base, ts, strict=True))
        rounds = ", ".join(f"{tokens / t:.0f}" for t in ts)
        mfu = 100 * tps * flops / peak
        per_step = statistics.median(faults[name]) / args.steps
        print(f"{name:<16} {tps:>9.0f} {paired:>5.2f}x {mfu:>5.1f}% {per_step:>11.0f}  ({rounds})")
    if args.profile_rows:
        print("\nwhere a pangu step's time goes (eager, document-masked):")
        print(profile(arms["pangu"], masked[0], args.profile_rows))


if __name__ == "__main__":
    main()
