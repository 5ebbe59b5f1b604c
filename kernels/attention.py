"""Causal attention restricted to each packed document, with GQA.

Sequences are packed from whole documents; `doc_ids[b, t]` is the document index of every
position (non-decreasing along t). A query attends to key j only if j <= i and both lie in
the same document. The mask is prepared once per forward and shared by every layer (and,
under pipelining, every virtual stage), in the form the device's kernel wants:

- CPU / CUDA: a bool mask [B, 1, T, T] (True = may attend) for F.scaled_dot_product_attention.
- NPU: as in the Pangu Ultra report, no full mask. npu_fusion_attention runs on the
  flattened B*T tokens (layout "TND") with cumulative document ends (actual_seq_qlen /
  actual_seq_kvlen) and a fixed 2048x2048 causal template (sparse_mode=3, right-down causal),
  which the kernel applies inside each document.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.dispatch import backend_for

# npu_fusion_attention's compressed causal mask for sparse_mode 2/3/4/7/8 is always 2048x2048.
NPU_MASK_TEMPLATE = 2048


@dataclass
class DocumentMask:
    backend: str  # the backend this mask was built for: "npu" | "cuda" | "cpu"
    sdpa_mask: torch.Tensor | None = None  # [B, 1, T, T] bool, True = may attend
    cu_seqlens: list[int] | None = None  # cumulative document ends over the B*T flat tokens
    causal_template: torch.Tensor | None = None  # [2048, 2048] bool, True = masked


def document_cu_seqlens(doc_ids: torch.Tensor) -> list[int]:
    """Cumulative end offsets of every document over the flattened [B*T] tokens.

    A document ends where the id changes along a row and at every row end (a document
    never continues into the next row). doc_ids [[0,0,1],[5,5,5]] -> [2, 3, 6].
    This is a host list: the NPU kernel takes actual_seq_qlen as int[] (one sync per forward).
    torch_npu documents at most 1K entries in the varlen (TND) case, i.e. documents per
    micro-batch, and B*T up to 1M tokens.
    """
    ends = torch.ones_like(doc_ids, dtype=torch.bool)
    ends[:, :-1] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return (ends.flatten().nonzero().flatten() + 1).tolist()


@functools.lru_cache(maxsize=8)  # one 4 MiB template per device, shared by all calls
def _causal_template(device: torch.device) -> torch.Tensor:
    size = NPU_MASK_TEMPLATE
    return torch.triu(torch.ones(size, size, dtype=torch.bool, device=device), diagonal=1)


def _sdpa_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    T = doc_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    return (same_doc & causal)[:, None]


def prepare_document_mask(
    doc_ids: torch.Tensor | None, device_type: str | None = None
) -> DocumentMask | None:
    """Build, once per forward, only what the attention kernel of `device_type` needs.

    `device_type` defaults to that of doc_ids. None doc_ids means plain causal: returns None.
    Pass doc_ids on the compute device: the NPU template is made where doc_ids lives.
    """
    if doc_ids is None:
        return None
    backend = backend_for(device_type if device_type is not None else doc_ids.device)
    if backend == "npu":
        return DocumentMask(
            backend,
            cu_seqlens=document_cu_seqlens(doc_ids),
            causal_template=_causal_template(doc_ids.device),
        )
    return DocumentMask(backend, sdpa_mask=_sdpa_mask(doc_ids))


def document_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, doc_ids: torch.Tensor | None
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D) + mask) V, written out; q [B,Hq,T,D], k/v [B,Hkv,T,D]."""
    T, D = q.shape[-2], q.shape[-1]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(D)
    allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if doc_ids is not None:
        allowed = allowed & (doc_ids[:, :, None] == doc_ids[:, None, :])[:, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def _attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask | None
) -> torch.Tensor:
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if mask.sdpa_mask is None:
        raise ValueError(f"DocumentMask was prepared for {mask.backend!r}, not for SDPA")
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.sdpa_mask, enable_gqa=True)


def _attention_sdpa_cuda(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask | None
) -> torch.Tensor:
    # On CUDA, enable_gqa together with an explicit attn_mask has no fused kernel and SDPA
    # silently takes the math backend (full fp32 [B, Hq, T, T] scores). With a mask, repeat
    # the KV heads instead so the memory-efficient kernel runs; without one, flash takes GQA.
    if mask is not None and k.shape[1] != q.shape[1]:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return _attention_sdpa(q, k, v, mask)


def _attention_npu(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask | None
) -> torch.Tensor:
    import torch_npu  # lazy: see kernels/dispatch.py

    B, Hq, T, D = q.shape
    if mask is None:  # plain causal = one document per row
        cu_seqlens, template = [T * (b + 1) for b in range(B)], _causal_template(q.device)
    elif mask.cu_seqlens is None or mask.causal_template is None:
        raise ValueError(f"DocumentMask was prepared for {mask.backend!r}, not for NPU")
    else:
        cu_seqlens, template = mask.cu_seqlens, mask.causal_template.to(q.device)

    def tnd(x: torch.Tensor) -> torch.Tensor:  # [B, H, T, D] -> [B*T, H, D]
        return x.transpose(1, 2).reshape(B * T, x.shape[1], D)

    # GQA is native: head_num is the query head count, key/value may have fewer heads.
    out = torch_npu.npu_fusion_attention(
        tnd(q),
        tnd(k),
        tnd(v),
        Hq,
        "TND",
        atten_mask=template,
        scale=1.0 / math.sqrt(D),
        actual_seq_qlen=cu_seqlens,
        actual_seq_kvlen=cu_seqlens,
        sparse_mode=3,
    )[0]
    return out.reshape(B, T, Hq, D).transpose(1, 2)


AttentionImpl = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, DocumentMask | None], torch.Tensor
]


def _impl_for(backend: str) -> AttentionImpl:
    return {"npu": _attention_npu, "cuda": _attention_sdpa_cuda}.get(backend, _attention_sdpa)


def document_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask | None
) -> torch.Tensor:
    """Causal per-document attention, scale 1/sqrt(D); q [B,Hq,T,D], k/v [B,Hkv,T,D]."""
    return _impl_for(backend_for(q.device))(q, k, v, mask)
