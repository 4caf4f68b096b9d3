"""`zloss`: PaLM's auxiliary z-loss, coef * mean(logsumexp(logits)^2), the smallest real plugin.

log Z comes from the cross-entropy's own pass (the `logz` capability): computed apart it cost +8% of a GPT
smoke step on a CPU, for one logsumexp."""

import torch
from pydantic import BaseModel, ConfigDict, Field

from claimbench.plugin import Method, Outputs
from claimbench.registry import register_method


class ZLossOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coef: float = Field(1e-4, ge=0)


@register_method("zloss")
class ZLoss(Method):
    """z-loss against output-logit drift (PaLM; Wortsman et al. 2023)."""

    Options = ZLossOptions
    needs = frozenset({"logz"})

    def extra_loss(self, outputs: Outputs) -> torch.Tensor:
        self.last = outputs.logz.pow(2).mean()
        return self.options.coef * self.last

    def metrics(self, step, model, outputs) -> dict[str, float]:
        return {"zloss/logz_sq": self.last.item()}
