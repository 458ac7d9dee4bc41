"""quant=bnb-8bit / bnb-4bit-nf4 / bnb-4bit-fp4: bitsandbytes quantization at load time.

bitsandbytes runs on CPU and CUDA. On CPU its 8-bit matmul is slower than float32:
the figures show that rather than hide it. When pruning comes first, the pruned
float model is written to a temporary folder and loaded again quantized.
"""

from __future__ import annotations

import tempfile
from typing import Any

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization, OptimizationError, linear_layers

KINDS = {"bnb-8bit": None, "bnb-4bit-nf4": "nf4", "bnb-4bit-fp4": "fp4"}


# bitsandbytes' packed 4-bit CPU kernel reads inputs in blocks of 64.
CPU_BLOCK = 64


def bnb_config(quant: str, device: str, skip: list[str] | None = None) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if quant == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    compute = torch.float16 if device.startswith("cuda") else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=KINDS[quant],
        bnb_4bit_compute_dtype=compute,
        llm_int8_skip_modules=skip,
    )


def unaligned_layers(model: Any) -> list[str]:
    """Linear layers whose input width the CPU kernel cannot take (pruned to odd sizes)."""
    return [
        name for name, layer in linear_layers(model) if layer.in_features % CPU_BLOCK
    ]


class QuantBnb(Optimization):
    name = "quant-bitsandbytes"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.quant in KINDS

    def check(self, cfg: RunConfig, device: str) -> str | None:
        if device == "mps":
            return f"quant: {cfg.quant} (bitsandbytes) does not run on mps; allowed there: none, fp16, bf16"
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:  # a broken native library raises more than ImportError
            return f"quant: {cfg.quant} needs bitsandbytes, which failed to import: {exc}"
        return None

    def load_kwargs(self, cfg: RunConfig, device: str) -> dict[str, Any]:
        if cfg.prune > 0:
            return {}  # prune the float model first, quantize afterwards in apply()
        return {"quantization_config": bnb_config(cfg.quant, device), "device_map": device}

    def apply(self, ctx: Build) -> str | None:
        cfg = ctx.config
        kind = "8-bit" if cfg.quant == "bnb-8bit" else f"4-bit {KINDS[cfg.quant]}"
        note = f"bitsandbytes {kind} Linear layers"
        if cfg.prune > 0:
            import torch
            from transformers import AutoModelForCausalLM

            if getattr(ctx.model, "playground_unsaveable", False):
                raise OptimizationError(
                    f"quant: {cfg.quant} after structured pruning is not supported for "
                    f"{ctx.model.config.model_type}; use int8-dynamic or bf16 there"
                )
            skip = unaligned_layers(ctx.model) if ctx.device == "cpu" else []
            with tempfile.TemporaryDirectory(prefix="playground-pruned-") as tmp:
                ctx.model.save_pretrained(tmp, safe_serialization=True)
                ctx.model = AutoModelForCausalLM.from_pretrained(
                    tmp,
                    quantization_config=bnb_config(cfg.quant, ctx.device, skip + ["lm_head"]),
                    device_map=ctx.device,
                    dtype=torch.float32,
                )
            ctx.model.eval()
            if skip:
                note += (
                    f"; {len(skip)} pruned layers kept in float32 (bitsandbytes' CPU kernel "
                    f"needs input widths that are multiples of {CPU_BLOCK})"
                )
        return note
