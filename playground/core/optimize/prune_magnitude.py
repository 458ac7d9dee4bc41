"""prune_method=magnitude: unstructured L1 pruning of the decoder's Linear weights.

The matrices keep their shape (zeros are still multiplied by dense kernels), so no
speed gain is expected: the note reports the sparsity actually reached.
"""

from __future__ import annotations

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization, linear_layers


def sparsity(model) -> float:
    zeros = total = 0
    for _, layer in linear_layers(model):
        zeros += int((layer.weight == 0).sum())
        total += layer.weight.numel()
    return zeros / total if total else 0.0


class PruneMagnitude(Optimization):
    name = "prune-magnitude"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.prune > 0 and cfg.prune_method == "magnitude"

    def apply(self, ctx: Build) -> str | None:
        import torch
        from torch.nn.utils import prune

        layers = linear_layers(ctx.model)
        with torch.no_grad():
            for _, layer in layers:
                prune.l1_unstructured(layer, name="weight", amount=ctx.config.prune)
                prune.remove(layer, "weight")  # bake the mask into the weight
        achieved = sparsity(ctx.model)
        ctx.info["sparsity"] = achieved
        return f"magnitude pruning: {achieved:.1%} of {len(layers)} Linear weights are zero"
