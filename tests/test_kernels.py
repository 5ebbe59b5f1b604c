"""kernels/: every fused op against its plain-torch reference, plus the device dispatch.

No NPU here: the NPU paths run against a fake `torch_npu` that implements the documented
semantics of each fused op, which checks our argument names, layouts and sequence lengths.
"""

import importlib
import importlib.abc
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import attention, glu, norm, rope
from kernels.attention import document_cu_seqlens


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def forward_backward(fn, *inputs: torch.Tensor, seed: int = 0):
    """Output and gradients of every input for a random upstream gradient."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), grads


def assert_matches(fn, ref, *inputs: torch.Tensor, tol: float = 1e-5) -> None:
    out, grads = forward_backward(fn, *inputs)
    out_ref, grads_ref = forward_backward(ref, *inputs)
    assert out.dtype == out_ref.dtype and out.shape == out_ref.shape
    assert rel_err(out, out_ref) < tol
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert rel_err(g, g_ref) < tol


def doc_ids_from_lengths(rows: list[list[int]]) -> torch.Tensor:
    return torch.stack(
        [torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in rows]
    )


def restart_positions(doc_ids: torch.Tensor) -> torch.Tensor:
    """Position ids that start again at 0 at every document start."""
    T = doc_ids.shape[1]
    idx = torch.arange(T).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    start_of = torch.where(starts, idx, 0).cummax(dim=1).values
    return idx - start_of


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- a fake torch_npu with the documented semantics ---------------------------------------


def _fake_torch_npu() -> types.ModuleType:
    mod = types.ModuleType("torch_npu")
    mod.calls = []

    def npu_rms_norm(x, gamma, epsilon=1e-06):
        mod.calls.append("npu_rms_norm")
        rstd = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + epsilon)
        return (x.float() * rstd * gamma.float()).to(x.dtype), rstd

    def npu_rotary_mul(x, r1, r2, rotary_mode="half"):
        mod.calls.append("npu_rotary_mul")
        assert rotary_mode == "half" and x.dim() == r1.dim() == r2.dim() == 4
        x1, x2 = torch.chunk(x, 2, -1)
        return r1 * x + r2 * torch.cat((-x2, x1), dim=-1)

    def npu_swiglu(x, dim=-1):
        mod.calls.append("npu_swiglu")
        a, b = torch.chunk(x, 2, dim)
        return F.silu(a) * b

    def npu_fusion_attention(
        query, key, value, head_num, input_layout, pse=None, padding_mask=None,
        atten_mask=None, scale=1.0, keep_prob=1.0, pre_tockens=2147483647,
        next_tockens=2147483647, inner_precise=0, prefix=None, actual_seq_qlen=None,
        actual_seq_kvlen=None, sparse_mode=0, gen_mask_parallel=True, sync=False,
    ):  # fmt: skip
        mod.calls.append("npu_fusion_attention")
        assert input_layout == "TND" and sparse_mode == 3 and query.shape[1] == head_num
        assert atten_mask.shape == (2048, 2048) and atten_mask.dtype == torch.bool
        assert torch.equal(atten_mask, torch.ones(2048, 2048, dtype=torch.bool).triu(1))
        assert actual_seq_qlen == actual_seq_kvlen and actual_seq_qlen[-1] == query.shape[0]
        group = head_num // key.shape[1]
        outs, start = [], 0
        for end in actual_seq_qlen:  # rightDownCausal inside each [start, end) segment
            q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
            k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
            s = (q @ k.transpose(-2, -1)) * scale
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
            outs.append((s.softmax(-1) @ v).transpose(0, 1))
            start = end
        return torch.cat(outs), None, None, None, 0, 0, 0

    for fn in (npu_rms_norm, npu_rotary_mul, npu_swiglu, npu_fusion_attention):
        setattr(mod, fn.__name__, fn)
    return mod


@pytest.fixture
def fake_npu(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = _fake_torch_npu()
    monkeypatch.setitem(sys.modules, "torch_npu", mod)
    return mod


# ---- dispatch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cpu", "cpu"),
        (torch.device("cpu"), "cpu"),
        ("cuda", "cuda"),
        ("cuda:1", "cuda"),
        (torch.device("cuda", 0), "cuda"),
        ("npu", "npu"),
        ("npu:3", "npu"),
        ("meta", "cpu"),
        (torch.device("meta"), "cpu"),
    ],
)
def test_backend_for(device, expected):
    assert kernels.backend_for(device) == expected


def test_importing_kernels_does_not_import_torch_npu(monkeypatch):
    # Re-import the package while recording (and refusing) every attempt to import torch_npu,
    # so even a guarded `try: import torch_npu` at top level is caught.
    attempts = []

    class Recorder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "torch_npu":
                attempts.append(name)
                raise ImportError(name)
            return None

    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Recorder(), *sys.meta_path])
    for name in [m for m in sys.modules if m == "kernels" or m.startswith("kernels.")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("kernels")
    assert fresh is not kernels
    x = torch.randn(1, 2, 4, 8)
    fresh.rms_norm(x, torch.ones(8))
    fresh.document_attention(x, x, x, fresh.prepare_document_mask(torch.zeros(1, 4)))
    assert attempts == []


@pytest.mark.parametrize(
    "module, npu_impl, op",
    [
        (norm, norm._rms_norm_npu, "npu_rms_norm"),
        (rope, rope._apply_rope_npu, "npu_rotary_mul"),
        (glu, glu._swiglu_npu, "npu_swiglu"),
        (attention, attention._attention_npu, "npu_fusion_attention"),
    ],
)
def test_npu_dispatch_calls_torch_npu(fake_npu, monkeypatch, module, npu_impl, op):
    assert module._impl_for("npu") is npu_impl
    assert module._impl_for("cpu") is not npu_impl and module._impl_for("cuda") is not npu_impl
    # The public function on an "npu" tensor ends in the torch_npu op.
    monkeypatch.setattr(module, "backend_for", lambda device: "npu")
    x = torch.randn(1, 2, 4, 8)
    cos, sin = kernels.rope_cos_sin(torch.arange(4)[None], 8, 1e4)
    call = {
        "npu_rms_norm": lambda: kernels.rms_norm(x, torch.ones(8)),
        "npu_rotary_mul": lambda: kernels.apply_rope(x, cos, sin),
        "npu_swiglu": lambda: kernels.swiglu(x, x),
        "npu_fusion_attention": lambda: kernels.document_attention(x, x, x, None),
    }[op]
    call()
    assert fake_npu.calls == [op]


def test_cpu_paths_never_touch_torch_npu(fake_npu):
    x = torch.randn(1, 2, 4, 8)
    cos, sin = kernels.rope_cos_sin(torch.arange(4)[None], 8, 1e4)
    kernels.rms_norm(x, torch.ones(8))
    kernels.apply_rope(x, cos, sin)
    kernels.swiglu(x, x)
    kernels.document_attention(x, x, x, kernels.prepare_document_mask(torch.zeros(1, 4)))
    assert fake_npu.calls == []


# ---- RMSNorm --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 64), (2, 5, 16), (1, 7, 4, 32)])
def test_rms_norm_matches_reference(shape):
    x, w = torch.randn(shape), torch.randn(shape[-1])
    assert_matches(kernels.rms_norm, kernels.rms_norm_reference, x, w)
    assert_matches(
        lambda a, b: kernels.rms_norm(a, b, eps=1e-2),
        lambda a, b: kernels.rms_norm_reference(a, b, eps=1e-2),
        x, w,
    )  # fmt: skip


def test_rms_norm_bf16_computes_in_fp32():
    x, w = torch.randn(4, 64).bfloat16(), torch.randn(64).bfloat16()
    y = kernels.rms_norm(x, w)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, kernels.rms_norm_reference(x, w))


def test_rms_norm_cpu_backward_gradcheck():
    # The CPU path has a hand-written backward (torch has no fused CPU rms_norm backward).
    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: kernels.rms_norm(a, b, 1e-5), (x, w))


def test_rms_norm_bf16_backward_matches_reference():
    x, w = torch.randn(6, 64), torch.randn(64)
    out, grads = forward_backward(kernels.rms_norm, x.bfloat16(), w.bfloat16())
    out_ref, grads_ref = forward_backward(kernels.rms_norm_reference, x, w)
    assert [g.dtype for g in grads] == [torch.bfloat16, torch.bfloat16]
    assert rel_err(out.float(), out_ref) < 1e-2
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert rel_err(g.float(), g_ref) < 2e-2


def test_rms_norm_npu_path(fake_npu):
    x, w = torch.randn(2, 5, 16), torch.randn(16)
    assert_matches(lambda a, b: norm._rms_norm_npu(a, b, 1e-6), kernels.rms_norm_reference, x, w)


# ---- RoPE -----------------------------------------------------------------------------------


def rope_complex(x: torch.Tensor, position_ids: torch.Tensor, base: float) -> torch.Tensor:
    """Independent RoPE: pair (i, i + D/2) as a complex number, rotate by pos * base^(-2i/D).

    The angle is rounded to fp32 exactly as in rope_cos_sin and Hugging Face (at position 4000
    fp32 angles are off by ~2e-4 rad: the convention checkpoints are trained with); only the
    rotation is computed independently, in float64.
    """
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    theta = (position_ids[:, None, :, None].float() * inv_freq).double()
    z = torch.complex(x[..., : D // 2].double(), x[..., D // 2 :].double()) * torch.polar(
        torch.ones_like(theta), theta
    )
    return torch.cat((z.real, z.imag), dim=-1).to(x.dtype)


def test_rope_cos_sin_layout():
    pos = torch.tensor([[0, 1, 2], [7, 8, 9]])
    cos, sin = kernels.rope_cos_sin(pos, 8, 1e4, dtype=torch.bfloat16)
    assert cos.shape == sin.shape == (2, 3, 8) and cos.dtype == torch.bfloat16
    cos, sin = kernels.rope_cos_sin(pos, 8, 1e4)
    assert torch.equal(cos[..., :4], cos[..., 4:]) and torch.equal(sin[0, 0], torch.zeros(8))
    assert math.isclose(cos[1, 2, 1].item(), math.cos(9 * 1e4 ** (-2 / 8)), rel_tol=1e-6)


@pytest.mark.parametrize("B, H, T, D, base", [(2, 4, 10, 16, 1e4), (1, 3, 33, 128, 1.6e6)])
def test_apply_rope_matches_reference(B, H, T, D, base):
    x, pos = torch.randn(B, H, T, D), torch.randint(0, 4096, (B, T))
    cos, sin = kernels.rope_cos_sin(pos, D, base)
    assert rel_err(kernels.apply_rope_reference(x, cos, sin), rope_complex(x, pos, base)) < 1e-5
    # gradients of x and of cos / sin
    assert_matches(kernels.apply_rope, kernels.apply_rope_reference, x, cos, sin)


def test_apply_rope_npu_path(fake_npu):
    x, pos = torch.randn(2, 4, 10, 16), torch.randint(0, 100, (2, 10))
    cos, sin = kernels.rope_cos_sin(pos, 16, 1e4)
    assert_matches(rope._apply_rope_npu, kernels.apply_rope_reference, x, cos, sin)


def test_rope_restarting_positions_match_document_alone():
    doc_ids = doc_ids_from_lengths([[5, 7, 4]])
    pos = restart_positions(doc_ids)
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3]]
    x = torch.randn(1, 2, 16, 32)
    packed = kernels.apply_rope(x, *kernels.rope_cos_sin(pos, 32, 1e4))
    alone = kernels.apply_rope(x[:, :, 5:12], *kernels.rope_cos_sin(torch.arange(7)[None], 32, 1e4))
    torch.testing.assert_close(packed[:, :, 5:12], alone, rtol=0, atol=0)


# ---- SwiGLU ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 32), (2, 7, 48)])
def test_swiglu_matches_reference(shape):
    gate, up = torch.randn(shape), torch.randn(shape)
    assert rel_err(kernels.swiglu(gate, up), gate * torch.sigmoid(gate) * up) < 1e-6
    assert_matches(kernels.swiglu, kernels.swiglu_reference, gate, up)


def test_swiglu_npu_path(fake_npu):
    gate, up = torch.randn(2, 7, 48), torch.randn(2, 7, 48)
    assert_matches(glu._swiglu_npu, kernels.swiglu_reference, gate, up)


# ---- document attention ---------------------------------------------------------------------

ATTENTION_CASES = {
    "gqa_packed_and_single_doc": (8, 2, 16, [[5, 11, 8], [24]]),
    "mha_tiny_docs": (4, 4, 8, [[1, 1, 10, 4], [3, 3, 3, 3, 3, 1]]),
    "mqa_one_row": (6, 1, 32, [[9, 2, 13]]),
    "plain_causal": (8, 2, 16, None),
}


def attention_inputs(Hq: int, Hkv: int, D: int, rows: list[list[int]] | None, B: int = 2):
    T = sum(rows[0]) if rows else 20
    B = len(rows) if rows else B
    q, k, v = torch.randn(B, Hq, T, D), torch.randn(B, Hkv, T, D), torch.randn(B, Hkv, T, D)
    # document indices need not start at 0, only be non-decreasing along a row
    doc_ids = doc_ids_from_lengths(rows) + 3 if rows else None
    return q, k, v, doc_ids


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_document_attention_matches_reference(case):
    q, k, v, doc_ids = attention_inputs(*ATTENTION_CASES[case])
    mask = kernels.prepare_document_mask(doc_ids)
    assert_matches(
        lambda q, k, v: kernels.document_attention(q, k, v, mask),
        lambda q, k, v: kernels.document_attention_reference(q, k, v, doc_ids),
        q, k, v,
    )  # fmt: skip


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_document_attention_cuda_path_runs_on_cpu_tensors(case):
    # The CUDA variant is plain torch (KV heads repeated when masked), so it runs here too.
    q, k, v, doc_ids = attention_inputs(*ATTENTION_CASES[case])
    mask = kernels.prepare_document_mask(doc_ids, "cuda")
    assert_matches(
        lambda q, k, v: attention._impl_for("cuda")(q, k, v, mask),
        lambda q, k, v: kernels.document_attention_reference(q, k, v, doc_ids),
        q, k, v,
    )  # fmt: skip


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_document_attention_npu_path(fake_npu, case):
    q, k, v, doc_ids = attention_inputs(*ATTENTION_CASES[case])
    mask = kernels.prepare_document_mask(doc_ids, "npu")
    assert_matches(
        lambda q, k, v: attention._attention_npu(q, k, v, mask),
        lambda q, k, v: kernels.document_attention_reference(q, k, v, doc_ids),
        q, k, v,
    )  # fmt: skip
    assert fake_npu.calls and set(fake_npu.calls) == {"npu_fusion_attention"}


def test_single_document_rows_equal_plain_causal():
    q, k, v, _ = attention_inputs(8, 2, 16, None)
    doc_ids = torch.zeros(q.shape[0], q.shape[2], dtype=torch.long)
    with_docs = kernels.document_attention(q, k, v, kernels.prepare_document_mask(doc_ids))
    assert rel_err(with_docs, kernels.document_attention(q, k, v, None)) < 1e-6


@pytest.mark.parametrize("path", ["sdpa", "npu", "reference"])
def test_no_attention_across_document_boundary(fake_npu, path):
    q, k, v, doc_ids = attention_inputs(8, 2, 16, [[6, 9, 7]])  # doc 1 = positions 6..14
    run = {
        "sdpa": lambda k, v: kernels.document_attention(
            q, k, v, kernels.prepare_document_mask(doc_ids)
        ),
        "npu": lambda k, v: attention._attention_npu(
            q, k, v, kernels.prepare_document_mask(doc_ids, "npu")
        ),
        "reference": lambda k, v: kernels.document_attention_reference(q, k, v, doc_ids),
    }[path]
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:15] = torch.randn_like(k2[:, :, 6:15]) * 10
    v2[:, :, 6:15] = torch.randn_like(v2[:, :, 6:15]) * 10
    before, after = run(k, v), run(k2, v2)
    torch.testing.assert_close(after[:, :, 15:], before[:, :, 15:], rtol=0, atol=0)
    assert not torch.allclose(after[:, :, 6:15], before[:, :, 6:15])  # doc 1 itself did change


# ---- mask preparation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc_ids, expected",
    [
        ([[0, 0, 1], [5, 5, 5]], [2, 3, 6]),
        ([[1, 1], [1, 1]], [2, 4]),  # same id across a row boundary is still two documents
        ([[0, 1, 2, 3]], [1, 2, 3, 4]),
        ([[7] * 5], [5]),
        ([[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 1, 1, 1, 1]], [3, 5, 8, 9, 16]),
    ],
)
def test_document_cu_seqlens(doc_ids, expected):
    assert document_cu_seqlens(torch.tensor(doc_ids)) == expected


def test_prepare_document_mask_builds_only_what_the_device_needs():
    doc_ids = doc_ids_from_lengths([[2, 3], [5]])
    assert kernels.prepare_document_mask(None) is None
    assert kernels.prepare_document_mask(None, "npu") is None

    npu = kernels.prepare_document_mask(doc_ids, "npu")
    assert npu.sdpa_mask is None and npu.cu_seqlens == [2, 5, 10]
    template = npu.causal_template
    assert template.shape == (2048, 2048) and template.dtype == torch.bool
    assert torch.equal(template, torch.ones(2048, 2048, dtype=torch.bool).triu(1))

    for device_type in (None, "cpu", "cuda"):
        m = kernels.prepare_document_mask(doc_ids, device_type)
        assert m.cu_seqlens is None and m.causal_template is None
        assert m.sdpa_mask.shape == (2, 1, 5, 5) and m.sdpa_mask.dtype == torch.bool
    expected_row0 = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    ).bool()
    assert torch.equal(m.sdpa_mask[0, 0], expected_row0)
    assert torch.equal(m.sdpa_mask[1, 0], torch.ones(5, 5, dtype=torch.bool).tril())


def test_mask_prepared_for_another_device_is_refused(fake_npu):
    q, k, v, doc_ids = attention_inputs(4, 2, 8, [[3, 5]])
    with pytest.raises(ValueError, match="prepared for 'npu'"):
        kernels.document_attention(q, k, v, kernels.prepare_document_mask(doc_ids, "npu"))
    with pytest.raises(ValueError, match="prepared for 'cpu'"):
        attention._attention_npu(q, k, v, kernels.prepare_document_mask(doc_ids, "cpu"))
