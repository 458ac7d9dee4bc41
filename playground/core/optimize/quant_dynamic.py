"""quant=int8-dynamic: torch dynamic quantization of every Linear (LM head included).

Weights are stored as int8 and activations quantized on the fly; on CPU decoding is
bound by reading weights, so this is the classic large win. One measured tweak keeps
the per-call overhead from eating it at one token per step: each quantized layer
calls the int8 kernel directly instead of going through torch.ao's Python module
and operator dispatch (same numbers, about 10% faster decoding here; BENCHMARKS.md).
Measured and rejected: per-channel scales (garbage output with this torch build)
and fusing q/k/v into one matrix (per-tensor scales then change the output).
"""

from __future__ import annotations

import warnings
from typing import Any

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
        count = _use_direct_kernel(ctx.model)
        return f"{count} Linear layers quantized to int8 (dynamic)"


# -- direct kernel calls ------------------------------------------------------------
def _int8_kernel() -> Any:
    import torch

    # The C++ operator itself: skips OpOverload's Python-side dispatch checks.
    return torch.ops.quantized.linear_dynamic.default._op


def _direct_class() -> type:
    import torch

    kernel = _int8_kernel()

    class DirectInt8Linear(torch.nn.Module):
        packed_int8 = True  # memory.weights_mb counts the packed weights through this

        def __init__(self, quantized: Any) -> None:
            super().__init__()
            self.packed = quantized._packed_params._packed_params
            self.in_features = quantized.in_features
            self.out_features = quantized.out_features

        def forward(self, x: Any) -> Any:
            return kernel(x, self.packed, True)

        def _weight_bias(self) -> tuple[Any, Any]:
            return torch.ops.quantized.linear_unpack(self.packed)

    return DirectInt8Linear


def _use_direct_kernel(model: Any) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    direct = _direct_class()
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DynamicLinear):
                setattr(parent, name, direct(child))
                count += 1
    return count
