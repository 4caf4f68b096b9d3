"""`sigma_reparam`: sigma-Reparam (Zhai et al., ICML 2023, arXiv 2303.06296) as a method.

Each selected Linear weight W is used as W_hat = (gamma / sigma(W)) * W with a learnable scalar gamma initialised
to sigma(W_init), and sigma(W) = v^T W u estimated by one power-iteration step per training forward from the
previous step's u (apple/ml-sigma-reparam `SpectralNormedWeight`: u, v are buffers, seeded by SVD at init, and the
gradient flows through W in v^T W u). Done with torch.nn.utils.parametrize, so models need no change. Scope
(reconstructed): every Linear in the blocks (attention and MLP); the embedding and the (tied) readout are left as
they are, as the GPT head shares the embedding's tensor.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from claimbench.plugin import Method
from claimbench.registry import register_method

SKIP_ROLES = {"embedding", "readout"}


class SigmaReparam(nn.Module):
    """The parametrization W -> gamma / sigma(W) * W."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        w = weight.detach().reshape(weight.shape[0], -1)
        u_svd, s, vh = torch.linalg.svd(w.float(), full_matrices=False)
        self.register_buffer("u", vh[0].to(weight.dtype))  # right singular vector (in-features)
        self.register_buffer("v", u_svd[:, 0].to(weight.dtype))  # left singular vector (out-features)
        self.gamma = nn.Parameter(s[0].to(weight.dtype).clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.reshape(weight.shape[0], -1)
        if self.training:
            with torch.no_grad():
                self.v.copy_(F.normalize(w @ self.u, dim=0))
                self.u.copy_(F.normalize(w.mT @ self.v, dim=0))
        sigma = self.v @ w @ self.u
        return weight * (self.gamma / sigma)


@register_method("sigma_reparam")
class SigmaReparamMethod(Method):
    """Reparametrise the blocks' Linear weights; gamma gets the role `multiplier` (no weight decay)."""

    conflicts = {"lrm": "both reparametrise the blocks' weight matrices (torch parametrize): the one listed second "
                        "would silently skip every matrix the first one took"}

    def transform_model(self, model: nn.Module) -> nn.Module:
        roles = self.ctx.roles
        for mod_name, mod in list(model.named_modules()):
            old = f"{mod_name}.weight" if mod_name else "weight"
            if not isinstance(mod, nn.Linear) or roles.get(old, "readout") in SKIP_ROLES:
                continue
            parametrize.register_parametrization(mod, "weight", SigmaReparam(mod.weight))
            base = f"{mod_name}.parametrizations.weight" if mod_name else "parametrizations.weight"
            roles[f"{base}.original"] = roles.pop(old)
            roles[f"{base}.0.gamma"] = "multiplier"
        return model
