"""Cross-entropy that also hands back each row's log-partition logsumexp(logits), from the same pass.

A loss term on log Z (PaLM's z-loss) computed apart from the cross-entropy walks the logits twice more in
the forward and twice more in the backward: on a CPU that was +8% of a GPT smoke step. The cross-entropy
already computes log Z, and the gradient of any function of it is that function's derivative times the
softmax the cross-entropy's own backward forms, so both come from one exp pass each way. Written by hand
because torch's fused cross-entropy keeps log Z internal. The value equals F.cross_entropy to float
rounding, not bit for bit, so a workload uses it only when a method asks for `logz` (its baseline runs keep
F.cross_entropy).
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 16  # logits per CPU block (~256 KiB of float32): each block stays in L2 across its passes


def _rows(x: torch.Tensor) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, x.shape[1])) if x.device.type == "cpu" else x.shape[0]


class _CrossEntropyLogZ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor):
        rows = _rows(x)
        logz = x.new_empty(x.shape[0])
        buf = x.new_empty(min(rows, x.shape[0]), x.shape[1])
        for i in range(0, x.shape[0], rows):
            xc = x[i:i + rows]
            t = buf[:xc.shape[0]]
            m = torch.amax(xc, -1, keepdim=True)
            ms = m.squeeze(-1)
            ms.masked_fill_(ms.abs() == float("inf"), 0)  # (a view of m) as torch.logsumexp: inf rows reduce around 0
            torch.sub(xc, m, out=t).exp_()
            torch.sum(t, -1, out=logz[i:i + rows]).log_().add_(ms)
        target = x.gather(1, y[:, None]).squeeze(1) if y.dtype == torch.long else (x * y).sum(-1)
        ctx.save_for_backward(x, y, logz)
        return (logz - target).mean(), logz

    @staticmethod
    def backward(ctx, g_loss: torch.Tensor, g_logz: torch.Tensor):
        x, y, logz = ctx.saved_tensors  # d loss / dx = (softmax - target) / n; d logz / dx = softmax
        n = x.shape[0]
        coef = g_logz + g_loss / n  # autograd hands zeros for an output nobody used
        rows = _rows(x)
        gx = torch.empty_like(x)
        for i in range(0, n, rows):
            t = gx[i:i + rows]
            torch.sub(x[i:i + rows], logz[i:i + rows, None], out=t).exp_().mul_(coef[i:i + rows, None])
        if y.dtype == torch.long:
            gx.scatter_add_(1, y[:, None], (-g_loss / n).expand(n, 1))
        else:  # class probabilities (mixup)
            gx.sub_(y * (g_loss / n))
        return gx, None


def cross_entropy_logz(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, logsumexp per row) of 2-d logits against class ids or class probabilities."""
    return _CrossEntropyLogZ.apply(logits, y)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, logz: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A workload's training loss and, when a method needs `logz`, log Z from the same pass; otherwise torch's
    F.cross_entropy (bit for bit what runs without it always computed) and None."""
    if logz:
        return cross_entropy_logz(logits, y)
    return torch.nn.functional.cross_entropy(logits, y), None
