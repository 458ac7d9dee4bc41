"""quant=int8-dynamic: torch dynamic quantization of every Linear (LM head included).

Weights are stored as int8 and activations quantized on the fly per batch; on CPU
this is the classic "free 2×" because decoding is bound by reading weights.
"""

from __future__ import annotations

import warnings

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization


class QuantDynamic(Optimization):
    name = "quant-int8-dynamic"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.quant == "int8-dynamic"

    def check(self, cfg: RunConfig, device: str) -> str | None:
        if device != "cpu":
            return f"quant: int8-dynamic runs on cpu only (torch dynamic quantization), not {device}"
        return None

    def apply(self, ctx: Build) -> str | None:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice for torch.ao
            from torch.ao.quantization import quantize_dynamic

            # The tied LM head is a Linear too; quantizing it gives it its own int8 copy
            # while the input embedding stays float (a lookup reads one row per token).
            ctx.model = quantize_dynamic(ctx.model, {torch.nn.Linear}, dtype=torch.qint8)
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        count = sum(1 for m in ctx.model.modules() if isinstance(m, DynamicLinear))
        return f"{count} Linear layers quantized to int8 (dynamic)"
