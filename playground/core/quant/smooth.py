"""SmoothQuant: move activation outliers into the weights before int8-dynamic training.

int8-dynamic quantizes each Linear's input with one scale per tensor, so a handful of
outlier channels (RMSNorm gains of 30 and more in trained Llamas) set the step for
all the others. For a Linear y = x·Wᵀ, dividing input channel j by s_j and multiplying
weight column j by s_j leaves y unchanged in float; the division folds into whatever
produced x (the RMSNorm gain, the rows of v_proj or up_proj), so the model keeps its
shape and its float output. With s_j = amax(x_j)^α / amax(W_:,j)^(1-α) (Xiao et al.,
2022, α = 0.5) both sides share the range. Measured on the default model: int8-dynamic
KL 1.52 → 0.75 before any training (BENCHMARKS.md).

Activation ranges come from the calibration sequences given (the QAT corpus), never
from the evaluation text. A tied LM head is untied first (it gets its own copy, as
int8-dynamic gives it anyway), so the input embedding stays exact.
"""

from __future__ import annotations

from typing import Any

ALPHA = 0.5  # measured 0.3–0.7 on the default model: 0.5–0.55 best (BENCHMARKS.md)


def input_ranges(model: Any, windows: list[Any]) -> dict[str, Any]:
    """amax of each Linear's input per channel, over the calibration windows."""
    import torch

    ranges: dict[str, Any] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            def hook(_mod: Any, inputs: Any, _out: Any, name: str = name) -> None:
                x = inputs[0].detach()
                amax = x.abs().reshape(-1, x.shape[-1]).amax(0)
                ranges[name] = torch.maximum(ranges[name], amax) if name in ranges else amax
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for window in windows:
                model(window.reshape(1, -1))
    finally:
        for h in hooks:
            h.remove()
    return ranges


def _balance(act: Any, w: Any, alpha: float) -> Any:
    """s = amax(x)^α / amax(W)^(1−α), per input channel."""
    return (act.clamp_min(1e-5) ** alpha / w.clamp_min(1e-5) ** (1 - alpha)).clamp_min(1e-5)


def _scales(act: Any, weights: list[Any], alpha: float) -> Any:
    import torch

    return _balance(act, torch.stack([w.abs().amax(0) for w in weights]).amax(0), alpha)


def supported(model: Any) -> bool:
    """Llama-shaped decoder layers (RMSNorm → q/k/v, RMSNorm → gate/up, up → down)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers:
        return False
    layer = layers[0]
    names = ("input_layernorm", "post_attention_layernorm", "self_attn", "mlp")
    return all(hasattr(layer, n) for n in names) and hasattr(layer.mlp, "up_proj")


def smooth(model: Any, ranges: dict[str, Any], alpha: float = ALPHA) -> int:
    """Fold the smoothing scales into ``model`` in place; returns the Linears smoothed."""
    import torch

    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = cfg.num_key_value_heads
    groups = cfg.num_attention_heads // kv_heads
    count = 0
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            prefix, attn, mlp = f"model.layers.{i}.", layer.self_attn, layer.mlp
            qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
            s = _scales(ranges[prefix + "self_attn.q_proj"], [m.weight for m in qkv], alpha)
            layer.input_layernorm.weight.div_(s)
            for m in qkv:
                m.weight.mul_(s)
            gate_up = [mlp.gate_proj, mlp.up_proj]
            s = _scales(ranges[prefix + "mlp.gate_proj"], [m.weight for m in gate_up], alpha)
            layer.post_attention_layernorm.weight.div_(s)
            for m in gate_up:
                m.weight.mul_(s)
            # down_proj's input is act(gate) * up: the scale folds into up's rows
            s = _scales(ranges[prefix + "mlp.down_proj"], [mlp.down_proj.weight], alpha)
            mlp.up_proj.weight.div_(s[:, None])
            mlp.down_proj.weight.mul_(s)
            # o_proj's input is attention over v: one scale per kv channel, shared by the
            # query heads that read it, folds into v's rows
            act = ranges[prefix + "self_attn.o_proj"].view(kv_heads, groups, head_dim).amax(1)
            w = attn.o_proj.weight.abs().amax(0).view(kv_heads, groups, head_dim).amax(1)
            s = _balance(act, w, alpha)
            attn.v_proj.weight.div_(s.reshape(-1)[:, None])
            attn.o_proj.weight.mul_(s[:, None, :].expand(kv_heads, groups, head_dim).reshape(-1))
            count += 7
        head = model.get_output_embeddings()
        if head is not None and "lm_head" in ranges:
            if head.weight is model.get_input_embeddings().weight:
                head.weight = torch.nn.Parameter(head.weight.detach().clone())
                model.config.tie_word_embeddings = False
            s = _scales(ranges["lm_head"], [head.weight], alpha)
            model.model.norm.weight.div_(s)
            head.weight.mul_(s)
            count += 1
    return count
