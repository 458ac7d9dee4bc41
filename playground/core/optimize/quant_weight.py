"""quant=int8-weight / int4-weight: weight-only quantization that keeps the model.

Weights become int8 with one scale per output channel, or int4 in groups of
``quant_group`` inputs with a scale and a zero each (round to nearest); activations
keep high precision (int16 per 32 inputs on the native kernels, bf16 on torch's), so
the error is the weights' alone: on the default model int8-weight stays within KL
0.01 of float32, where int8-dynamic (int8 activations per tensor) loses 1.5 nats.
Every Linear is quantized, the LM head included (it is the largest single matrix);
the input embedding stays float, since a lookup reads one row per token.

``replace_linears`` is shared with gguf-native, which feeds it a GGUF's own blocks
instead of rounding float weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playground.core.config import RunConfig
from playground.core.optimize.base import Build, Optimization
from playground.core.quant import weight_quant
from playground.core.quant.weight_quant import QWeight

KINDS = ("int8-weight", "int4-weight")
FUSED = {"self_attn": ("fused_qkv", ("q_proj", "k_proj", "v_proj")),
         "mlp": ("fused_gate_up", ("gate_proj", "up_proj"))}

# (module name, Linear) -> its QWeight, or None to keep the layer in floating point
QuantizeFn = Callable[[str, Any], QWeight | None]


def check_cpu_kernels(cfg: RunConfig, device: str) -> str | None:
    if device != "cpu":
        return (f"quant: {cfg.quant} runs on cpu only (weight-only CPU kernels), "
                f"not {device}; on a GPU use bnb-4bit-nf4 or bnb-8bit")
    why = weight_quant.kernels_available()
    return f"quant: {cfg.quant} is not available here: {why}" if why else None


class QuantWeight(Optimization):
    name = "quant-weight-only"

    def wanted(self, cfg: RunConfig) -> bool:
        return cfg.quant in KINDS

    def check(self, cfg: RunConfig, device: str) -> str | None:
        return check_cpu_kernels(cfg, device)

    def apply(self, ctx: Build) -> str | None:
        quant, group = ctx.config.quant, ctx.config.quant_group
        fallback: list[str] = []
        smaller: dict[int, int] = {}  # group used instead of quant_group -> layers

        def quantize(name: str, linear: Any) -> QWeight:
            weight = linear.weight
            if quant == "int4-weight":
                g = weight_quant.group_for(weight.shape[1], group)
                if g is not None and weight_quant.int4_fits(weight.shape[0], weight.shape[1], g):
                    if g != group:
                        smaller[g] = smaller.get(g, 0) + 1
                    return weight_quant.quantize_int4(weight, g)
                fallback.append(name)  # shapes the int4 packing cannot take
            return weight_quant.quantize_int8(weight)

        counts = replace_linears(ctx.model, quantize)
        what = "int8 per channel" if quant == "int8-weight" else f"int4 groups of {group}"
        note = (f"{counts['quantized']} Linear layers to {what} weights, "
                f"{weight_quant.activations()}")
        for g, n in sorted(smaller.items()):
            note += f"; {n} in groups of {g} ({group} does not divide their inputs)"
        if fallback:
            note += f"; {len(fallback)} int8 instead (shape not divisible for int4: {fallback[0]}…)"
        return note


def replace_linears(model: Any, quantize: QuantizeFn) -> dict[str, int]:
    """Swap every nn.Linear (LM head included) for a weight-only layer, fusing q/k/v and
    gate/up where the shapes allow (with torch's kernels, what stays float becomes bf16)."""
    import torch

    counts = {"quantized": 0, "kept": 0, "fused": 0}
    named = dict(model.named_modules())
    done: set[str] = set()
    for parent_name, parent in list(named.items()):
        short = parent_name.rsplit(".", 1)[-1]
        if short not in FUSED:
            continue
        attribute, children = FUSED[short]
        linears = [getattr(parent, c, None) for c in children]
        if not all(type(m) is torch.nn.Linear for m in linears):
            continue
        names = [f"{parent_name}.{c}" for c in children]
        parts = [quantize(n, m) for n, m in zip(names, linears, strict=True)]
        done.update(names)
        if any(p is None for p in parts) or len({(p.kind, p.group) for p in parts}) > 1:
            # mixed (a Q4_K_M file's Q6_K v beside Q4_K q/k): each packed on its own now
            # (held until every layer had been tried, a 3B model's unpacked q/k/v were
            # 260 MB of the load's peak)
            for child, part, linear in zip(children, parts, linears, strict=True):
                _put(parent, child, part, linear, counts)
            continue
        fused, views = weight_quant.pack_fused(parts, [m.bias for m in linears])
        for child, view in zip(children, views, strict=True):
            setattr(parent, child, view)
        if fused is not None:
            parent.__dict__[attribute] = fused  # for the lean step; not a submodule
            counts["fused"] += 1
        counts["quantized"] += len(children)
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or name in done:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        _put(parent, child, quantize(name, module), module, counts)
    if weight_quant.backend() == "torch":
        model.to(torch.bfloat16)  # torch's kernels are fast only with bf16 activations
    return counts


def _put(parent: Any, child: str, part: QWeight | None, linear: Any,
         counts: dict[str, int]) -> None:
    """One Linear's packed layer in its place (None: it stays as it is)."""
    if part is None:
        counts["kept"] += 1
        return
    setattr(parent, child, weight_quant.pack([part], [linear.bias], consume=True))
    counts["quantized"] += 1
