"""quant=fp16 / bf16: cast the weights to a 16-bit float type (halves weights MB)."""

from __future__ import annotations

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def _matmul_works(dtype_name: str, device: str) -> bool:
    import torch

    dtype = getattr(torch, dtype_name)
    try:
        a = torch.ones(8, 8, dtype=dtype, device=device)
        return bool(torch.isfinite((a @ a).float()).all())
    except (RuntimeError, TypeError):
        return False


class QuantDtype(Optimization):
    name = "quant-dtype"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.quant in DTYPES

    def check(self, cfg: RunConfig, device: str) -> str | None:
        if not _matmul_works(DTYPES[cfg.quant], device):
            return f"quant: {cfg.quant} matmuls are not supported on {device}; try bf16 or none"
        return None

    def apply(self, ctx: Build) -> str | None:
        import torch

        ctx.model.to(getattr(torch, DTYPES[ctx.config.quant]))
        return f"weights cast to {DTYPES[ctx.config.quant]}"
