"""Rows of many sequences in one pass, for float Llama-family models (continuous batching).

The float counterpart of the native step's ``rows`` (playground/core/native/step.py):
decode rows of the running requests and chunks of new prompts go through each weight
matrix together, as one [rows, width] matrix product, so a float model's weights are
read once per pass instead of once per request. At one row a float decode step is
bound by reading the weights (538 MB a token on the default model), so batching pays
most here. Attention is per sequence (each has its own cache length); a prompt chunk
attends causally within itself.

Only models whose every Linear is a plain float ``torch.nn.Linear``: int8-dynamic
quantizes each activation matrix with one scale for all its rows, so a request's
output would depend on what else is in the batch, and bnb layers have their own
paths; those configs interleave requests without batching. The float matrix library
also picks its kernel by the number of rows, so a row's logits can differ in the last
bits alone or batched (measured within 1e-5 on the tiny test model); the native step's
rows are bit for bit the same.
"""

from __future__ import annotations

from typing import Any

from playground.core.decode import lean_decode

Rows = Any  # (tokens, positions, seqs, caches, out) -> logits [len(out), vocab]


def build(model: Any) -> Rows | None:
    """The batched pass for ``model``, or None where it does not apply (see above)."""
    import torch

    if lean_decode._unsupported(model) is not None:
        return None
    if any(type(m) is not torch.nn.Linear for m in model.modules()
           if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__):
        return None
    core = model.model
    f = torch.nn.functional
    silu = model.config.hidden_act == "silu"
    layers = []
    for layer in core.layers:
        attn, mlp = layer.self_attn, layer.mlp
        layers.append((layer.input_layernorm, attn.q_proj, attn.k_proj, attn.v_proj,
                       attn.o_proj, layer.post_attention_layernorm, mlp.gate_proj, mlp.up_proj,
                       mlp.down_proj, f.silu if silu else mlp.act_fn, attn.head_dim,
                       attn.scaling, attn.q_proj.out_features // attn.head_dim,
                       attn.k_proj.out_features // attn.head_dim))
    embed, norm, head = core.embed_tokens.weight, core.norm, model.lm_head
    inv_freq, rope_scale = core.rotary_emb.inv_freq, core.rotary_emb.attention_scaling
    f32 = torch.float32

    def rms(x: Any, norm_module: Any) -> Any:
        x32 = x.to(f32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm_module.variance_epsilon)
        return norm_module.weight * x32.to(x.dtype)

    def rotate(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin

    def rows(tokens: list[int], positions: list[int], seqs: list[int], caches: list[Any],
             out: list[int]) -> Any:
        n, device = len(tokens), embed.device
        h = embed[torch.tensor(tokens, device=device)]
        freqs = (torch.tensor(positions, dtype=f32, device=device)[:, None]
                 * inv_freq.to(f32)[None, :])
        angles = torch.cat((freqs, freqs), -1)[:, None, :]
        cos = (angles.cos() * rope_scale).to(h.dtype)
        sin = (angles.sin() * rope_scale).to(h.dtype)
        groups, start = [], 0  # (sequence, first row, end row): a sequence's rows are together
        for end in range(1, n + 1):
            if end == n or seqs[end] != seqs[start]:
                groups.append((seqs[start], start, end))
                start = end
        for i, (n1, q, k, v, o, n2, gate, up, down, act, hd, scale, nh, nkv) in enumerate(layers):
            x = rms(h, n1)
            qs = rotate(f.linear(x, q.weight, q.bias).view(n, nh, hd), cos, sin)
            ks = rotate(f.linear(x, k.weight, k.bias).view(n, nkv, hd), cos, sin)
            vs = f.linear(x, v.weight, v.bias).view(n, nkv, hd)
            att = torch.empty(n, nh, hd, dtype=h.dtype, device=device)
            for s, a, b in groups:
                keys, values = caches[s].layers[i].update(ks[a:b].transpose(0, 1)[None],
                                                          vs[a:b].transpose(0, 1)[None])
                mask = None
                if b - a > 1:  # a prompt chunk: causal among its own rows
                    total = keys.shape[2]
                    mask = torch.ones(b - a, total, dtype=torch.bool,
                                      device=device).tril(total - (b - a))
                att[a:b] = f.scaled_dot_product_attention(
                    qs[a:b].transpose(0, 1)[None], keys, values, attn_mask=mask, scale=scale,
                    enable_gqa=nh != nkv)[0].transpose(0, 1)
            h = h + f.linear(att.view(n, -1), o.weight, o.bias)
            x = rms(h, n2)
            x = act(f.linear(x, gate.weight, gate.bias)) * f.linear(x, up.weight, up.bias)
            h = h + f.linear(x, down.weight, down.bias)
        return f.linear(rms(h[torch.tensor(out, dtype=torch.long, device=device)], norm), head.weight,
                        head.bias).float()

    return rows
