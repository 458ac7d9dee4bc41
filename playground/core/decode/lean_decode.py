"""A lean one-token decode step for Llama-family models (gpt-fast style).

At one token per step a 135M model spends a third of its time in transformers'
Python layers (decorators, kwargs plumbing, mask building, output objects), not in
matrix products. This step runs the same arithmetic straight over the model's own
modules and weights, in the order transformers does it, writing the same
DynamicCache, so greedy output is unchanged (tests compare logits with the
transformers forward). Measured on the default model, 2 cores, in the engine:
fp32 29.3 -> 35.4 tok/s, int8-dynamic 56.4 -> 76.0 tok/s (BENCHMARKS.md).

Activations stay 2-D ([1, width]) so quantized kernels take them as they are; a
layer is called as ``fn(x, *args)`` (F.linear, or a weight-only kernel with its
packed weights) with no Python wrapper in between; where the quantizer packed q/k/v
or gate/up together (playground/core/quant/weight_quant.py), one kernel call computes
them all. Where every Linear runs on our native kernels (int8-weight,
int4-weight, gguf-native), the whole step is one C call instead
(playground/core/native/step.py), for more families than this Python step
(playground/core/decode/family.py: Mistral, Qwen3, Gemma 2/3, Phi-3 too).
Prefill, kv_cache=off, compile and speculative decoding keep the transformers
forward; so does any model neither step recognises exactly (``build`` returns why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playground.core.decode import family

Step = Callable[[int, Any], Any]  # (token id, DynamicCache) -> logits of the next token
Call = tuple[Callable[..., Any], tuple[Any, ...]]  # fn(x, *args)

SUPPORTED = {"llama", "qwen2"}
STATIC_ROPE = {"default", "llama3", "linear"}  # inv_freq fixed at init, no per-call update


def build(model: Any) -> tuple[Step | None, str]:
    """The lean step for ``model``, or None and the reason it is not used."""
    import torch

    refused = ""
    if any(type(m).__name__ == "NativeWeightLinear" for m in model.modules()):
        # weight-only layers: the whole step in C where the family fits (decode/family.py),
        # else the reason it did not
        from playground.core.native import step as native_step
        from playground.core.quant import weight_quant

        whole, why = native_step.build(model, weight_quant.INT_ACT)
        if whole is not None:
            kind = whole.family.kind
            return whole, f"lean decode step ({kind}, one native call a token)"
        refused = f"; not the one-call native step: {why}"
    why = _unsupported(model)
    if why:
        return None, why + refused
    core = model.model
    eps_final = core.norm.variance_epsilon
    silu = model.config.hidden_act == "silu"
    dtype = core.embed_tokens.weight.dtype  # the activations' dtype
    layers = []
    fused_any = False
    for layer in core.layers:
        attn, mlp = layer.self_attn, layer.mlp
        heads = attn.q_proj.out_features // attn.head_dim
        kv_heads = attn.k_proj.out_features // attn.head_dim
        qkv = _fused(attn, "fused_qkv", dtype)
        gate_up = _fused(mlp, "fused_gate_up", dtype)
        fused_any = fused_any or bool(qkv or gate_up)
        layers.append((
            layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon,
            qkv, _linear(attn.q_proj, dtype), _linear(attn.k_proj, dtype), _linear(attn.v_proj, dtype),
            _linear(attn.o_proj, dtype),
            layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon,
            gate_up, _linear(mlp.gate_proj, dtype), _linear(mlp.up_proj, dtype),
            _linear(mlp.down_proj, dtype),
            torch.nn.functional.silu if silu else mlp.act_fn,
            attn.head_dim, attn.scaling, heads, kv_heads, heads != kv_heads,
            mlp.gate_proj.out_features,
        ))
    embed = core.embed_tokens.weight
    norm_weight = core.norm.weight
    head_fn, head_args = _linear(model.lm_head, dtype)
    inv_freq = core.rotary_emb.inv_freq
    rope_scale = core.rotary_emb.attention_scaling
    sdpa = torch.nn.functional.scaled_dot_product_attention
    cat, rsqrt, f32 = torch.cat, torch.rsqrt, torch.float32

    def rms(x: Any, weight: Any, eps: float) -> Any:
        # LlamaRMSNorm: statistics in float32, scaled back in the input dtype.
        x32 = x.to(f32)
        x32 = x32 * rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return weight * x32.to(x.dtype)

    def step(token: int, cache: Any) -> Any:
        position = cache.get_seq_length()
        cache_layers = cache.layers
        h = embed[token].view(1, -1)
        freqs = position * inv_freq.to(f32)
        angles = cat((freqs, freqs)).view(1, -1)
        cos = (angles.cos() * rope_scale).to(h.dtype)
        sin = (angles.sin() * rope_scale).to(h.dtype)
        for i, (n1, e1, qkv, q, k, v, o, n2, e2, gate_up, gate, up, down, act, hd, scale,
                nh, nkv, gqa, width) in enumerate(layers):
            x = rms(h, n1, e1)
            if qkv is not None:
                y = qkv[0](x, *qkv[1])
                qk = y[:, : (nh + nkv) * hd].view(nh + nkv, hd)
                vs = y[:, (nh + nkv) * hd :]
            else:
                qk = cat((q[0](x, *q[1]), k[0](x, *k[1])), -1).view(nh + nkv, hd)
                vs = v[0](x, *v[1])
            half = hd // 2
            qk = qk * cos + cat((-qk[:, half:], qk[:, :half]), -1) * sin
            ks, vs = cache_layers[i].update(qk[nh:].view(1, nkv, 1, hd), vs.view(1, nkv, 1, hd))
            out = sdpa(qk[:nh].view(1, nh, 1, hd), ks, vs, scale=scale, enable_gqa=gqa)
            h = h + o[0](out.view(1, -1), *o[1])
            x = rms(h, n2, e2)
            if gate_up is not None:
                gu = gate_up[0](x, *gate_up[1])
                x = act(gu[:, :width]) * gu[:, width:]
            else:
                x = act(gate[0](x, *gate[1])) * up[0](x, *up[1])
            h = h + down[0](x, *down[1])
        return head_fn(rms(h, norm_weight, eps_final), *head_args)[0]

    fused = ", q/k/v and gate/up fused" if fused_any else ""
    return step, f"lean decode step (Llama family{fused}{refused})"


def _linear(module: Any, dtype: Any) -> Call:
    import torch

    if type(module) is torch.nn.Linear:
        return torch.nn.functional.linear, (module.weight, module.bias)
    if _direct(module, dtype):
        return module.kernel()  # weight-only int8/int4: the kernel itself
    return module.forward, ()  # other quantized modules (int8-dynamic, bnb) keep theirs


def _direct(module: Any, dtype: Any) -> bool:
    return (hasattr(module, "kernel") and getattr(module, "bias", None) is None
            and getattr(module, "act_dtype", None) == dtype)


def _fused(parent: Any, name: str, dtype: Any) -> Call | None:
    fused = parent.__dict__.get(name)  # set by the weight-only quantizer, not a submodule
    return fused.kernel() if fused is not None and _direct(fused, dtype) else None


def _unsupported(model: Any) -> str | None:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        return f"transformers forward ({kind} is not in the lean step's families)"
    why = family.computed_elsewhere(model)
    if why:
        return f"transformers forward ({why})"
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) or any(
        t != "full_attention" for t in layer_types
    ):
        return "transformers forward (sliding-window attention)"
    from playground.core.quant.gguf_embedding import is_block_embedding

    if is_block_embedding(model.get_input_embeddings()):
        return "transformers forward (the input embedding is kept in the file's blocks)"
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if getattr(rotary, "rope_type", "default") not in STATIC_ROPE:
        return f"transformers forward (rope type {rotary.rope_type})"
    for layer in model.model.layers:
        attn = layer.self_attn
        if any(hasattr(attn, name) for name in ("q_norm", "k_norm")):
            return "transformers forward (attention with q/k norms)"
    return None
