"""The modules of a Llama / Qwen2 / Qwen3 model under transformers' names: every matrix
becomes a native layer at load (gguf_load); ``CausalLM.forward`` is transformers' forward
of those families written out (prompts, scoring, kv_cache=off), and one-token steps run
the native step (qstep.c), as they do on transformers' classes. See gguf_model for why
transformers' own classes are not used.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

# Parameters are made on the meta device by each constructor, not under torch.device("meta"):
# that mode runs nn.Embedding's init through torch's Python references, which import
# torch._dynamo and sympy (60 MB of RSS, the very import the skeleton exists to avoid).
META = "meta"


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, device=META))
        self.variance_epsilon = eps


class Attention(nn.Module):
    def __init__(self, cfg: Any, qk_norm: bool) -> None:
        super().__init__()
        hd, bias = cfg.head_dim, cfg.attention_bias
        self.head_dim = hd
        self.scaling = hd ** -0.5
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_attention_heads * hd, bias, META)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias, META)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias, META)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, cfg.hidden_size, False, META)
        if qk_norm:  # Qwen3: an RMSNorm over each head of q and of k
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)


class MLP(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, False, META)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, False, META)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, False, META)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Any, qk_norm: bool) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, qk_norm)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Rotary(nn.Module):
    """transformers' default rope frequencies, computed as it computes them."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        dim = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (
            torch.arange(0, dim, 2, dtype=torch.int64).to(device="cpu", dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        self.rope_type = "default"
        self.attention_scaling = 1.0


class Core(nn.Module):
    def __init__(self, cfg: Any, qk_norm: bool) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(  # given its weight: no init to run
            cfg.vocab_size, cfg.hidden_size,
            _weight=torch.empty(cfg.vocab_size, cfg.hidden_size, device=META))
        self.layers = nn.ModuleList(DecoderLayer(cfg, qk_norm)
                                    for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = Rotary(cfg)  # real buffers, as transformers' are


class CausalLM(nn.Module):
    def __init__(self, cfg: Any, qk_norm: bool) -> None:
        super().__init__()
        self.config = cfg
        self.model = Core(cfg, qk_norm)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, device=META)
        self._step: Any = None

    def get_input_embeddings(self) -> Any:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: Any) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> Any:
        return self.lm_head

    def tie_weights(self) -> None:
        self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def device(self) -> Any:
        return torch.device("cpu")

    def native_rows(self) -> Any:
        """The native step's ``rows`` over this model (built once); the loader checks it
        builds before handing the model out."""
        if self._step is None:
            from playground.core.native import step as native_step
            from playground.core.quant import weight_quant

            step, why = native_step.build(self, weight_quant.INT_ACT)
            if step is None:
                raise RuntimeError(f"the native step cannot run this model: {why}")
            self._step = step  # the step holds what its C structs point at (step.keep)
        return self._step.rows

    def forward(self, input_ids: Any = None, cache: Any = None, past_key_values: Any = None,
                use_cache: bool = True, logits_to_keep: int = 0, attention_mask: Any = None,
                **_ignored: Any) -> Any:
        """transformers' call and arithmetic (its Llama/Qwen2/Qwen3 forward, gpt-fast's
        shape): logits [batch, kept rows, vocab] for ``input_ids`` after what ``cache``
        holds (use_cache=False or no cache: from an empty one). Prompts come here; one-token
        steps go to the native step. (The native rows ran a 3B-shape Q4_K_M prompt 6-8%
        slower than this on the Xeon, 59.4-61.6 against 63.0-66.2 tok/s: their attention
        takes a row and a head at a time, torch's is a matrix product.)"""
        import torch.nn.functional as F  # noqa: N812
        from transformers import DynamicCache

        cache = cache if cache is not None else past_key_values
        if not use_cache or cache is None:
            cache = DynamicCache()
        ids = input_ids if torch.is_tensor(input_ids) else torch.tensor(input_ids)
        batch, n = ids.shape
        if attention_mask is not None and not bool(torch.as_tensor(attention_mask).all()):
            raise ValueError("the GGUF skeleton takes unpadded rows (an attention mask with "
                             "zeros is transformers' classes' to honour)")
        start = _cache_length(cache)
        core = self.model
        positions = torch.arange(start, start + n, dtype=torch.float32)
        freqs = positions[:, None] * core.rotary_emb.inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()  # attention_scaling 1.0 (default rope only)
        mask = torch.arange(start + n)[None, :] <= (start + torch.arange(n))[:, None]
        x = core.embed_tokens(ids).float()
        for i, layer in enumerate(core.layers):
            attn, mlp = layer.self_attn, layer.mlp
            hd = attn.head_dim
            h = _rms(x, layer.input_layernorm)
            fused = attn.__dict__.get("fused_qkv")
            if fused is not None:
                q, k, v = fused(h).split([attn.q_proj.out_features, attn.k_proj.out_features,
                                          attn.v_proj.out_features], dim=-1)
            else:
                q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
            q, k, v = (t.reshape(batch, n, -1, hd) for t in (q, k, v))
            if hasattr(attn, "q_norm"):
                q, k = _rms(q, attn.q_norm), _rms(k, attn.k_norm)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            k, v = cache.update(k, v, i)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling,
                                               enable_gqa=True)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(batch, n, -1))
            h = _rms(x, layer.post_attention_layernorm)
            fused = mlp.__dict__.get("fused_gate_up")
            if fused is not None:
                gate, up = fused(h).chunk(2, dim=-1)
            else:
                gate, up = mlp.gate_proj(h), mlp.up_proj(h)
            x = x + mlp.down_proj(F.silu(gate) * up)
        keep = n if not logits_to_keep else min(int(logits_to_keep), n)
        return SimpleNamespace(logits=self.lm_head(_rms(x[:, n - keep:], core.norm)),
                               past_key_values=cache)


def _rms(x: Any, norm: Any) -> Any:
    """transformers' RMSNorm, in float32"""
    variance = x.pow(2).mean(-1, keepdim=True)
    return norm.weight * (x * torch.rsqrt(variance + norm.variance_epsilon))


def _rotate_half(x: Any) -> Any:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _cache_length(cache: Any) -> int:
    return int(cache.get_seq_length()) if getattr(cache, "layers", None) else 0
