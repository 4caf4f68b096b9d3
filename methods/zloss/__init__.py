"""`zloss`: PaLM's auxiliary z-loss, coef * mean(logsumexp(logits)^2), the smallest real plugin."""

import torch
from pydantic import BaseModel, ConfigDict, Field

from claimbench.plugin import Method, Outputs
from claimbench.registry import register_method

CHUNK_ELEMENTS = 1 << 16  # rows per CPU pass: ~256 KiB of float32 logits, resident in L2 between the passes


class _LogSumExp(torch.autograd.Function):
    """torch.logsumexp over the last dim, the same float operations in the same order (bit-identical value and
    gradient), without its full-size temporaries: torch's composite allocates the logits' size twice in the
    forward and twice in the backward and walks them 6 times, which on a CPU costs more than the cross-entropy it
    rides on (the z-loss was +9% of a GPT smoke step). On a CPU the rows go in cache-sized blocks through one
    reused buffer; elsewhere the whole tensor at once, in place where torch allocates."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        rows = max(1, CHUNK_ELEMENTS // max(1, x2.shape[1])) if x.device.type == "cpu" else x2.shape[0]
        out = x2.new_empty(x2.shape[0])
        buf = x2.new_empty(min(rows, x2.shape[0]), x2.shape[1])
        for i in range(0, x2.shape[0], rows):
            xc = x2[i:i + rows]
            t = buf[:xc.shape[0]]
            m = torch.amax(xc, -1, keepdim=True)
            ms = m.squeeze(-1)
            ms.masked_fill_(ms.abs() == float("inf"), 0)  # as torch: all -inf (or +inf) rows reduce around 0
            torch.sub(xc, m, out=t).exp_()
            torch.sum(t, -1, out=out[i:i + rows]).log_().add_(ms)
        out = out.reshape(x.shape[:-1])
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        x, lse = ctx.saved_tensors  # torch's formula: g * exp(x - lse), per row
        x2, lse2, g2 = x.reshape(-1, x.shape[-1]), lse.reshape(-1, 1), g.reshape(-1, 1)
        rows = max(1, CHUNK_ELEMENTS // max(1, x2.shape[1])) if x.device.type == "cpu" else x2.shape[0]
        gx = torch.empty_like(x2)
        for i in range(0, x2.shape[0], rows):
            t = gx[i:i + rows]
            torch.sub(x2[i:i + rows], lse2[i:i + rows], out=t).exp_()
            torch.mul(g2[i:i + rows], t, out=t)
        return gx.reshape(x.shape)


def logsumexp(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim, equal bit for bit to torch.logsumexp(x, -1) in value and gradient."""
    return _LogSumExp.apply(x)


class ZLossOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coef: float = Field(1e-4, ge=0)


@register_method("zloss")
class ZLoss(Method):
    """z-loss against output-logit drift (PaLM; Wortsman et al. 2023)."""

    Options = ZLossOptions

    def extra_loss(self, outputs: Outputs) -> torch.Tensor:
        self.last = logsumexp(outputs.logits.float()).pow(2).mean()
        return self.options.coef * self.last

    def metrics(self, step, model, outputs) -> dict[str, float]:
        return {"zloss/logz_sq": self.last.item()}
