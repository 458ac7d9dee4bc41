"""A lean one-token decode step for Llama-family models (gpt-fast style).

At one token per step a 135M model spends a third of its time in transformers'
Python layers (decorators, kwargs plumbing, mask building, output objects), not in
matrix products. This step runs the same arithmetic straight over the model's own
modules and weights, in the order transformers does it, writing the same
DynamicCache, so greedy output is unchanged (tests compare logits with the
transformers forward). Measured on the default model, 2 cores, in the engine:
fp32 29.3 -> 35.4 tok/s, int8-dynamic 56.4 -> 76.0 tok/s (BENCHMARKS.md). Prefill, kv_cache=off, compile and
speculative decoding keep the transformers forward; so does any model this step
does not recognise exactly (``build`` returns why in that case).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = Callable[[int, Any], Any]  # (token id, DynamicCache) -> logits of the next token

SUPPORTED = {"llama", "qwen2"}
STATIC_ROPE = {"default", "llama3", "linear"}  # inv_freq fixed at init, no per-call update


def build(model: Any) -> tuple[Step | None, str]:
    """The lean step for ``model``, or None and the reason it is not used."""
    import torch

    why = _unsupported(model)
    if why:
        return None, why
    core = model.model
    eps_final = core.norm.variance_epsilon
    silu = model.config.hidden_act == "silu"
    layers = []
    for layer in core.layers:
        attn, mlp = layer.self_attn, layer.mlp
        layers.append((
            layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon,
            _linear(attn.q_proj), _linear(attn.k_proj), _linear(attn.v_proj),
            _linear(attn.o_proj),
            layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon,
            _linear(mlp.gate_proj), _linear(mlp.up_proj), _linear(mlp.down_proj),
            torch.nn.functional.silu if silu else mlp.act_fn,
            attn.head_dim, attn.scaling, getattr(attn, "num_key_value_groups", 1) > 1,
        ))
    embed = core.embed_tokens.weight
    norm_weight = core.norm.weight
    head = _linear(model.lm_head)
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
        h = embed[token].view(1, 1, -1)
        freqs = position * inv_freq.to(f32)
        angles = cat((freqs, freqs)).view(1, 1, 1, -1)
        cos = (angles.cos() * rope_scale).to(h.dtype)
        sin = (angles.sin() * rope_scale).to(h.dtype)
        for i, (n1, e1, q, k, v, o, n2, e2, gate, up, down, act, hd, scale, gqa) in enumerate(
            layers
        ):
            x = rms(h, n1, e1)
            qs = q(x).view(1, 1, -1, hd).transpose(1, 2)
            ks = k(x).view(1, 1, -1, hd).transpose(1, 2)
            vs = v(x).view(1, 1, -1, hd).transpose(1, 2)
            half = hd // 2
            qs = qs * cos + cat((-qs[..., half:], qs[..., :half]), -1) * sin
            ks = ks * cos + cat((-ks[..., half:], ks[..., :half]), -1) * sin
            ks, vs = cache.update(ks, vs, i)
            out = sdpa(qs, ks, vs, scale=scale, enable_gqa=gqa)
            h = h + o(out.transpose(1, 2).reshape(1, 1, -1))
            x = rms(h, n2, e2)
            h = h + down(act(gate(x)) * up(x))
        return head(rms(h, norm_weight, eps_final))[0, -1]

    return step, "lean decode step (Llama family)"


def _linear(module: Any) -> Callable[[Any], Any]:
    import torch

    if type(module) is torch.nn.Linear:
        weight, bias = module.weight, module.bias
        linear = torch.nn.functional.linear
        return lambda x: linear(x, weight, bias)
    return module.forward  # quantized modules (int8, bitsandbytes) keep their own kernels


def _unsupported(model: Any) -> str | None:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        return f"transformers forward ({kind} is not in the lean step's families)"
    if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return f"transformers forward (attention {config._attn_implementation})"
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) or any(
        t != "full_attention" for t in layer_types
    ):
        return "transformers forward (sliding-window attention)"
    if getattr(config, "pretraining_tp", 1) > 1:
        return "transformers forward (pretraining_tp > 1)"
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if getattr(rotary, "rope_type", "default") not in STATIC_ROPE:
        return f"transformers forward (rope type {rotary.rope_type})"
    for module in model.modules():
        # Hooks (accelerate offload, user hooks) would be skipped by the lean step.
        if module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook"):
            return "transformers forward (the model has forward hooks)"
    for layer in model.model.layers:
        attn = layer.self_attn
        if any(hasattr(attn, name) for name in ("q_norm", "k_norm")):
            return "transformers forward (attention with q/k norms)"
    return None
