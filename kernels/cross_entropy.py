"""Output projection fused with next-token cross-entropy, in chunks of tokens.

The plain way materialises logits [N, vocab], their log-softmax and their gradient: at a
16K vocabulary and 2K tokens that is three 134 MB fp32 tensors a step, each a fresh
allocation the OS has to fault in, and two extra passes over them in backward. Here the
tokens go through the head a chunk at a time; for each chunk the loss and, when a
gradient is needed, d(loss)/d(logits) = softmax - onehot are formed in place, and turned
straight into the gradients of the hidden states and of the head weight (the approach of
Liger Kernel's fused linear cross-entropy). Only one chunk's logits exist at a time.

The loss returned is the sum over targets that are not `ignore_index`, in fp32; the
caller divides by its own token count (the global one under data parallelism).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 1 << 22  # logits per chunk (16 MiB in fp32), whatever the vocabulary


def linear_cross_entropy_reference(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """sum over valid targets of -log softmax(hidden @ weight.T)[target], in fp32."""
    logits = F.linear(hidden, weight).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would pick (autocast does not reach into in-place ops)."""
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return hidden.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int
    ) -> torch.Tensor:
        dtype = _compute_dtype(hidden)
        w = weight.to(dtype)
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            h = hidden[start : start + rows].to(dtype)
            t = targets[start : start + rows]
            valid = t != IGNORE_INDEX
            safe_t = torch.where(valid, t, 0)[:, None]
            logits = torch.mm(h, w.T).float()
            target_logit = logits.gather(1, safe_t).squeeze(1)
            # log-sum-exp by hand, in the logits' memory: five passes over the chunk in
            # all, where torch.logsumexp and a second exp for the softmax take eight.
            row_max = logits.amax(dim=-1, keepdim=True)
            exp = logits.sub_(row_max).exp_()
            sum_exp = exp.sum(dim=-1, keepdim=True)
            lse = (row_max + sum_exp.log()).squeeze(1)
            total += torch.where(valid, lse - target_logit, 0.0).sum()
            if not want_grad:
                continue
            # softmax - onehot, rows of ignored targets zeroed: the gradient of this
            # chunk's summed loss with respect to its logits.
            keep = valid[:, None].float()
            probs = exp.mul_(keep / sum_exp)
            probs.scatter_add_(1, safe_t, -keep)
            g = probs.to(dtype)
            grad_hidden[start : start + rows] = torch.mm(g, w)
            if dtype == torch.float32:
                grad_weight.addmm_(g.T, h)
            else:  # a low-precision matmul per chunk, accumulated in fp32
                grad_weight += torch.mm(g.T, h).float()
        if want_grad:
            ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> tuple:
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_total.to(grad_hidden.dtype),
            (grad_weight * grad_total).to(ctx.weight_dtype),
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Summed next-token cross-entropy of `hidden` [..., d] under the head `weight`
    [vocab, d] for `targets` [...] (IGNORE_INDEX where nothing is predicted), in fp32."""
    rows = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(hidden.flatten(0, -2), weight, targets.flatten(), rows)
