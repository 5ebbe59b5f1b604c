"""CPU allocator tuning: after it, a training step asks the OS for no fresh pages."""

import subprocess
import sys
import textwrap

import pytest

STEPS = textwrap.dedent(
    """
    import resource, sys, torch
    from pangu_cli.device import tune_cpu_allocator
    from pangu_cli.model import ModelConfig, PanguModel
    tuned = sys.argv[1] == "tuned" and tune_cpu_allocator()
    torch.manual_seed(0)
    model = PanguModel(ModelConfig(n_layers=2, d_model=128, ffn_hidden=352, vocab_size=4096))
    opt = torch.optim.AdamW(model.parameters())
    tokens = torch.randint(0, 4096, (8, 129))
    def step():
        model(tokens[:, :-1], targets=tokens[:, 1:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step(), step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_allocator_reuses_freed_pages():
    tuned, n = faults("tuned")
    if not tuned:
        pytest.skip("not glibc: mallopt is unavailable")
    assert n < 200  # three steps of ~40 MB of activations each, served from the heap
