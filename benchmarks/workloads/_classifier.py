"""Shared part of the image classification workloads (`vit`, `swin`, `mlp`): data, loss, metrics.

Not a workload itself (the leading underscore keeps the registry from treating it as a plugin module).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.data.images import ImageData, ImagePipeline
from claimbench.capabilities import GroupMultiplier, Multiplier, OutputScale
from claimbench.losses import cross_entropy
from claimbench.plugin import Outputs, Workload

# Sizes trained for a few hundred steps: random crop + flip only slows them (ViT smoke, step 80: train loss
# 1.81 with, 1.45 without), so augmentation is on by default from `gpu` up (`data.augment` overrides).
SHORT_SIZES = ("micro", "smoke")


class ImageClassifier(Workload):
    """Cross-entropy on real images; `val_loss` and top-1 `val_acc`; throughput in samples."""

    DataOptions = ImageData
    unit = "samples"
    chance_acc = 0.1  # set to 1 / classes once the data is known
    provides = frozenset({"hidden_states", "logz", "multipliers"})

    def image_size(self) -> int | None:
        """The side the model takes (None: the data's own)."""
        return getattr(self.opts, "img_size", None)

    def check_data(self) -> None:
        # the pipeline slices each step's global batch: accumulation and torchrun ranks pick their micro-batch
        self.pipe = ImagePipeline(self.data_opts, self.image_size(), augment_default=self.cfg.size not in SHORT_SIZES,
                                  seed=self.cfg.seed, global_batch=self.cfg.train.batch_size)
        self.chance_acc = 1.0 / self.pipe.num_classes

    def data_shape(self) -> tuple[int, int]:
        """(in_chans, num_classes): from the data once checked, else ImageNet's (3, 1000)."""
        pipe = getattr(self, "pipe", None)
        return (pipe.in_chans, pipe.num_classes) if pipe is not None else (3, 1000)

    def train_batch(self, step: int, micro: int, batch_size: int):
        return self.pipe.train_batch(step, micro, batch_size)

    def logits(self, model, x: torch.Tensor, needs: frozenset[str]):
        """(logits, hidden_states, attn_probs) of one forward."""
        raise NotImplementedError

    def forward(self, model, batch, needs: frozenset[str]) -> Outputs:
        x, y = batch
        logits, hidden, probs = self.logits(model, x, needs)
        # y: class ids, or class probabilities under mixup
        loss, logz = cross_entropy(logits.float(), y, "logz" in needs)
        return Outputs(loss, logits, hidden, probs, logz=logz)

    @torch.no_grad()
    def evaluate(self, model, device: torch.device, batches: int, batch_size: int) -> dict[str, float]:
        loss_sum, correct, n = 0.0, 0, 0
        for i in range(batches):
            x, y = (t.to(device) for t in self.pipe.val_batch(i, batch_size))
            logits = self.logits(model, x, frozenset())[0].float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += len(y)
        return {"val_loss": loss_sum / n, "val_acc": correct / n}

    def batch_units(self, batch) -> int:
        return int(batch[0].shape[0])

    def val_examples(self) -> int:
        return len(self.pipe.val)

    def example_bytes(self) -> int | None:
        """The fp32 image the model takes and its fp32 logits."""
        side = self.pipe.out_size
        return None if side is None else 4 * (self.pipe.in_chans * side * side + self.pipe.num_classes)

    def forward_multipliers(self, model, roles: dict[str, str] | None = None) -> dict[str, Multiplier]:
        """"embedding" and "logit": an output multiplier on each module owning an embedding / readout weight
        (by the role table), applied by a forward hook once it leaves 1. No attention scale."""
        model = getattr(model, "_orig_mod", model)
        scales = model.__dict__.get("_output_scales")
        if scales is None:
            roles = roles if roles is not None else self.param_roles(model)
            owners = {id(p): r for n, p in model.named_parameters() if (r := roles[n]) in ("embedding", "readout")}
            scales = {"embedding": [], "logit": []}
            for mod in model.modules():
                w = mod._parameters.get("weight")
                role = owners.get(id(w)) if w is not None else None
                if role is not None:
                    scales["logit" if role == "readout" else "embedding"].append(OutputScale(mod))
            model.__dict__["_output_scales"] = scales
        return {role: GroupMultiplier([s.multiplier() for s in ss]) for role, ss in scales.items()}
